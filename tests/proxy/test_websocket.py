"""WebSocket upgrades through the gateway, against a real upstream WebSocket server."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from conftest import route
from gateway.sandbox.upstream import build_upstream_app


async def test_websocket_echo_both_ways_with_subprotocol(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(build_upstream_app())))
    async with http.ws_connect(gateway.make_url("/ws"), protocols=("echo",)) as ws:
        assert ws.protocol == "echo"
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        await ws.send_bytes(b"\x00\x01" * 50_000)
        assert (await ws.receive(timeout=5)).data == b"\x00\x01" * 50_000


async def test_upstream_close_code_reaches_the_client(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(build_upstream_app())))
    async with http.ws_connect(gateway.make_url("/ws")) as ws:
        await ws.send_str("close:4001")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4001
        assert msg.extra == "asked to close"


async def test_client_close_code_reaches_the_upstream(start_upstream, start_gateway, http):
    seen: list[int | None] = []

    async def upstream_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        seen.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", upstream_ws)
    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.ws_connect(gateway.make_url("/ws")) as ws:
        await ws.close(code=4002, message=b"bye")
        assert ws.close_code == 4002
    assert seen == [4002]


async def test_websocket_pings_cross_the_gateway(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(build_upstream_app())))
    async with http.ws_connect(gateway.make_url("/ws"), autoping=False) as ws:
        await ws.ping(b"are you there")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.PONG
        assert msg.data == b"are you there"


async def test_websocket_cookies_and_path_reach_the_upstream(start_upstream, start_gateway, http):
    async def upstream_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"cookie": request.headers.get("Cookie"), "path": request.raw_path,
                            "key": request.headers.get("Sec-WebSocket-Key") is not None})
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/v2/socket", upstream_ws)
    gateway = await start_gateway(route(await start_upstream(app), path="/live", rewrite="/v2"))
    url = URL(f"http://{gateway.host}:{gateway.port}/live/socket?x=%7E", encoded=True)
    async with http.ws_connect(url, headers={"Cookie": "JSESSIONID=a"}) as ws:
        got = (await ws.receive(timeout=5)).json()
    assert got == {"cookie": "JSESSIONID=a", "path": "/v2/socket?x=%7E", "key": True}


async def test_websocket_to_a_refused_upstream_gets_502(start_gateway, http):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = await start_gateway(route(f"http://127.0.0.1:{port}"))
    try:
        await http.ws_connect(gateway.make_url("/ws"))
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 502
    else:
        raise AssertionError("the upgrade succeeded with no upstream")


async def test_websocket_upgrade_refused_by_the_upstream_gets_502(start_upstream, start_gateway, http):
    async def plain(request: web.Request) -> web.Response:
        return web.Response(status=403, text="no sockets here")

    gateway = await start_gateway(route(await start_upstream(plain)))
    try:
        await http.ws_connect(gateway.make_url("/ws"))
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 502
    else:
        raise AssertionError("the upgrade succeeded although the upstream refused it")
