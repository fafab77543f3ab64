"""X-Request-Id through the real gateway: made or kept from a trusted proxy, sent upstream (HTTP and WebSocket), on
every answer, and never a client's hostile value (raw sockets: a client library would tidy those requests)."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp import web
from raw_http import send_raw, statuses

from conftest import route, settings
from gateway.dispatch import plainly_spelled

MADE = re.compile(r"[0-9a-f]{16}")
TRUSTING = {"server": {"trusted_proxies": ["127.0.0.1/32"]}}


def echo_headers() -> web.Application:
    """An upstream that answers with the headers it got, and an X-Request-Id of its own (the gateway's wins)."""

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str(request.headers.get("X-Request-Id", ""))
            await ws.close()
            return ws
        got = request.headers.getall("X-Request-Id", [])
        return web.json_response({"request_ids": got}, headers={"X-Request-Id": "the-app-s-own"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def head_values(raw: bytes, name: bytes) -> list[bytes]:
    head = raw.partition(b"\r\n\r\n")[0]
    return [line.partition(b":")[2].strip() for line in head.split(b"\r\n")[1:]
            if line.partition(b":")[0].strip().lower() == name.lower()]


async def one(gateway, request_id: bytes | None, path: bytes = b"/x") -> tuple[int, list[bytes], list[str] | None]:
    """(status, X-Request-Id values of the answer, those the upstream got) of one raw request."""
    header = b"X-Request-Id: " + request_id + b"\r\n" if request_id is not None else b""
    raw = await send_raw(gateway.host, gateway.port, b"GET " + path + b" HTTP/1.1\r\nHost: app.test\r\n" + header
                         + b"Connection: close\r\n\r\n")
    [status] = statuses(raw)
    body = raw.partition(b"\r\n\r\n")[2]
    got = json.loads(body)["request_ids"] if status == 200 else None
    return status, head_values(raw, b"X-Request-Id"), got


async def test_a_request_gets_an_id_made_by_the_gateway_upstream_and_in_the_answer(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_headers())))
    status, answered, got = await one(gateway, None)
    assert status == 200 and len(answered) == 1 and MADE.fullmatch(answered[0].decode())
    assert got == [answered[0].decode()]  # the app's own X-Request-Id did not reach the client
    _, again, _ = await one(gateway, None)
    assert again != answered


async def test_a_client_s_request_id_is_replaced_when_it_is_not_a_trusted_proxy(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_headers())))
    status, answered, got = await one(gateway, b"chosen-by-the-client")
    assert status == 200 and answered != [b"chosen-by-the-client"] and MADE.fullmatch(answered[0].decode())
    assert got == [answered[0].decode()]


async def test_a_trusted_proxy_s_request_id_is_kept_end_to_end(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_headers())), **TRUSTING)
    status, answered, got = await one(gateway, b"edge-7f3a-0001")
    assert (status, answered, got) == (200, [b"edge-7f3a-0001"], ["edge-7f3a-0001"])


@pytest.mark.hostile
@pytest.mark.parametrize("hostile", [
    b"a\rb", b"a\r\n b", b"caf\xc3\xa9", b"\xff\xfe", b"a b", b"a\tb", b"a\x01b", b"x" * 10_240,
    b"x" * 129,
])
async def test_a_hostile_request_id_from_a_trusted_proxy_is_refused_or_replaced(start_upstream, start_gateway,
                                                                                 hostile):
    gateway = await start_gateway(route(await start_upstream(echo_headers())), **TRUSTING)
    status, answered, got = await one(gateway, hostile)
    if status == 400:  # aiohttp's parser refused the request itself
        assert got is None
        return
    assert status == 200 and len(answered) == 1 and MADE.fullmatch(answered[0].decode())
    assert got == [answered[0].decode()]


@pytest.mark.hostile
async def test_two_request_ids_from_a_client_become_one_of_the_gateway_s(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_headers())))
    raw = await send_raw(gateway.host, gateway.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: one\r\n"
                         b"X-Request-Id: two\r\nConnection: close\r\n\r\n")
    [answered] = head_values(raw, b"X-Request-Id")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["request_ids"] == [answered.decode()]


@pytest.mark.parametrize(("path", "status"), [
    (b"/.gateway/nothing", 404),  # the gateway's own endpoints
    (b"/.gateway/%2e/healthz", 400),  # an odd spelling of them
    (b"/elsewhere", 404),  # no route
])
async def test_the_gateway_s_own_answers_carry_a_request_id(start_upstream, start_gateway, path, status):
    upstream = await start_upstream(echo_headers())
    gateway = await start_gateway(route(upstream, host="app.test", path="/x"))
    found, answered, _ = await one(gateway, None, path)
    assert found == status and len(answered) == 1 and MADE.fullmatch(answered[0].decode())


async def test_an_upstream_that_refuses_gets_a_502_with_a_request_id(start_gateway):
    gateway = await start_gateway(route("http://127.0.0.1:9"))
    status, answered, _ = await one(gateway, None)
    assert status == 502 and len(answered) == 1


async def test_a_websocket_upgrade_carries_the_request_id_upstream_and_back(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_headers())))
    async with http.ws_connect(gateway.make_url("/ws")) as ws:
        sent_upstream = await ws.receive_str()
        assert MADE.fullmatch(sent_upstream)
        assert ws._response.headers["X-Request-Id"] == sent_upstream


async def test_an_answer_a_gateway_endpoint_raises_carries_the_request_id(aiohttp_server, http):
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/.gateway/status")

    app = web.Application()
    app.router.add_get("/.gateway/moved", plainly_spelled(moved, settings(route("http://127.0.0.1:9")).server))
    server = await aiohttp_server(app)
    async with http.get(server.make_url("/.gateway/moved"), allow_redirects=False) as r:
        assert r.status == 303 and MADE.fullmatch(r.headers["X-Request-Id"])
