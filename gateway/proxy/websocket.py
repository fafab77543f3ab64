"""Proxy a WebSocket upgrade: connect upstream first, then accept the client, then pump frames both ways.

Connecting upstream first means a refused or slow upstream still gets a plain 502/504 answer, and the client is
offered exactly the subprotocol the upstream chose. Close codes and reasons cross in both directions.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from .. import answers
from ..logs import current
from ..routing import Route
from ..settings import ProxySettings, ServerSettings
from .headers import WEBSOCKET_OWN
from .http import error_response, upstream_answered, upstream_headers
from .request_id import stamp
from .upstream import UpstreamPools

log = logging.getLogger("gateway.proxy")

# aiohttp's client makes its own handshake headers; the subprotocols go through `protocols=`
_NOT_FORWARDED = WEBSOCKET_OWN | {"sec-websocket-protocol"}


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket" and request.method == "GET"


class WebSocketForwarder:
    def __init__(self, pools: UpstreamPools, server: ServerSettings, proxy: ProxySettings, *,
                 leaving: asyncio.Event | None = None) -> None:
        """leaving: set when the gateway stops: every socket open then closes with 1001 (going away)."""
        self._pools = pools
        self._trusted = server.trusted_proxies
        self._max_message = proxy.websocket_max_message
        self._leaving = leaving

    async def __call__(
        self, request: web.Request, route: Route, *, cookie: str | None = None, stop: asyncio.Event | None = None
    ) -> web.StreamResponse:
        """Proxy the upgrade. `cookie` replaces the client's Cookie header (as for HTTP); setting `stop` closes
        both sides with 1008 (policy violation): the session behind the socket has ended."""
        target = route.upstream_target(request.raw_path)
        if target is None:
            return error_response(request, 400, answers.BAD_PATH)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers = upstream_headers(request, route, self._trusted, drop=_NOT_FORWARDED, cookie=cookie)
        scheme = "wss" if route.upstream.scheme == "https" else "ws"
        url = URL(f"{scheme}://{route.upstream.raw_authority}{target}", encoded=True)
        asked = perf_counter()
        try:
            upstream = await self._pools.websocket(route).ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=False,
                max_msg_size=self._max_message,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=route.read_timeout),
                compress=0,
            )
            upstream_answered(perf_counter() - asked)
        except TimeoutError:
            log.warning("route %s: upstream %s timed out on a WebSocket upgrade", route.name, route.upstream_origin)
            return error_response(request, 504, answers.GATEWAY_TIMEOUT)
        except aiohttp.WSServerHandshakeError as exc:
            log.warning("route %s: upstream %s refused a WebSocket upgrade (%s)", route.name,
                        route.upstream_origin, exc.status)
            return error_response(request, 502, answers.BAD_GATEWAY)
        except aiohttp.ClientError as exc:
            log.warning("route %s: upstream %s failed a WebSocket upgrade: %s", route.name,
                        route.upstream_origin, type(exc).__name__)
            return error_response(request, 502, answers.BAD_GATEWAY)
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (),
            autoclose=False,
            autoping=False,
            max_msg_size=self._max_message,
            compress=False,
        )
        stamp(client, current.get())
        try:
            await client.prepare(request)
            await _pump_both(client, upstream, stop, self._leaving)
        except ConnectionResetError:
            log.debug("route %s: WebSocket client went away", route.name)
        finally:
            if not upstream.closed:
                await upstream.close()
            if not client.closed:
                await client.close()
        return client


AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


SESSION_ENDED = (aiohttp.WSCloseCode.POLICY_VIOLATION, b"session ended")
GOING_AWAY = (aiohttp.WSCloseCode.GOING_AWAY, b"the gateway is stopping")


async def _pump_both(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, stop: asyncio.Event | None = None,
    leaving: asyncio.Event | None = None,
) -> None:
    """Pump both directions; the first side to close ends both, and its close code crosses to the other."""
    pumps: dict[asyncio.Task[tuple[int, bytes] | None], tuple[AnyWebSocket, AnyWebSocket]] = {
        asyncio.create_task(_pump(client, upstream)): (client, upstream),
        asyncio.create_task(_pump(upstream, client)): (upstream, client),
    }
    if stop is not None:
        pumps[asyncio.create_task(_stopped(stop))] = (upstream, client)
    if leaving is not None:
        pumps[asyncio.create_task(_stopped(leaving, GOING_AWAY))] = (upstream, client)
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    ended = done.pop()
    source, sink = pumps[ended]
    closing = ended.result()
    if closing is None:
        if not sink.closed:
            await sink.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        return
    code, reason = closing
    # pass the close on first, so the side that closed hears back only once the other side knows
    if not sink.closed:
        await sink.close(code=code, message=reason)
    if not source.closed:
        await source.close(code=code, message=reason)


async def _stopped(stop: asyncio.Event, why: tuple[int, bytes] = SESSION_ENDED) -> tuple[int, bytes]:
    await stop.wait()
    return why


async def _pump(source: AnyWebSocket, sink: AnyWebSocket) -> tuple[int, bytes] | None:
    """Copy frames from source to sink; return the close code and reason source sent, or None if it vanished."""
    while True:
        msg = await source.receive()
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type is WSMsgType.PING:
            await sink.ping(msg.data)
        elif msg.type is WSMsgType.PONG:
            await sink.pong(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            return msg.data, (msg.extra or "").encode()
        else:  # CLOSING, CLOSED, ERROR: the peer is gone without a close frame
            return None
