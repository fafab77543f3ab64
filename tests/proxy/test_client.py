"""The upstream client's edge cases, through the gateway, against raw upstream peers that misbehave on purpose."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from yarl import URL

from conftest import route
from gateway.proxy.client import OriginPool, UpstreamError


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def test_answer_delimited_by_close_is_passed_whole(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    gateway = await start_gateway(route(await raw_upstream(peer)))
    async with http.get(gateway.make_url("/")) as r:
        assert await r.read() == b"until the end"


async def test_interim_answers_are_skipped(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(peer)))
    async with http.get(gateway.make_url("/")) as r:
        assert r.status == 200
        assert await r.read() == b"final"


async def test_malformed_answer_gets_502(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        await read_request(reader)
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(peer)))
    async with http.get(gateway.make_url("/")) as r:
        assert r.status == 502


async def test_stale_keep_alive_connection_is_retried_once_for_a_bodyless_request(raw_upstream, start_gateway, http):
    connections = 0

    async def peer(reader, writer):
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        try:  # keep-alive promised, then the next request is dropped unanswered
            await read_request(reader)
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    gateway = await start_gateway(route(await raw_upstream(peer)))
    for _ in range(2):
        async with http.get(gateway.make_url("/")) as r:
            assert r.status == 200
            assert await r.read() == b"ok"
    assert connections == 2


async def test_upstream_answering_before_the_whole_body_gets_its_answer_through(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    gateway = await start_gateway(route(await raw_upstream(peer)))

    async def slow_body():
        yield b"a" * 1000
        await asyncio.sleep(1)
        yield b"b" * 1000

    async with http.post(gateway.make_url("/"), data=slow_body()) as r:
        assert r.status == 403
        assert await r.read() == b"nope"


async def test_head_on_a_reused_connection_does_not_wait_for_a_body(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        while True:
            try:
                head = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            body = b"" if head.startswith(b"HEAD") else b"0123456789"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + body)
            await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(peer), read_timeout=2), proxy={"pool_size": 1})
    started = asyncio.get_running_loop().time()
    for method in ("GET", "HEAD", "GET", "HEAD", "GET"):
        async with http.request(method, gateway.make_url("/")) as r:
            assert r.status == 200
            assert await asyncio.wait_for(r.read(), 1) == (b"" if method == "HEAD" else b"0123456789")
    assert asyncio.get_running_loop().time() - started < 1.5  # no HEAD held its connection waiting for a body


async def test_a_body_sent_after_a_head_answer_closes_the_connection(raw_upstream, start_gateway, http):
    """A broken upstream that answers HEAD with a body: those bytes must not become the next request's answer."""

    async def peer(reader, writer):
        while True:
            try:
                head = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            path = head.split(b" ")[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(path), path))
            await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(peer)), proxy={"pool_size": 1})
    for method, path in (("HEAD", "/head-1"), ("GET", "/get-1"), ("HEAD", "/head-2"), ("GET", "/get-2")):
        async with http.request(method, gateway.make_url(path)) as r:
            assert await r.read() == (b"" if method == "HEAD" else path.encode())


async def test_the_client_never_sends_more_than_the_body_length_it_wrote(raw_upstream):
    received = bytearray()
    done = asyncio.Event()

    async def peer(reader, writer):
        while data := await reader.read(65536):
            received.extend(data)
        done.set()

    upstream = URL(await raw_upstream(peer))
    pool = OriginPool(upstream.host or "", upstream.port or 0, tls=False, size=1, keepalive_timeout=1)

    async def body():
        yield b"abcde"
        yield b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    with pytest.raises(UpstreamError):
        await pool.request("POST", "/", [("Content-Length", "99"), ("Transfer-Encoding", "chunked")], body(),
                           body_length=5, connect_timeout=1, read_timeout=1)
    await asyncio.wait_for(done.wait(), 2)
    head, _, sent = bytes(received).partition(b"\r\n\r\n")
    assert b"Content-Length: 5" in head and b"99" not in head and b"chunked" not in head
    assert sent == b"abcde"  # the rest was never written, and the connection was closed
    await pool.close()


async def test_silent_upstream_mid_answer_is_cut_after_the_read_timeout(raw_upstream, start_gateway, http):
    async def peer(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        await asyncio.sleep(5)

    gateway = await start_gateway(route(await raw_upstream(peer), read_timeout=0.3))
    async with http.get(gateway.make_url("/")) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(r.read(), 3)


async def test_pool_size_bounds_concurrent_upstream_connections(raw_upstream, start_gateway, http):
    open_now = peak = 0

    async def peer(reader, writer):
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_now -= 1

    gateway = await start_gateway(route(await raw_upstream(peer)), proxy={"pool_size": 3})

    async def one() -> int:
        async with http.get(gateway.make_url("/")) as r:
            await r.read()
            return r.status

    assert await asyncio.gather(*(one() for _ in range(12))) == [200] * 12
    assert peak <= 3
