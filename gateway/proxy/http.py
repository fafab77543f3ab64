"""Forward one HTTP request upstream and stream the answer back, never holding a whole body."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from time import perf_counter

from aiohttp import StreamReader, web

from .. import answers
from ..logs import REQUEST_ID_HEADER, current
from ..metrics import Metrics, TimingsByValue
from ..routing import Route
from ..settings import IPNetwork, ServerSettings
from .client import UpstreamError, UpstreamResponse, UpstreamTimeout
from .headers import Header, request_headers_for_upstream, response_headers_for_client
from .relayed import RelayedAnswer
from .request_id import Stop, stamp
from .upstream import UpstreamPools

log = logging.getLogger("gateway.proxy")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_COOKIE = frozenset({"cookie"})


class BodyTooLarge(Exception):
    """The client's body went past the route's cap while it streamed."""


BeforeAnswer = Callable[[RelayedAnswer], Awaitable[None] | None]  # an awaitable one holds the head back


class Forwarder:
    """Forwards requests of any route to its upstream pool.

    Session enforcement uses three options: `body`, a request body it has already read (the ACS POST); `cookie`,
    the Cookie header to send instead of the client's ("" for none: the gateway's own cookie stays here); and
    `before_answer`, called with the answer before it is sent, to set or expire cookies on it. It may be a
    coroutine function (or return any awaitable): the answer's head is held back until it is done.

    The time from sending a request upstream to the upstream's answer head is observed by route (metrics.py's
    lockless `Timing`); a request the upstream did not answer is counted as an error instead.
    """

    def __init__(self, pools: UpstreamPools, server: ServerSettings, metrics: Metrics,
                 stop: Stop | None = None) -> None:
        self._pools = pools
        self._stop = stop
        self._trusted = server.trusted_proxies
        self._latency = TimingsByValue(metrics.upstream_latency)
        self._errors = metrics.upstream_errors

    async def __call__(
        self, request: web.Request, route: Route, *, body: bytes | None = None, cookie: str | None = None,
        before_answer: BeforeAnswer | None = None,
    ) -> web.StreamResponse:
        target = route.upstream_target(request.raw_path)
        if target is None:
            return error_response(request, 400, answers.BAD_PATH)
        length = request.content_length if body is None else len(body)
        cap = route.max_request_body
        if cap is not None and length is not None and length > cap:
            return error_response(request, 413, answers.TOO_LARGE, close=True)
        stream = _body(request, cap) if body is None else body_once(body)
        if body is None and stream is not None:
            await continue_if_expected(request)
        headers = upstream_headers(request, route, self._trusted, cookie=cookie)
        sent = perf_counter()
        try:
            upstream = await self._pools.http(route).request(
                request.method, target, headers, stream, body_length=length,
                connect_timeout=route.connect_timeout, read_timeout=route.read_timeout,
            )
        except BodyTooLarge:
            return error_response(request, 413, answers.TOO_LARGE, close=True)
        except UpstreamTimeout as exc:
            self._errors.get(route.name, "timeout").inc()
            log.warning("route %s: upstream %s: %s", route.name, route.upstream_origin, exc)
            return error_response(request, 504, answers.GATEWAY_TIMEOUT)
        except UpstreamError as exc:
            self._errors.get(route.name, "failed").inc()
            log.warning("route %s: upstream %s: %s", route.name, route.upstream_origin, exc)
            return error_response(request, 502, answers.BAD_GATEWAY)
        took = perf_counter() - sent
        self._latency[route.name].observe(took)
        upstream_answered(took)
        try:
            return await _relay(request, route, upstream, before_answer, self._stop)
        finally:
            upstream.close()


def upstream_headers(
    request: web.Request, route: Route, trusted: Sequence[IPNetwork], drop: frozenset[str] = frozenset(),
    cookie: str | None = None,
) -> list[Header]:
    """The client's request headers as the route's upstream must get them (headers.py has the rules).

    `cookie`, when given, replaces the client's Cookie header ("" sends none).
    """
    if cookie is not None:
        drop = drop | _COOKIE if drop else _COOKIE
    headers = request_headers_for_upstream(
        tuple(request.headers.items()),
        peer=request.remote,
        scheme=request.scheme,
        host=request.headers.get("Host", ""),
        upstream_host=route.upstream.raw_authority,
        preserve_host=route.preserve_host,
        trusted_proxies=trusted,
        drop=drop,
    )
    if cookie:
        headers.append(("Cookie", cookie))
    return with_request_id(headers)


def with_request_id(headers: list[Header]) -> list[Header]:
    """The headers with the current request's X-Request-Id (headers.py leaves the client's out)."""
    entry = current.get()
    if entry is not None:
        headers.append((REQUEST_ID_HEADER, entry.request_id))
    return headers


def upstream_answered(took: float) -> None:
    """The upstream's answer head came `took` seconds after it was asked: for the access line."""
    entry = current.get()
    if entry is not None:
        entry.upstream_s = took


async def continue_if_expected(request: web.Request) -> None:
    """Send `100 Continue` to a client that waits for it before its body: the proxy's Expect handler leaves that to
    whoever reads the body, once the request is known to be acceptable."""
    if request.version >= (1, 1) and _expects_continue(request):
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # as aiohttp's own handler does: the answer itself has not begun


def _expects_continue(request: web.Request) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


def _body(request: web.Request, cap: int | None) -> AsyncIterable[bytes] | None:
    if not request.body_exists:
        return None
    if cap is None or request.content_length is not None:
        return request.content.iter_any()
    return _capped(request.content, cap)


async def body_once(body: bytes) -> AsyncIterator[bytes]:
    """A body already read, as the upstream client takes one."""
    yield body


async def _capped(content: StreamReader, cap: int) -> AsyncIterator[bytes]:
    """A chunked request body that stops with `BodyTooLarge` past the cap."""
    left = cap
    async for chunk in content.iter_any():
        left -= len(chunk)
        if left < 0:
            raise BodyTooLarge()
        yield chunk


async def _relay(
    request: web.Request, route: Route, upstream: UpstreamResponse, before_answer: BeforeAnswer | None,
    stop: Stop | None,
) -> web.StreamResponse:
    body = upstream.body_if_complete()
    response = RelayedAnswer(upstream.status, upstream.reason, response_headers_for_client(upstream.raw_headers), body)
    if body is not None:  # the whole answer is here: head and body go in one write once the handler returns
        if before_answer is not None and (waited := before_answer(response)) is not None:
            await waited
        return response
    stamp(response, current.get(), stop)  # sent before the handler returns
    if before_answer is not None and (waited := before_answer(response)) is not None:
        await waited
    try:
        await response.prepare(request)
        async for chunk in upstream.iter_body():
            await response.write(chunk)
    except ConnectionResetError:
        log.debug("route %s: client went away mid-answer", route.name)
        return response
    except asyncio.CancelledError:  # handler_cancellation: aiohttp cancels us when the client disconnects
        log.debug("route %s: client went away mid-answer", route.name)
        raise
    except UpstreamError as exc:
        log.warning("route %s: upstream %s failed mid-answer: %s", route.name, route.upstream_origin, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    try:
        await response.write_eof()
    except ConnectionResetError:
        log.debug("route %s: client went away at the end of the answer", route.name)
    return response


def error_response(request: web.Request, status: int, detail: str, *, close: bool = False) -> web.Response:
    a = answers.answer(
        status, detail, accept=request.headers.get("Accept"), requested_with=request.headers.get("X-Requested-With")
    )
    response = web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type,
                                                                    "Cache-Control": "no-store"})
    if close:
        response.force_close()
    return response
