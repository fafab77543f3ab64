"""Which handler a request reaches, and what is refused before any handler runs.

The proxy is one catch-all handler rather than a route per app: matching is done by our own compiled route table
(gateway/routing.py), which knows hosts, wildcards and longest prefixes, and the Expect handler is a no-op so that
`100 Continue` is sent by the forwarder only once the request is known to be acceptable. A route that binds
sessions goes through its enforcer; any other straight to the forwarders.

The gateway's own endpoints answer only at their plain spelling: aiohttp's router matches the decoded path, so
`/%2egateway/status` or `/.gateway/x/../status` would reach them too, past any front proxy or rule that guards the
prefix by its spelling. Those spellings get a 400. Spellings that aiohttp does not route into the prefix at all
(`//.gateway/`, `/x/../.gateway/`) go to the proxy, which matches them as the upstream will read them: they are
the app's paths, never the gateway's.

Every request body is read under a `body_deadline` (proxy/body_deadline.py).

What a proxied request reaches is one `Generation`: a configuration's route table, upstream pools, forwarders and
enforcers, built together and never changed. A reload builds the next one and `Generations.swap` puts it in place
in one step of the event loop (no lock: the loop is the only writer). A request takes the current generation once,
at its start, and finishes on it, WebSockets included; a generation that was swapped out closes its upstream pools
once its last request has finished (or at shutdown), as nginx's old workers and Envoy's drained listeners do.

aiohttp's server hands every request to the application, whose router walks its resources by the decoded path.
Under run.py's runner the server calls `direct` instead: a proxied path goes straight to the proxy handler, and only
the gateway's own paths (and the few the router itself answers) to the application. That skips the router's walk
and the application's handler chain, about 9 % of a proxied request's instructions, and changes nothing: the
router's catch-all `/{tail:.*}` takes exactly what `direct` sends to the proxy (`proxied`).

A request that aiohttp's parser refuses (smuggling attempts, oversize heads, bare LF) gets aiohttp's 400 and one
DEBUG line: aiohttp itself would log a full traceback at ERROR for each, so that any client could flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import answers
from .enforcement.enforcer import Enforcer
from .metrics import Metrics
from .proxy.body_deadline import body_deadline
from .proxy.http import Forwarder, continue_if_expected, error_response
from .proxy.request_id import Stop, begin_request, stamp
from .proxy.upstream import UpstreamPools
from .proxy.websocket import WebSocketForwarder, is_websocket_upgrade
from .routing import Route, RouteTable, resolve_path
from .settings import ServerSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("gateway")


class ClientFaultsAtDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with the requests its parser refused logged at DEBUG: they are the client's fault,
    and one ERROR traceback each would let any client fill the log. Such a line has no traceback and only the
    first line of the parser's message: the rest quotes the raw request, cookies included. Everything else is
    logged as aiohttp logs it."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            self.debug(msg, *args, exc_info=error, **kwargs)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            kwargs["exc_info"] = None
            first = str(error.message).partition("\n")[0].replace("%", "%%")
            msg = f"{msg}: {type(error).__name__}: {first}"
        return msg, kwargs


_ODD_SPELLING = "The gateway's own endpoints answer only at their plain spelling."
# `gzip, chunked`: aiohttp takes the chunks off and leaves the gzip on, which the upstream, sent the bytes as
# chunked, would read as the body itself
_CODING_NOT_SERVED = "Only the chunked transfer coding is accepted on a request body."
_NOT_SERVED = "Only HTTP/1.0 and HTTP/1.1 requests with an origin-form target (a path) are served."


def _odd_version(request: web.BaseRequest) -> bool:
    """Neither HTTP/1.0 nor HTTP/1.1: aiohttp's parsers take HTTP/0.9 (no headers), `HTTP/2.0` as text, and the
    pure-Python one HTTP/1.9; none of them is forwarded as HTTP/1.1."""
    version = request.version
    return version[0] != 1 or version[1] > 1


def plainly_spelled(handler: Handler, limits: ServerSettings | Generations) -> Handler:
    """The handler of a gateway endpoint, reached only by a path spelled as it reads: no escapes, dot segments or
    empty segments (aiohttp routed on the decoded path). `limits`: the body limits, or the generations whose
    current one has them."""

    async def plain(request: web.Request) -> web.StreamResponse:
        current, stop = (limits, None) if isinstance(limits, ServerSettings) else (limits.current.limits, limits.stop)
        logged = begin_request(request, current.trusted_proxies)
        path = request.raw_path.partition("?")[0]
        if path[:1] != "/" or "%" in path or "//" in path or resolve_path(path) != path or _odd_version(request):
            return stamp(error_response(request, 400, _ODD_SPELLING, close=True), logged, stop)
        try:
            with body_deadline(request, current):
                return stamp(await handler(request), logged, stop)
        except web.HTTPException as answer:  # a redirect or refusal raised by the endpoint
            stamp(answer, logged, stop)
            raise

    return plain


class Generation:
    """One configuration's way of serving proxied requests, built whole and never changed: its route table and
    body limits, upstream pools, forwarders and enforcers. `running` holds the tasks of the requests (and
    WebSockets) that started on it and have not finished."""

    __slots__ = ("number", "table", "limits", "pools", "http", "ws", "enforcers", "requests", "running", "retired")

    def __init__(self, number: int, table: RouteTable, limits: ServerSettings, pools: UpstreamPools,
                 http: Forwarder, ws: WebSocketForwarder, enforcers: dict[str, Enforcer], metrics: Metrics) -> None:
        self.number, self.table, self.limits, self.pools = number, table, limits, pools
        self.http, self.ws, self.enforcers = http, ws, enforcers
        self.requests = {r.name: metrics.requests.get(r.name) for r in table.routes}
        self.running: set[asyncio.Task[Any]] = set()
        self.retired = False

    @property
    def users(self) -> int:
        """The requests (and WebSockets) in flight on this generation."""
        return len(self.running)

    def dispatch(self, request: web.Request, route: Route) -> Awaitable[web.StreamResponse]:
        """A route that binds sessions goes through its enforcer; any other straight to the forwarders."""
        enforcer = self.enforcers.get(route.name) if self.enforcers else None
        if enforcer is not None:
            return enforcer(request)
        if is_websocket_upgrade(request):
            return self.ws(request, route)
        return self.http(request, route)


class Generations:
    """The generation new requests take (`current`), and the ones swapped out that still serve a request."""

    def __init__(self, first: Generation, stop: Stop) -> None:
        self.current = first
        self.stop = stop  # asked at a graceful stop: every answer closes its connection from then on
        self.draining: set[Generation] = set()
        self._enforcers: weakref.WeakSet[Enforcer] = weakref.WeakSet()  # of every generation: closed at shutdown
        self._enforcers.update(first.enforcers.values())
        self._closing: set[asyncio.Task[None]] = set()

    def swap(self, new: Generation) -> Generation:
        """Make `new` the one new requests take (its pools started); the old one closes when it has drained."""
        old, self.current = self.current, new
        self._enforcers.update(new.enforcers.values())
        old.retired = True
        if old.running:
            self.draining.add(old)
        else:
            self._close(old)
        return old

    def drained(self, generation: Generation) -> None:
        """A retired generation's last request finished."""
        self.draining.discard(generation)
        self._close(generation)

    def _close(self, generation: Generation) -> None:
        task = asyncio.get_running_loop().create_task(generation.pools.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        log.debug("generation %d drained: its upstream pools close", generation.number)

    def running(self) -> list[asyncio.Task[Any]]:
        """The tasks of the proxied requests in flight, of any generation."""
        return [task for generation in (self.current, *self.draining) for task in generation.running]

    def enforcers(self) -> list[Enforcer]:
        """The enforcers of every generation still referenced (their background work is closed at shutdown)."""
        return list(self._enforcers)

    async def close(self) -> None:
        """At shutdown: every generation's upstream pools."""
        for generation in (*self.draining, self.current):
            await generation.pools.close()
        self.draining.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)


def proxy_handler(generations: Generations) -> Handler:
    """The catch-all handler: match the route, refuse what is not served, enforce or forward, all of it with the
    generation that is current when the request starts."""

    loop: asyncio.AbstractEventLoop | None = None  # asyncio.current_task() finds it with a getpid() syscall each time

    async def proxy(request: web.Request) -> web.StreamResponse:
        nonlocal loop
        generation = generations.current
        logged = begin_request(request, generation.limits.trusted_proxies)
        if request.raw_path[:1] != "/" or _odd_version(request):
            return stamp(error_response(request, 400, _NOT_SERVED, close=True), logged, generations.stop)
        route = generation.table.match(request.headers.get("Host", ""), request.path, request.raw_path)
        if route is None:
            return stamp(error_response(request, 404, answers.NO_ROUTE), logged, generations.stop)
        logged.route = route.name
        generation.requests[route.name].inc()
        if loop is None:
            loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None  # a handler runs in a task of its own
        generation.running.add(task)
        try:
            if request.body_exists:
                coding = request.headers.get("Transfer-Encoding")
                if coding is not None and coding.strip().lower() != "chunked":
                    return stamp(error_response(request, 400, _CODING_NOT_SERVED, close=True), logged, generations.stop)
                with body_deadline(request, generation.limits):
                    response = await generation.dispatch(request, route)
            else:
                response = await generation.dispatch(request, route)
        finally:
            generation.running.discard(task)
            if generation.retired and not generation.running:
                generations.drained(generation)
        if "Upgrade" in request.headers and not is_websocket_upgrade(request):
            # aiohttp reads no further request on a connection that asked to switch to another protocol (h2c,
            # anything but a WebSocket, which was not switched here): close it, or what follows hangs unanswered
            response.force_close()
        return stamp(response, logged, generations.stop)

    return proxy


def proxied(path: str, prefix: str) -> bool:
    """Whether the router would send a request whose path (`rel_url.path_safe`, what it matches) is `path` to the
    proxy's catch-all `/{tail:.*}`: a path (not `*`), outside the prefix, and one that the catch-all's `.*` matches
    whole (no newline)."""
    return path[:1] == "/" and not path.startswith(prefix) and "\n" not in path


def direct(application: Handler, proxy: Handler, prefix: str) -> Handler:
    """The handler aiohttp's server calls for every request: proxied paths straight to `proxy`, the rest to
    `application` (the app's own handler, router and all)."""

    def handle(request: web.Request) -> Awaitable[web.StreamResponse]:
        return proxy(request) if proxied(request.rel_url.path_safe, prefix) else application(request)

    return handle


async def expect_continue_only(request: web.Request) -> None:
    """The gateway's endpoints: `100 Continue` for `Expect: 100-continue`, a 417 for any other expectation.
    aiohttp's own handler echoes the header in its 417, which fails with a 500 on bytes that are not UTF-8."""
    if request.headers.get("Expect", "").lower() == "100-continue":
        await continue_if_expected(request)
    elif request.version >= (1, 1):
        raise web.HTTPExpectationFailed(text="Only Expect: 100-continue is understood.")


async def expect_later(request: web.Request) -> None:
    """aiohttp would answer `100 Continue` before the handler runs; the forwarder decides instead."""


async def not_found(request: web.Request) -> web.Response:
    return error_response(request, 404, "No such gateway endpoint.")
