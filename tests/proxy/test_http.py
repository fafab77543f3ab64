"""The streaming HTTP proxy against real upstream servers on loopback.

Each trap listed in ../shared/aiohttp-notes.md has a test here; the first is the security one.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
from typing import Any

import aiohttp
from aiohttp import web

from conftest import origin, route


def echo_app(record: list[web.Request] | None = None) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        if record is not None:
            record.append(request)
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_size": len(body),
                "peer_port": request.transport.get_extra_info("peername")[1] if request.transport else None,
            }
        )

    app = web.Application(client_max_size=2**30)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def header_values(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]


# --- cookies never cross between users ------------------------------------------------------------------


async def test_upstream_cookie_set_for_one_user_never_reaches_another(start_upstream, start_gateway, http):
    async def app(request: web.Request) -> web.Response:
        response = web.json_response({"cookie": request.headers.get("Cookie")})
        if request.path == "/login":
            response.set_cookie("JSESSIONID", "alice-session")
        return response

    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.get(gateway.make_url("/login")) as r:
        assert r.status == 200
        assert "alice-session" in r.headers["Set-Cookie"]
    async with http.get(gateway.make_url("/home")) as r:
        assert (await r.json())["cookie"] is None
    async with http.get(gateway.make_url("/home"), headers={"Cookie": "JSESSIONID=bob"}) as r:
        assert (await r.json())["cookie"] == "JSESSIONID=bob"


async def test_several_set_cookie_headers_stay_apart(start_upstream, start_gateway, http):
    async def app(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT")
        response.headers.add("Set-Cookie", "b=2; Path=/app; HttpOnly")
        return response

    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.get(gateway.make_url("/")) as r:
        assert r.headers.getall("Set-Cookie") == [
            "a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
            "b=2; Path=/app; HttpOnly",
        ]


# --- bytes pass untouched -------------------------------------------------------------------------------


async def test_paths_and_queries_reach_the_upstream_byte_for_byte(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    for target in ["/doc%20%281%29.pdf?q=%7E1", "/a;b=c/%2F/x?y=1&y=2&z=%25", "/caf%C3%A9?%E2%82%AC", "/x?a=%2B+b"]:
        url = aiohttp.client.URL(origin(gateway) + target, encoded=True)
        async with http.get(url) as r:
            assert (await r.json())["raw_path"] == target


async def test_compressed_answer_passes_untouched(start_upstream, start_gateway, http):
    payload = gzip.compress(b"hello " * 1000)

    async def app(request: web.Request) -> web.Response:
        return web.Response(body=payload, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.get(gateway.make_url("/"), headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert int(r.headers["Content-Length"]) == len(payload)
        assert await r.read() == payload


async def test_compressed_upload_reaches_the_upstream_untouched(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    body = gzip.compress(os.urandom(5000))
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"}
    async with http.post(gateway.make_url("/upload"), data=body, headers=headers) as r:
        echoed = await r.json()
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert header_values(echoed, "Content-Encoding") == ["gzip"]


async def test_the_gateway_adds_no_headers_of_its_own_choosing(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"GET /bare HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    echoed = __import__("json").loads(raw.split(b"\r\n\r\n", 1)[1])
    names = {k.lower() for k, _ in echoed["headers"]}
    assert names == {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}


async def test_redirects_are_passed_through_not_followed(start_upstream, start_gateway, http):
    async def app(request: web.Request) -> web.Response:
        if request.path == "/old":
            raise web.HTTPFound("/new")
        return web.Response(text="followed")

    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.get(gateway.make_url("/old"), allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "/new"


# --- bodies: framing, HEAD, 204, 304, Expect ----------------------------------------------------------------


async def test_chunked_upload_streams_through(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    parts = [os.urandom(100_000) for _ in range(20)]

    async def body():
        for part in parts:
            yield part

    async with http.post(gateway.make_url("/up"), data=body()) as r:
        echoed = await r.json()
    assert echoed["body_size"] == sum(map(len, parts))
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert header_values(echoed, "Transfer-Encoding") == ["chunked"]


async def test_content_length_upload_stays_unchunked(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    body = os.urandom(300_000)
    async with http.put(gateway.make_url("/up"), data=body) as r:
        echoed = await r.json()
    assert header_values(echoed, "Content-Length") == [str(len(body))]
    assert header_values(echoed, "Transfer-Encoding") == []
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_chunked_download_streams_in_pieces(start_upstream, start_gateway, http):
    release = asyncio.Event()

    async def app(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first piece")
        await release.wait()
        await response.write(b" and the rest")
        return response

    gateway = await start_gateway(route(await start_upstream(app)))
    async with http.get(gateway.make_url("/")) as r:
        first = await asyncio.wait_for(r.content.readany(), 5)
        assert first == b"first piece"
        release.set()
        assert await r.read() == b" and the rest"


LAST_GET = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


async def test_head_answer_has_no_body_and_keeps_length(start_upstream, start_gateway):
    async def app(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1234)

    gateway = await start_gateway(route(await start_upstream(app)))
    status, headers, rest = await raw_exchange(gateway, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + LAST_GET)
    assert status == b"HTTP/1.1 200 OK"
    assert b"content-length: 1234" in headers.lower()
    # the next answer on the same connection starts right after the HEAD headers: no body was sent
    assert rest.startswith(b"HTTP/1.1 200 OK")


async def test_204_and_304_carry_no_body(start_upstream, start_gateway):
    async def app(request: web.Request) -> web.Response:
        if request.path == "/empty":
            return web.Response(status=204)
        return web.Response(status=304, headers={"ETag": '"v1"'})

    gateway = await start_gateway(route(await start_upstream(app)))
    for path, line in [(b"/empty", b"HTTP/1.1 204 No Content"), (b"/cached", b"HTTP/1.1 304 Not Modified")]:
        status, headers, rest = await raw_exchange(gateway, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n" + LAST_GET)
        assert status == line
        assert b"transfer-encoding" not in headers.lower()
        assert rest.startswith(b"HTTP/1.1 304 Not Modified")  # the next answer follows at once: no body between


async def test_expect_100_continue_is_answered_before_the_body(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                 b"Connection: close\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200")
    assert hashlib.sha256(b"hello").hexdigest().encode() in raw
    assert b'"Expect"' not in raw  # the upstream was not asked to send its own 100


async def test_expect_100_continue_over_the_cap_gets_413_without_continue(start_upstream, start_gateway):
    gateway = await start_gateway(route(await start_upstream(echo_app()), max_request_body=10))
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    first = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert first.startswith(b"HTTP/1.1 413")


# --- upload cap -------------------------------------------------------------------------------------------


async def test_upload_over_the_cap_with_content_length_gets_413(start_upstream, start_gateway, http):
    seen: list[web.Request] = []
    gateway = await start_gateway(route(await start_upstream(echo_app(seen)), max_request_body="1KiB"))
    async with http.post(gateway.make_url("/up"), data=b"x" * 1025) as r:
        assert r.status == 413
    async with http.post(gateway.make_url("/up"), data=b"x" * 1024) as r:
        assert r.status == 200
    assert len(seen) == 1


async def test_chunked_upload_over_the_cap_gets_413(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app()), max_request_body=100_000))

    async def body():
        for _ in range(50):
            yield b"y" * 10_000

    async with http.post(gateway.make_url("/up"), data=body()) as r:
        assert r.status == 413
        assert b"larger" in await r.read()


# --- hop-by-hop and forwarding headers ----------------------------------------------------------------------


async def test_hop_by_hop_headers_are_removed_both_ways(start_upstream, start_gateway, http):
    async def app(request: web.Request) -> web.Response:
        response = web.json_response({"headers": [[k, v] for k, v in request.headers.items()]})
        response.headers["Connection"] = "X-Upstream-Hop"
        response.headers["X-Upstream-Hop"] = "secret"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["Proxy-Authenticate"] = "Basic"
        response.headers["X-Upstream-End"] = "kept"
        return response

    gateway = await start_gateway(route(await start_upstream(app)))
    sent = {
        "Connection": "keep-alive, X-Client-Hop",
        "X-Client-Hop": "secret",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eA==",
        "Proxy-Connection": "keep-alive",
        "X-Client-End": "kept",
    }
    async with http.get(gateway.make_url("/"), headers=sent) as r:
        echoed = await r.json()
        assert "X-Upstream-Hop" not in r.headers
        assert "Proxy-Authenticate" not in r.headers
        assert "Keep-Alive" not in r.headers
        assert r.headers["X-Upstream-End"] == "kept"
    names = {k.lower() for k, _ in echoed["headers"]}
    assert not names & {"x-client-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection"}
    assert "x-client-end" in names


async def test_forwarded_headers_from_an_untrusted_client_are_replaced(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())), server={"trusted_proxies": []})
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}
    async with http.get(gateway.make_url("/"), headers={**forged, "Host": "app.test"}) as r:
        echoed = await r.json()
    assert header_values(echoed, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]
    assert header_values(echoed, "X-Forwarded-Host") == ["app.test"]


async def test_forwarded_headers_from_a_trusted_proxy_are_extended(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())), server={"trusted_proxies": ["127.0.0.0/8"]})
    sent = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com"}
    async with http.get(gateway.make_url("/"), headers=sent) as r:
        echoed = await r.json()
    assert header_values(echoed, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["https"]
    assert header_values(echoed, "X-Forwarded-Host") == ["app.example.com"]


async def test_host_header_is_the_upstreams_unless_preserved(start_upstream, start_gateway, http):
    upstream = await start_upstream(echo_app())
    gateway = await start_gateway([
        route(upstream, name="plain", path="/plain"),
        route(upstream, name="kept", path="/kept", preserve_host=True),
    ])
    async with http.get(gateway.make_url("/plain"), headers={"Host": "app.example.com"}) as r:
        assert header_values(await r.json(), "Host") == [f"127.0.0.1:{upstream.port}"]
    async with http.get(gateway.make_url("/kept"), headers={"Host": "app.example.com"}) as r:
        assert header_values(await r.json(), "Host") == ["app.example.com"]


# --- routing through the server -----------------------------------------------------------------------------


async def test_routes_pick_the_upstream_by_host_and_longest_prefix(start_upstream, start_gateway, http):
    async def named(name: str):
        async def app(request: web.Request) -> web.Response:
            return web.Response(text=f"{name} {request.raw_path}")
        return await start_upstream(app)

    a, b, c = await named("a"), await named("b"), await named("c")
    gateway = await start_gateway([
        route(a, name="a", host="*", path="/"),
        route(b, name="b", host="*.example.com", path="/app", rewrite="/"),
        route(c, name="c", host="hr.example.com", path="/"),
    ])
    cases = [
        ("other.test", "/app/x", "a /app/x"),
        ("crm.example.com", "/app/x?y", "b /x?y"),
        ("crm.example.com", "/apple", "a /apple"),
        ("HR.example.com:8443", "/app/x", "c /app/x"),
    ]
    for host, path, expected in cases:
        async with http.get(gateway.make_url(path), headers={"Host": host}) as r:
            assert await r.text() == expected, (host, path)


async def test_no_route_gets_404_from_the_gateway(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app()), host="app.example.com"))
    async with http.get(gateway.make_url("/"), headers={"Host": "other.example.com"}) as r:
        assert r.status == 404
        assert r.headers["Content-Type"].startswith("text/html")
    async with http.get(gateway.make_url("/"), headers={"Host": "x.test", "Accept": "application/json"}) as r:
        assert r.status == 404
        assert (await r.json())["status"] == 404


# --- failures -----------------------------------------------------------------------------------------------


def refused_origin() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_refused_upstream_gets_502_in_html_or_json(start_gateway, http, caplog):
    gateway = await start_gateway(route(refused_origin()))
    async with http.get(gateway.make_url("/"), headers={"Accept": "text/html"}) as r:
        assert r.status == 502
        body = await r.text()
        assert "<h1>502 Bad Gateway</h1>" in body and "127.0.0.1" not in body
    async with http.get(gateway.make_url("/"), headers={"Accept": "application/json"}) as r:
        assert r.status == 502
        assert (await r.json())["error"] == "Bad Gateway"
    assert any("failed" in rec.getMessage() for rec in caplog.records if rec.name == "gateway.proxy")


async def test_slow_upstream_gets_504(start_upstream, start_gateway, http):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    gateway = await start_gateway(route(await start_upstream(slow), read_timeout=0.3))
    started = asyncio.get_running_loop().time()
    async with http.get(gateway.make_url("/"), headers={"Accept": "application/json"}) as r:
        assert r.status == 504
        assert (await r.json())["error"] == "Gateway Timeout"
    assert asyncio.get_running_loop().time() - started < 3


async def test_upstream_that_never_accepts_gets_504_after_connect_timeout(start_gateway, http):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    stuffed = []
    for _ in range(8):  # fill the accept queue: further SYNs are dropped and connecting hangs
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(listener.getsockname())
        stuffed.append(s)
    await asyncio.sleep(0.1)
    try:
        gateway = await start_gateway(route(f"http://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.3,
                                             read_timeout=0.3))
        async with http.get(gateway.make_url("/")) as r:
            assert r.status == 504
    finally:
        for s in stuffed:
            s.close()
        listener.close()


async def test_upstream_failing_mid_answer_cuts_the_client_off(start_upstream, start_gateway, http):
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(b"z" * 1000)
        assert request.transport is not None
        request.transport.close()
        return response

    gateway = await start_gateway(route(await start_upstream(broken)))
    async with http.get(gateway.make_url("/")) as r:
        assert r.status == 200
        try:
            await r.read()
        except aiohttp.ClientPayloadError:
            pass
        else:
            raise AssertionError("a truncated answer was passed off as complete")


async def test_client_going_away_mid_answer_is_a_debug_line_not_an_error(start_upstream, start_gateway, caplog):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(2000):
            await response.write(b"x" * 65536)
            await asyncio.sleep(0)
        return response

    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(route(await start_upstream(endless)))
    for _ in range(3):
        reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(200_000)
        writer.transport.abort()
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as s, s.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]
    assert "Cannot write to closing transport" not in caplog.text
    assert "Traceback" not in caplog.text
    assert "client went away mid-answer" in caplog.text


# --- connection reuse ---------------------------------------------------------------------------------------


async def test_upstream_connections_are_kept_alive_and_reused(start_upstream, start_gateway, http):
    gateway = await start_gateway(route(await start_upstream(echo_app())))
    ports = set()
    for _ in range(20):
        async with http.get(gateway.make_url("/")) as r:
            ports.add((await r.json())["peer_port"])
    assert len(ports) == 1


async def raw_exchange(gateway: Any, data: bytes) -> tuple[bytes, bytes, bytes]:
    """Send raw bytes; return the first status line, its headers and whatever followed them."""
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(data)
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    return status, headers, rest
