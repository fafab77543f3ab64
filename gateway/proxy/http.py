"""Forward one HTTP request upstream and stream the answer back, never holding a whole body."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from .. import answers
from ..routing import Route
from .headers import request_headers_for_upstream, response_headers_for_client
from .upstream import UpstreamPools
from ..config import ServerSettings

log = logging.getLogger("gateway.proxy")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNK = 2**16


class BodyTooLarge(Exception):
    """The client's body went past the route's cap while it streamed."""


class Forwarder:
    """Forwards requests of any route to its upstream pool."""

    def __init__(self, pools: UpstreamPools, server: ServerSettings) -> None:
        self._pools = pools
        self._trusted = server.trusted_proxies

    async def __call__(self, request: web.Request, route: Route) -> web.StreamResponse:
        target = route.upstream_target(request.raw_path)
        if target is None:
            return error_response(request, 400, answers.BAD_PATH)
        length = request.content_length
        cap = route.max_request_body
        if cap is not None and length is not None and length > cap:
            return error_response(request, 413, answers.TOO_LARGE, close=True)
        body = self._body(request, cap)
        if body is not None and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        headers = request_headers_for_upstream(
            tuple(request.headers.items()),
            peer=request.remote,
            scheme=request.scheme,
            host=request.headers.get("Host", ""),
            upstream_host=route.upstream.raw_authority,
            preserve_host=route.preserve_host,
            trusted_proxies=self._trusted,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=route.connect_timeout, sock_read=route.read_timeout
        )
        url = URL(route.upstream_origin + target, encoded=True)
        try:
            upstream = await self._pools.session(route).request(
                request.method, url, headers=headers, data=body, allow_redirects=False, timeout=timeout
            )
        except BodyTooLarge:
            return error_response(request, 413, answers.TOO_LARGE, close=True)
        except asyncio.TimeoutError:
            log.warning("route %s: upstream %s timed out", route.name, route.upstream_origin)
            return error_response(request, 504, answers.GATEWAY_TIMEOUT)
        except aiohttp.ClientError as exc:
            if isinstance(body, _CappedBody) and body.exceeded:
                return error_response(request, 413, answers.TOO_LARGE, close=True)
            log.warning("route %s: upstream %s failed: %s", route.name, route.upstream_origin, _describe(exc))
            return error_response(request, 502, answers.BAD_GATEWAY)
        async with upstream:
            return await _relay(request, route, upstream)

    @staticmethod
    def _body(request: web.Request, cap: int | None) -> "web.StreamReader | _CappedBody | None":  # type: ignore[name-defined]
        if not request.body_exists:
            return None
        if cap is None or request.content_length is not None:
            return request.content
        return _CappedBody(request.content, cap)


class _CappedBody:
    """A chunked request body that stops with `BodyTooLarge` past the cap."""

    def __init__(self, content: aiohttp.StreamReader, cap: int) -> None:
        self._content, self._left, self.exceeded = content, cap, False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._content.iter_chunked(_CHUNK):
            self._left -= len(chunk)
            if self._left < 0:
                self.exceeded = True
                raise BodyTooLarge()
            yield chunk


async def _relay(request: web.Request, route: Route, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(response_headers_for_client(upstream.headers.items()))
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except ConnectionResetError:
        log.debug("route %s: client went away mid-answer", route.name)
        return response
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("route %s: upstream %s failed mid-answer: %s", route.name, route.upstream_origin, _describe(exc))
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
    response = web.Response(status=a.status, body=a.body, content_type=a.content_type.split(";")[0], charset="utf-8"
                            if "charset" in a.content_type else None)
    response.headers["Cache-Control"] = "no-store"
    if close:
        response.force_close()
    return response


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
