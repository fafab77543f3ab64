"""Upstream faults and slow clients, through the gateway: each with the answer the client must get and the time it
may take. The upstreams are plain asyncio servers that misbehave on purpose; read_timeout is short (0.5 s)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
from raw_http import send_raw, statuses

from conftest import route

pytestmark = pytest.mark.hostile

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
READ_TIMEOUT = 0.5


@pytest.fixture
def faulty(start_gateway, raw_upstream) -> Callable[[Peer], Awaitable[tuple[str, int]]]:
    """Start a misbehaving upstream and a gateway in front of it; gives the gateway's (host, port)."""

    async def start(peer: Peer) -> tuple[str, int]:
        upstream = await raw_upstream(peer)
        gateway = await start_gateway(route(upstream, read_timeout=READ_TIMEOUT, connect_timeout=READ_TIMEOUT))
        return gateway.host, gateway.port

    return start


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The next request head; b"" once the gateway closed the connection."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""


async def timed(host: str, port: int,
                data: bytes = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") -> tuple[bytes, float]:
    started = time.monotonic()
    raw = await send_raw(host, port, data, idle=3)
    return raw, time.monotonic() - started


async def test_upstream_killed_mid_answer_closes_the_clients_connection_at_once(faulty):
    async def peer(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.transport.abort()

    raw, took = await timed(*await faulty(peer))
    assert statuses(raw) == [200] and len(raw.partition(b"\r\n\r\n")[2]) < 1000  # cut, never padded or completed
    assert took < 1.5  # closed at once, not after the idle limit of the client


async def test_upstream_hanging_after_the_head_is_cut_after_the_read_timeout(faulty):
    async def peer(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(10)

    raw, took = await timed(*await faulty(peer))
    assert statuses(raw) == [200] and raw.endswith(b"partial")
    assert READ_TIMEOUT * 0.8 < took < READ_TIMEOUT + 1.5


async def test_upstream_hanging_before_the_head_gets_504_after_the_read_timeout(faulty):
    async def peer(reader, writer):
        await read_head(reader)
        await asyncio.sleep(10)

    raw, took = await timed(*await faulty(peer))
    assert statuses(raw) == [504] and READ_TIMEOUT * 0.8 < took < READ_TIMEOUT + 1.5


@pytest.mark.parametrize("garbage", [b"this is not HTTP\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"0\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",
                                     b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
                                     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"])
async def test_upstream_answering_garbage_gets_502(faulty, garbage):
    async def peer(reader, writer):
        await read_head(reader)
        writer.write(garbage)
        await writer.drain()
        await asyncio.sleep(10)

    raw, took = await timed(*await faulty(peer))
    assert statuses(raw) == [502] and took < 3.5
    assert b"Traceback" not in raw


async def test_upstream_closing_before_the_head_gets_502_at_once(faulty):
    async def peer(reader, writer):
        await read_head(reader)
        writer.close()

    raw, took = await timed(*await faulty(peer))
    assert statuses(raw) == [502] and took < 3.5


async def test_upstream_answering_twice_leaks_nothing_to_the_next_request(faulty):
    async def peer(reader, writer):
        while await read_head(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
            await writer.drain()

    host, port = await faulty(peer)
    raw, took = await timed(host, port, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                            b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 2 and b"extra" not in raw


async def test_unreachable_upstream_gets_502_at_once(start_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        gateway = await start_gateway(route(f"http://127.0.0.1:{port}", connect_timeout=READ_TIMEOUT))
        raw, took = await timed(gateway.host, gateway.port)
    assert statuses(raw) == [502] and took < 3.5


# --- slow clients ---------------------------------------------------------------------------------------------

BIG = 64 * 2**20


async def test_a_client_that_reads_slowly_holds_the_upstream_back_instead_of_growing_a_buffer(faulty):
    written = 0
    done = asyncio.Event()

    async def peer(reader, writer):
        nonlocal written
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        chunk = b"x" * 2**16
        try:
            while written < BIG:
                writer.write(chunk)
                await writer.drain()
                written += len(chunk)
        except ConnectionError:
            pass
        done.set()

    host, port = await faulty(peer)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**16)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(client, (host, port))
    try:
        await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(1.0)  # not reading at all
        assert written < 24 * 2**20, written  # socket buffers and the gateway's window, far from the whole body
        received = 0
        deadline = time.monotonic() + 20
        while received < BIG and time.monotonic() < deadline:
            data = await loop.sock_recv(client, 2**20)
            if not data:
                break
            received += len(data)
        assert received >= BIG  # all of it, once the client reads (plus the head)
    finally:
        client.close()


async def test_a_client_that_goes_away_mid_answer_frees_the_upstream_connection(faulty):
    upstream_closed = asyncio.Event()

    async def peer(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        try:
            while True:
                writer.write(b"x" * 2**16)
                await writer.drain()
        except ConnectionError:
            upstream_closed.set()

    host, port = await faulty(peer)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await reader.readexactly(2**16)
    writer.transport.abort()
    await asyncio.wait_for(upstream_closed.wait(), 3)


async def test_a_client_that_stops_mid_body_frees_the_upstream_connection(faulty):
    upstream_done = asyncio.Event()
    got = 0

    async def peer(reader, writer):
        nonlocal got
        await read_head(reader)
        while data := await reader.read(65536):
            got += len(data)
        upstream_done.set()  # the gateway closed its side: no half-sent request left on a pooled connection

    host, port = await faulty(peer)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 1000)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    await asyncio.wait_for(upstream_done.wait(), 3)
    assert got <= 1000  # the body bytes the client sent, and no more


async def test_a_normal_request_after_the_faults_is_served(faulty, http):
    async def peer(reader, writer):
        while await read_head(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    host, port = await faulty(peer)
    async with http.get(f"http://{host}:{port}/") as r:
        assert r.status == 200 and await r.read() == b"ok"
