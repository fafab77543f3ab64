"""The gateway's connections to its upstreams (gateway/proxy/upstream.py), against real aiohttp servers on loopback:
one keep-alive pool per origin, shared by the routes that name it and sized and timed by [proxy]; readiness; and
the WebSocket client, which keeps no cookies, adds no headers and decompresses nothing."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from conftest import origin, route, settings
from gateway.proxy.client import OriginPool, UpstreamError, UpstreamTimeout
from gateway.proxy.upstream import UpstreamPools
from gateway.routing import Route


async def answered(request: web.Request) -> web.Response:
    return web.Response(text="answered")


StartPools = Callable[..., Awaitable[tuple[UpstreamPools, tuple[Route, ...]]]]


@pytest.fixture
async def start_pools() -> AsyncIterator[StartPools]:
    """UpstreamPools for these routes and [proxy] options, started as the gateway starts them; closed after."""
    made: list[UpstreamPools] = []

    async def start(*routes: dict[str, Any], **proxy: Any) -> tuple[UpstreamPools, tuple[Route, ...]]:
        parsed = settings(list(routes), proxy=proxy)
        pools = UpstreamPools(parsed.routes.routes, parsed.proxy)
        made.append(pools)
        await pools.start()
        return pools, parsed.routes.routes

    yield start
    for pools in made:
        await pools.close()


@pytest.fixture
async def peer_ports(start_upstream) -> tuple[TestServer, list[int]]:
    """An upstream that records the client port of each request it gets: one port, one connection."""
    ports: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text=request.path)

    return await start_upstream(answer), ports


async def get(pool: OriginPool, server: TestServer, path: str, **timeouts: float) -> tuple[int, bytes]:
    """A GET through the pool, its body read and the connection handed back."""
    answer = await pool.request("GET", path, [("Host", f"{server.host}:{server.port}")], None, body_length=None,
                                connect_timeout=timeouts.get("connect_timeout", 5.0), read_timeout=5.0)
    try:
        return answer.status, b"".join([chunk async for chunk in answer.iter_body()])
    finally:
        answer.close()


async def test_routes_that_name_one_origin_share_its_pool_and_its_connections(start_pools, peer_ports, start_upstream):
    upstream, ports = peer_ports
    other = await start_upstream(answered)
    pools, (hr, wiki, elsewhere) = await start_pools(route(upstream, name="hr", path="/hr"),
                                                    route(upstream, name="wiki", path="/wiki", rewrite="/"),
                                                    route(other, name="elsewhere", path="/else"))
    assert pools.http(hr) is pools.http(wiki)
    assert pools.http(elsewhere) is not pools.http(hr)
    assert (pools.http(hr).host, pools.http(hr).port) == ("127.0.0.1", upstream.port)
    assert (pools.http(elsewhere).host, pools.http(elsewhere).port) == ("127.0.0.1", other.port)

    assert await get(pools.http(hr), upstream, "/hr/a") == (200, b"/hr/a")
    assert await get(pools.http(wiki), upstream, "/b") == (200, b"/b")
    assert len(ports) == 2 and ports[0] == ports[1]  # the second route's request went over the first's connection


async def test_an_origin_without_a_port_gets_its_schemes_port(start_pools):
    pools, (plain, tls) = await start_pools(route("http://app.example.test", name="plain", path="/p"),
                                            route("https://app.example.test", name="tls", path="/t"))
    assert (pools.http(plain).host, pools.http(plain).port) == ("app.example.test", 80)
    assert (pools.http(tls).host, pools.http(tls).port) == ("app.example.test", 443)
    assert pools.http(plain) is not pools.http(tls)  # another scheme is another origin


async def test_an_https_origin_is_spoken_to_in_tls(start_pools, peer_ports):
    upstream, ports = peer_ports  # a plain HTTP server: TLS fails at its first bytes
    pools, (tls, plain) = await start_pools(route(f"https://127.0.0.1:{upstream.port}", name="tls", path="/t"),
                                            route(upstream, name="plain", path="/p"))
    with pytest.raises(UpstreamError):
        await get(pools.http(tls), upstream, "/t")
    assert await get(pools.http(plain), upstream, "/p") == (200, b"/p")
    assert len(ports) == 1


async def test_a_pool_holds_pool_size_connections_at_most(start_pools, peer_ports):
    upstream, ports = peer_ports
    pools, (app,) = await start_pools(route(upstream), pool_size=1)
    pool = pools.http(app)
    held = await pool.request("GET", "/held", [("Host", "x")], None, body_length=None, connect_timeout=5.0,
                              read_timeout=5.0)
    with pytest.raises(UpstreamTimeout):
        await get(pool, upstream, "/waits", connect_timeout=0.2)
    held.close()
    assert await get(pool, upstream, "/now") == (200, b"/now")
    assert len(ports) == 2


async def test_a_pool_of_two_lets_a_second_request_through(start_pools, peer_ports):
    upstream, ports = peer_ports
    pools, (app,) = await start_pools(route(upstream), pool_size=2)
    held = await pools.http(app).request("GET", "/held", [("Host", "x")], None, body_length=None,
                                         connect_timeout=5.0, read_timeout=5.0)
    try:
        assert await get(pools.http(app), upstream, "/second", connect_timeout=0.2) == (200, b"/second")
    finally:
        held.close()
    assert len(set(ports)) == 2


@pytest.mark.parametrize(("keepalive", "reused"), [(0.1, False), (30.0, True)])
async def test_an_idle_connection_is_kept_for_the_keepalive_timeout(start_pools, peer_ports, keepalive, reused):
    upstream, ports = peer_ports
    pools, (app,) = await start_pools(route(upstream), keepalive_timeout=keepalive)
    await get(pools.http(app), upstream, "/first")
    await asyncio.sleep(0.4)
    await get(pools.http(app), upstream, "/later")
    assert (ports[0] == ports[1]) is reused


async def test_the_pools_are_ready_between_start_and_close(start_upstream):
    upstream = await start_upstream(answered)
    parsed = settings([route(upstream, name="hr", path="/hr"), route(upstream, name="wiki", path="/wiki")])
    pools = UpstreamPools(parsed.routes.routes, parsed.proxy)
    assert not pools.ready
    await pools.start()
    assert pools.ready
    pool, websocket = pools.http(parsed.routes.routes[0]), pools.websocket(parsed.routes.routes[0])
    await pools.close()
    assert not pools.ready and pool.closed and websocket.closed


# --- the WebSocket client -----------------------------------------------------------------------------------------


@pytest.fixture
async def recorder(start_upstream) -> tuple[TestServer, list[web.Request]]:
    """An upstream that records each request: /cookie sets a cookie, /gzip answers a gzip body, /ws echoes."""
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if request.path == "/ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                await ws.send_str(message.data)
            return ws
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(b"compressed upstream body"),
                                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        response = web.Response(text="ok")
        if request.path == "/cookie":
            response.set_cookie("upstream_session", "someone-elses")
        return response

    return await start_upstream(answer), seen


async def test_one_websocket_client_serves_every_route(start_pools, recorder, start_upstream):
    upstream, _ = recorder
    other = await start_upstream(answered)
    pools, (hr, elsewhere) = await start_pools(route(upstream, name="hr", path="/hr"),
                                               route(other, name="elsewhere", path="/else"))
    assert pools.websocket(hr) is pools.websocket(elsewhere)
    assert pools.websocket(hr).timeout.total is None  # a WebSocket lives as long as both ends keep it


async def test_the_websocket_client_keeps_no_cookie_and_adds_no_header_of_its_own(start_pools, recorder):
    upstream, seen = recorder
    pools, (app,) = await start_pools(route(upstream))
    client = pools.websocket(app)
    named = f"http://localhost:{upstream.port}"  # a host name: a cookie jar would keep this one's cookies
    async with client.get(named + "/cookie") as r:
        assert r.cookies["upstream_session"].value == "someone-elses"
    async with client.ws_connect(named + "/ws") as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
    async with client.post(named + "/post", data=b"raw bytes") as r:
        assert r.status == 200
    for request in seen[1:]:  # after an upstream answer set a cookie for this host
        assert "Cookie" not in request.headers, request.path
        for added in ("User-Agent", "Accept", "Accept-Encoding", "Content-Type"):
            assert added not in request.headers, (request.path, added)
    assert [r.path for r in seen] == ["/cookie", "/ws", "/post"]


async def test_the_websocket_client_hands_bodies_on_as_they_came(start_pools, recorder):
    upstream, _ = recorder
    pools, (app,) = await start_pools(route(upstream))
    async with pools.websocket(app).get(origin(upstream) + "/gzip") as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await r.read()) == b"compressed upstream body"
