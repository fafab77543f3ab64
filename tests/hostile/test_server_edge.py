"""The server edge at the socket: request targets the upstream would read otherwise than the gateway, spellings of
the gateway's own prefix, and time limits on the request head and body (slowloris)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from raw_http import send_raw, statuses

from conftest import route

pytestmark = pytest.mark.hostile

ADMIN_TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
async def echo(start_upstream):
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        await request.read()
        return web.Response(text=f"app {request.raw_path}")

    server = await start_upstream(handler)
    server.seen = seen
    return server


async def test_absolute_form_targets_are_refused_not_forwarded_verbatim(echo, start_gateway):
    gateway = await start_gateway(route(echo))
    for target in (b"http://evil.example/x", b"https://127.0.0.1/x", b"http://evil.example"):
        raw = await send_raw(gateway.host, gateway.port, b"GET %b HTTP/1.1\r\nHost: app\r\n\r\n" % target, idle=0.5)
        assert statuses(raw) in ([400], [404]), target  # 404: aiohttp's router finds no path to route
    assert echo.seen == []


async def test_the_upstream_gets_origin_form_on_routes_that_rewrite_too(echo, start_gateway):
    gateway = await start_gateway(route(echo, path="/app", rewrite="/"))
    raw = await send_raw(gateway.host, gateway.port, b"GET http://evil/app/x HTTP/1.1\r\nHost: app\r\n\r\n", idle=0.5)
    assert statuses(raw) == [400] and echo.seen == []


@pytest.mark.parametrize("path", ["/%2egateway/status", "/%2Egateway/healthz", "/.gateway/%73tatus",
                                  "/.gateway/../.gateway/status", "/.gateway/./healthz", "/.gateway//healthz",
                                  "/.g%61teway/readyz", "/.gateway/x/../status"])
async def test_the_gateways_endpoints_answer_only_at_their_plain_spelling(echo, start_gateway, monkeypatch, path):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    gateway = await start_gateway(route(echo), admin={"token": "${GATEWAY_ADMIN_TOKEN}"})
    request = b"GET %b HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %b\r\n\r\n" % (path.encode(),
                                                                                     ADMIN_TOKEN.encode())
    raw = await send_raw(gateway.host, gateway.port, request, idle=0.5)
    assert statuses(raw) == [400] and b"plain spelling" in raw
    assert echo.seen == []  # nor is it proxied


async def test_the_plain_spellings_still_answer(echo, start_gateway):
    gateway = await start_gateway(route(echo))
    raw = await send_raw(gateway.host, gateway.port, b"GET /.gateway/healthz HTTP/1.1\r\nHost: a\r\n\r\n", idle=0.5)
    assert statuses(raw) == [200] and b"alive" in raw


@pytest.mark.parametrize("path", ["//.gateway/status", "/x/../.gateway/status"])
async def test_spellings_aiohttp_does_not_route_into_the_prefix_are_the_apps(echo, start_gateway, path):
    gateway = await start_gateway(route(echo))
    raw = await send_raw(gateway.host, gateway.port, b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode(), idle=0.5)
    assert statuses(raw) == [200] and b"app " + path.encode() in raw


async def test_a_path_two_readings_route_differently_is_refused(echo, start_upstream, start_gateway):
    async def hr(request: web.Request) -> web.Response:
        return web.Response(text="hr")

    other = await start_upstream(hr)
    gateway = await start_gateway([route(echo, name="site"), route(other, name="hr", path="/hr")])
    for path in (b"/hr;x/secret", b"//hr/secret"):
        raw = await send_raw(gateway.host, gateway.port, b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % path, idle=0.5)
        assert statuses(raw) == [404], path
    assert echo.seen == []
    raw = await send_raw(gateway.host, gateway.port, b"GET /hr/x;jsessionid=1 HTTP/1.1\r\nHost: a\r\n\r\n", idle=0.5)
    assert statuses(raw) == [200] and raw.endswith(b"hr")


# --- time limits (through `session-gateway run`, whose server knobs these are) ----------------------------------


async def test_slow_heads_and_stalled_bodies_are_cut_at_the_configured_limits(echo, gateway_process):
    gateway = gateway_process([route(echo)], server={"header_timeout": 1, "body_timeout": 1})

    async def slowloris() -> float:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 20:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                        break
                except TimeoutError:
                    continue
        except ConnectionError:
            pass
        finally:
            writer.close()
        return time.monotonic() - started

    async def stalled_body() -> tuple[bytes, float]:
        started = time.monotonic()
        raw = await send_raw("127.0.0.1", gateway.port, b"POST /acs HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n"
                             b"\r\nSAMLResponse=", idle=4)
        return raw, time.monotonic() - started

    results = await asyncio.gather(*(slowloris() for _ in range(5)), stalled_body())
    for took in results[:5]:
        assert 0.8 < took < 2.5  # cut at the 1 s head limit (a byte every 0.2 s would take 7 s)
    raw, took = results[5]  # type: ignore[misc]
    assert statuses(raw) == [408] and took < 3.5
    assert echo.seen == [] or echo.seen == ["/acs"]


async def test_a_body_that_keeps_coming_is_not_cut(echo, gateway_process):
    gateway = gateway_process([route(echo)], server={"header_timeout": 1, "body_timeout": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
        for byte in b"abcd":
            await asyncio.sleep(0.6)  # past the head limit in total, under the body limit each time
            writer.write(bytes([byte]))
        answer = await asyncio.wait_for(reader.read(65536), 5)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"app /slow")
    finally:
        writer.close()
