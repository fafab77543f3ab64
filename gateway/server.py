"""Build the aiohttp application: the gateway's own endpoints under its prefix, and the proxy for everything else.

The proxy is one catch-all handler rather than a route per app: matching is done by our own compiled route table
(gateway/routing.py), which knows hosts, wildcards and longest prefixes, and the Expect handler is a no-op so that
`100 Continue` is sent by the forwarder only once the request is known to be acceptable.

The gateway's own endpoints answer only at their plain spelling: aiohttp's router matches the decoded path, so
`/%2egateway/status` or `/.gateway/x/../status` would reach them too, past any front proxy or rule that guards the
prefix by its spelling. Those spellings get a 400. Spellings that aiohttp does not route into the prefix at all
(`//.gateway/`, `/x/../.gateway/`) go to the proxy, which matches them as the upstream will read them: they are
the app's paths, never the gateway's.

A request body must keep coming: when `body_timeout` seconds pass without a body byte while the gateway is
ready to read (its socket not paused for back-pressure), the read fails with 408 (at most a quarter of the limit
later) and the connection is closed, whichever handler was reading it; so does a body that, past its first
`body_timeout` seconds, averages fewer than `body_min_rate` bytes a second (a trickle that never pauses long).
The request head has its own limit (`header_timeout`, run.py).

A request that aiohttp's parser refuses (smuggling attempts, oversize heads, bare LF) gets aiohttp's 400 and one
DEBUG line: aiohttp itself would log a full traceback at ERROR for each, so that any client could flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from . import answers
from .admin import Admin, Operator
from .config import Settings
from .enforcement.enforcer import Enforcer, unknown_id_budget
from .metrics import Metrics
from .okta.client import OktaClient
from .proxy.http import Forwarder, continue_if_expected, error_response
from .proxy.upstream import UpstreamPools
from .proxy.websocket import WebSocketForwarder, is_websocket_upgrade
from .revocation.bus import RevocationBus
from .revocation.event_hooks import EventHookReceiver
from .revocation.universal_logout import KeySet, TokenVerifier, handle, jwks_fetcher, user_revoker
from .routing import Route, resolve_path
from .sessions.binding import BindingCodec
from .sessions.binding_cookie import BindingStorage
from .sessions.cache import ValidationCache
from .sessions.sockets import OpenSockets
from .sessions.validation import SessionValidator, Verdict
from .settings import OktaSettings, ServerSettings
from .store.memory import MemoryStore

log = logging.getLogger("gateway")

SETTINGS = web.AppKey("settings", Settings)
POOLS = web.AppKey("pools", UpstreamPools)
METRICS = web.AppKey("metrics", Metrics)
VALIDATOR = web.AppKey("validator", SessionValidator)
ENFORCERS = web.AppKey("enforcers", dict[str, Enforcer])
SOCKETS = web.AppKey("sockets", OpenSockets)
BUS = web.AppKey("bus", RevocationBus)

class ClientFaultsAtDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with the requests its parser refused logged at DEBUG: they are the client's fault,
    and one ERROR traceback each would let any client fill the log. Everything else is logged as aiohttp logs it."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            self.debug(msg, *args, exc_info=exc_info, **kwargs)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)


_CREDENTIALS_RECHECK = (30.0, 300.0)  # seconds between checks of our Okta token: while in doubt, while good


def build_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The gateway. `clock` (epoch seconds) is what session lifetimes are compared with; tests move it."""
    app = web.Application(handler_args={"max_field_size": 16384, "max_line_size": 16384,
                                         "logger": ClientFaultsAtDebug(logging.getLogger("aiohttp.server"))})
    pools = UpstreamPools(settings.routes.routes, settings.proxy)
    app[SETTINGS] = settings
    app[POOLS] = pools
    app[METRICS] = metrics = Metrics()
    app.cleanup_ctx.append(_pools_ctx)
    http = Forwarder(pools, settings.server)
    ws = WebSocketForwarder(pools, settings.server, settings.proxy)
    app[ENFORCERS] = {}
    app[SOCKETS] = OpenSockets()
    if settings.okta is not None:
        app[VALIDATOR] = validator = _validator(settings.okta, metrics, clock)
        app[BUS] = bus = RevocationBus(MemoryStore(), validator, app[SOCKETS], metrics, clock=clock)
        app[ENFORCERS] = _enforcers(settings, validator, http, ws, pools, app[SOCKETS], bus, metrics, clock)
        app.cleanup_ctx.append(_okta_ctx)

    prefix = settings.server.prefix
    own = web.UrlDispatcher()  # the gateway's endpoints, gathered here and then added behind _plainly_spelled
    if settings.okta is not None and settings.okta.event_hook is not None:
        hook = settings.okta.event_hook
        receiver = EventHookReceiver(hook.secret, hook.header, app[BUS], metrics)
        own.add_get(prefix + "okta/events", receiver.verify)
        own.add_post(prefix + "okta/events", receiver.deliver)
    if settings.okta is not None and settings.okta.universal_logout is not None:
        own.add_post(prefix + "okta/universal-logout", _universal_logout(app, settings.okta, clock))
    if settings.admin_token is not None:
        admin = Admin(Operator(settings.admin_token, prefix, clock), prefix, settings.routes.routes, app[ENFORCERS],
                      metrics, app.get(BUS), app[SOCKETS], trusted_proxies=settings.server.trusted_proxies)
        admin.add_routes(own)
    own.add_get(prefix + "healthz", healthz, allow_head=True)
    own.add_get(prefix + "readyz", readyz, allow_head=True)
    limits = settings.server
    for r in own.routes():
        if r.resource is not None:
            app.router.add_route(r.method, r.resource.canonical, _plainly_spelled(r.handler, limits),
                                 expect_handler=_expect_continue_only)
    app.router.add_route("*", prefix + "{tail:.*}", _plainly_spelled(not_found, limits),
                         expect_handler=_expect_continue_only)
    app.router.add_route("*", "/{tail:.*}", _proxy_handler(settings, http, ws, app[ENFORCERS], metrics),
                         expect_handler=_expect_later)
    return app


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


def _plainly_spelled(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     limits: ServerSettings) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of a gateway endpoint, reached only by a path spelled as it reads: no escapes, dot segments or
    empty segments (aiohttp routed on the decoded path)."""

    async def plain(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if path[:1] != "/" or "%" in path or "//" in path or resolve_path(path) != path or _odd_version(request):
            return error_response(request, 400, _ODD_SPELLING, close=True)
        with body_deadline(request, limits):
            return await handler(request)

    return plain


@contextmanager
def body_deadline(request: web.BaseRequest, limits: ServerSettings) -> Iterator[None]:
    """The request body's reads bounded by `BodyDeadline` while the block runs; nothing without a body."""
    if not request.body_exists:
        yield
        return
    deadline = BodyDeadline(request, limits.body_timeout, limits.body_min_rate)
    try:
        yield
    finally:
        deadline.cancel()


class BodyDeadline:
    """Fails the request body's reads with 408 when the client sends it too slowly, counting only the time the
    gateway is ready to read (not while its socket is paused because the gateway is behind):
    - a pause: `idle` seconds without a byte;
    - a trickle: past the first `idle` seconds, fewer than `min_rate` bytes a second on average (Apache's
      mod_reqtimeout MinRate): one byte every few seconds never pauses for long, yet would hold a connection and
      an upstream slot for as long as the client likes.
    One timer per request body. It does not learn when a byte came, only whether one came since its last run: it
    runs every quarter of `idle` and refuses a pause at the fourth run in a row that saw none, so the pause it
    refuses is `idle` to `idle` and a quarter long (one check per `idle` would let a byte just after a check buy
    almost two)."""

    __slots__ = ("_content", "_transport", "_step", "_min_rate", "_first", "_seen", "_quiet", "_reading",
                 "_handle")

    def __init__(self, request: web.BaseRequest, idle: float, min_rate: int | None) -> None:
        self._content = request.content
        self._transport = request.transport
        self._step = idle / _QUIET_CHECKS
        self._min_rate = min_rate
        self._first = self._seen = self._content.total_bytes
        self._quiet = 0
        self._reading = -idle  # seconds spent ready to read, less the first `idle`, which are free
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(self._step, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        content, transport = self._content, self._transport
        if content.is_eof() or content.exception() is not None or transport is None or transport.is_closing():
            return
        received = content.total_bytes
        if not transport.is_reading():
            self._quiet = 0
        else:
            self._reading += self._step
            self._quiet = 0 if received != self._seen else self._quiet + 1
        self._seen = received
        if self._quiet >= _QUIET_CHECKS:
            self._fail("The request body stopped arriving.")
        elif self._min_rate is not None and self._reading * self._min_rate > received - self._first:
            self._fail("The request body arrives too slowly.")
        else:
            self._handle = asyncio.get_running_loop().call_later(self._step, self._check)

    def _fail(self, why: str) -> None:
        timeout = BodyTooSlow(text=why)
        timeout.force_close()
        self._content.set_exception(timeout)


class BodyTooSlow(web.HTTPRequestTimeout, TimeoutError):
    """The 408 a body read fails with. A TimeoutError too: after the answer, aiohttp reads on to drain the rest of
    an unfinished body (its lingering close), meets this error again, and takes only a TimeoutError there for the
    end of the wait; any other error it logs as an ERROR traceback, one per slow client."""


_QUIET_CHECKS = 4  # runs of a body's timer per `body_timeout`; a pause is refused within a quarter past the limit


JWKS_HTTP = web.AppKey("jwks_http", aiohttp.ClientSession)


def _universal_logout(app: web.Application, okta: OktaSettings,
                      clock: Callable[[], float]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The Universal Logout endpoint: Okta's JWT checked against the org's keys, then the user revoked."""
    assert okta.universal_logout is not None
    issuer = str(okta.org_url)
    jwks_url = str(okta.org_url.with_path("/oauth2/v1/keys"))

    async def fetch() -> dict[str, Any]:
        return await jwks_fetcher(app[JWKS_HTTP], jwks_url, okta.timeout)()

    ul = okta.universal_logout
    verifier = TokenVerifier(issuer=issuer, audience=ul.endpoint_url, keys=KeySet(fetch, clock=clock), clock=clock,
                             leeway=ul.leeway)
    revoke = user_revoker(app[VALIDATOR].client, app[BUS])
    app.cleanup_ctx.append(_jwks_http_ctx)

    async def universal_logout(request: web.Request) -> web.StreamResponse:
        return await handle(request, verifier, issuer, revoke)

    return universal_logout


async def _jwks_http_ctx(app: web.Application) -> AsyncIterator[None]:
    app[JWKS_HTTP] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    yield
    await app[JWKS_HTTP].close()


def _enforcers(settings: Settings, validator: SessionValidator, http: Forwarder, ws: WebSocketForwarder,
               pools: UpstreamPools, sockets: OpenSockets, bus: RevocationBus, metrics: Metrics,
               clock: Callable[[], float]) -> dict[str, Enforcer]:
    """One Enforcer per route that binds sessions (its policy may be switched to off and back while running)."""
    routes = [r for r in settings.routes.routes if r.sessions is not None]
    if not routes or settings.okta is None:
        return {}
    codec = BindingCodec(settings.binding_keys)
    unknown_ids = unknown_id_budget(settings.okta)  # one for the gateway: Okta's rate limit is the org's
    return {
        r.name: Enforcer(r, r.sessions, validator=validator, storage=BindingStorage(codec, r.sessions.cookie, r.name),
                         http=http, websocket=ws, pools=pools, sockets=sockets, bus=bus,
                         okta_url=settings.okta.org_url if settings.okta else URL(), metrics=metrics,
                         unknown_ids=unknown_ids, trusted_proxies=settings.server.trusted_proxies, clock=clock)
        for r in routes if r.sessions is not None
    }


async def _pools_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[POOLS].start()
    yield
    await app[POOLS].close()


def _validator(okta: OktaSettings, metrics: Metrics, clock: Callable[[], float]) -> SessionValidator:
    client = OktaClient(okta.org_url, okta.api_token, timeout=okta.timeout, retries=okta.retries, metrics=metrics,
                        clock=clock)
    return SessionValidator(client, ValidationCache(okta.cache), metrics, clock=clock, low_headroom=okta.low_headroom,
                            stretch=okta.stretch, max_background=okta.max_background_refreshes)


async def _okta_ctx(app: web.Application) -> AsyncIterator[None]:
    validator = app[VALIDATOR]
    await validator.client.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_watch_credentials(validator.client)),
             loop.create_task(_sweep_sockets(validator, app[SOCKETS], app[METRICS]))]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for enforcer in app[ENFORCERS].values():
        await enforcer.close()
    await validator.close()
    await validator.client.close()


_SOCKET_SWEEP = 5.0  # seconds between revalidations of the sessions behind open WebSockets


async def _sweep_sockets(validator: SessionValidator, sockets: OpenSockets, metrics: Metrics) -> None:
    """An open WebSocket makes no requests: revalidate its session now and then, and close it once it ended."""
    while True:
        await asyncio.sleep(_SOCKET_SWEEP)
        for session_id in sockets.sessions():
            validation = await validator.validate(session_id)
            if validation.verdict is Verdict.GONE or (validation.verdict is Verdict.ALIVE and not validation.signed_in):
                metrics.sockets_closed.inc(sockets.end(session_id))


async def _watch_credentials(client: OktaClient) -> None:
    """Keep readiness honest about our Okta token: a rejected token fails /readyz until Okta accepts it again."""
    while True:
        ok = await client.check_credentials()
        await asyncio.sleep(_CREDENTIALS_RECHECK[1] if ok else _CREDENTIALS_RECHECK[0])


def _proxy_handler(
    settings: Settings, http: Forwarder, ws: WebSocketForwarder, enforcers: dict[str, Enforcer], metrics: Metrics
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    table = settings.routes
    requests = {r.name: metrics.requests.get(r.name) for r in table.routes}

    limits = settings.server

    async def proxy(request: web.Request) -> web.StreamResponse:
        if request.raw_path[:1] != "/" or _odd_version(request):
            return error_response(request, 400, _NOT_SERVED, close=True)
        route = table.match(request.headers.get("Host", ""), request.path, request.raw_path)
        if route is None:
            return error_response(request, 404, answers.NO_ROUTE)
        requests[route.name].inc()
        if request.body_exists:
            coding = request.headers.get("Transfer-Encoding")
            if coding is not None and coding.strip().lower() != "chunked":
                return error_response(request, 400, _CODING_NOT_SERVED, close=True)
            with body_deadline(request, limits):
                response = await dispatch(request, route)
        else:
            response = await dispatch(request, route)
        if "Upgrade" in request.headers and not is_websocket_upgrade(request):
            # aiohttp reads no further request on a connection that asked to switch to another protocol (h2c,
            # anything but a WebSocket, which was not switched here): close it, or what follows hangs unanswered
            response.force_close()
        return response

    def dispatch(request: web.Request, route: Route) -> Awaitable[web.StreamResponse]:
        enforcer = enforcers.get(route.name) if enforcers else None
        if enforcer is not None:
            return enforcer(request)
        if is_websocket_upgrade(request):
            return ws(request, route)
        return http(request, route)

    return proxy


async def _expect_continue_only(request: web.Request) -> None:
    """The gateway's endpoints: `100 Continue` for `Expect: 100-continue`, a 417 for any other expectation.
    aiohttp's own handler echoes the header in its 417, which fails with a 500 on bytes that are not UTF-8."""
    if request.headers.get("Expect", "").lower() == "100-continue":
        await continue_if_expected(request)
    elif request.version >= (1, 1):
        raise web.HTTPExpectationFailed(text="Only Expect: 100-continue is understood.")


async def _expect_later(request: web.Request) -> None:
    """aiohttp would answer `100 Continue` before the handler runs; the forwarder decides instead."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    problems = [] if request.app[POOLS].ready else ["upstream pools are not up"]
    validator = request.app.get(VALIDATOR)
    if validator is not None and validator.client.credentials_ok is False:
        problems.append("Okta rejects the gateway's API token")
    body: dict[str, object] = {"status": "not ready" if problems else "ready",
                               "routes": len(request.app[SETTINGS].routes.routes)}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=503 if problems else 200, headers={"Cache-Control": "no-store"})


async def not_found(request: web.Request) -> web.Response:
    return error_response(request, 404, "No such gateway endpoint.")
