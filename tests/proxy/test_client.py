"""The upstream client's edge cases: through the gateway, against raw upstream peers that misbehave on purpose; and
the client alone, over an in-memory stream (memory_stream.py) where the test plays the upstream byte by byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable

import aiohttp
import pytest
from proxy.memory_stream import Answer, MemoryStream, MemoryUpstream, Request, replies
from yarl import URL

from conftest import route
from gateway.proxy.backend import Connect
from gateway.proxy.client import OriginPool, UpstreamError, UpstreamResponse, UpstreamTimeout, _Slots


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


# --- the pool's slots --------------------------------------------------------------------------------------

async def test_slots_go_to_the_waiters_in_the_order_they_came():
    slots, order = _Slots(1), []
    assert slots.take_now()

    async def wait(name: str) -> None:
        await slots.take(5)
        order.append(name)

    waiting = [asyncio.ensure_future(wait(name)) for name in "abc"]
    await asyncio.sleep(0)
    assert not slots.take_now()  # a newcomer does not jump the queue
    for _ in range(3):
        slots.give()
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert order == ["a", "b", "c"]


async def test_a_waiter_whose_time_ran_out_leaves_no_slot_taken():
    slots = _Slots(1)
    assert slots.take_now()
    with pytest.raises(UpstreamTimeout):
        await slots.take(0.01)
    slots.give()
    assert slots.take_now() and not slots.take_now()


async def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next():
    """give() hands the slot over, then the waiter's caller is cancelled (the client went away) before the waiter
    resumed: the slot must not be lost with it."""
    slots = _Slots(1)
    assert slots.take_now()
    first = asyncio.ensure_future(slots.take(5))
    second = asyncio.ensure_future(slots.take(5))
    await asyncio.sleep(0)
    slots.give()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to the second
    slots.give()
    assert slots.take_now() and not slots.take_now()


# --- the client alone, over memory ----------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
MakePool = Callable[..., OriginPool]


@pytest.fixture
async def memory_pool() -> AsyncIterator[MakePool]:
    """One-connection OriginPools over a given backend (usually a MemoryUpstream's `connect`)."""
    pools: list[OriginPool] = []

    def make(connect: Connect, *, keepalive: float = 10.0) -> OriginPool:
        pools.append(OriginPool("upstream.test", 80, tls=False, size=1, keepalive_timeout=keepalive, connect=connect))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.close()


async def ask(pool: OriginPool, method: str = "GET", target: str = "/", *, body: AsyncIterable[bytes] | None = None,
              length: int | None = None, read_timeout: float = 1.0) -> UpstreamResponse:
    return await pool.request(method, target, [("Host", "upstream.test")], body, body_length=length,
                              connect_timeout=1, read_timeout=read_timeout)


async def read_all(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.iter_body()])
    finally:
        response.close()


async def fetch(pool: OriginPool, method: str = "GET", target: str = "/") -> tuple[int, bytes]:
    response = await ask(pool, method, target)
    return response.status, await read_all(response)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_memory_content_length_answer_ends_at_its_length_and_the_connection_is_reused(memory_pool):
    upstream = MemoryUpstream(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", OK))
    pool = memory_pool(upstream.connect)
    response = await ask(pool, target="/first")
    assert (response.status, response.body_if_complete()) == (200, b"hello")
    response.close()
    assert await fetch(pool, target="/second") == (200, b"ok")
    [stream] = upstream.streams
    assert [r.target for r in stream.requests] == ["/first", "/second"] and not stream.closed


async def test_memory_chunked_answer_arriving_a_byte_at_a_time_is_reassembled(memory_pool):
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

    def trickle(stream: MemoryStream, request: Request) -> None:
        if len(stream.requests) == 1:
            for byte in answer:
                stream.send(bytes([byte]))
        else:
            stream.send(OK)

    upstream = MemoryUpstream(trickle)
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"hello world")
    assert await fetch(pool) == (200, b"ok")
    assert len(upstream.streams) == 1  # the chunked framing ended the answer: the connection carried the next


async def test_memory_answer_without_length_ends_with_the_connection(memory_pool):
    def until_close(stream: MemoryStream, request: Request) -> None:
        stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        stream.send(b"the end")
        stream.hang_up()

    upstream = MemoryUpstream(until_close)
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"until the end")
    assert await fetch(pool) == (200, b"until the end")
    assert len(upstream.streams) == 2 and all(stream.closed for stream in upstream.streams)


async def test_memory_answer_cut_short_of_its_length_is_an_error(memory_pool):
    def cut(stream: MemoryStream, request: Request) -> None:
        stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        stream.hang_up()

    pool = memory_pool(MemoryUpstream(cut).connect)
    response = await ask(pool)
    with pytest.raises(UpstreamError, match="mid-answer"):
        await read_all(response)


async def test_memory_malformed_answer_is_an_error_and_closes_the_connection(memory_pool):
    upstream = MemoryUpstream(replies(b"this is not HTTP\r\n\r\n"))
    pool = memory_pool(upstream.connect)
    with pytest.raises(UpstreamError, match="malformed"):
        await ask(pool)
    assert upstream.streams[0].closed


async def test_memory_bytes_after_a_complete_answer_close_the_connection(memory_pool):
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
    upstream = MemoryUpstream(replies(OK + smuggled, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"))
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"ok")
    assert await fetch(pool) == (200, b"mine")  # not the answer nobody asked for
    first, _ = upstream.streams
    assert first.closed


async def test_memory_bytes_on_an_idle_connection_close_it(memory_pool):
    upstream = MemoryUpstream(replies(OK, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"))
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"ok")
    upstream.streams[0].send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nunasked!")
    assert upstream.streams[0].closed
    assert await fetch(pool) == (200, b"mine")
    assert len(upstream.streams) == 2


async def test_memory_bytes_before_the_request_close_the_connection_unused(memory_pool):
    upstream = MemoryUpstream(replies(OK), on_connect=lambda stream: stream.send(OK))
    pool = memory_pool(upstream.connect)
    with pytest.raises(UpstreamError):
        await ask(pool)
    [stream] = upstream.streams
    assert stream.closed and stream.written == b""


async def test_memory_a_body_after_a_head_answer_closes_the_connection(memory_pool):
    upstream = MemoryUpstream(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", OK))
    pool = memory_pool(upstream.connect)
    assert await fetch(pool, "HEAD") == (200, b"")
    assert upstream.streams[0].closed
    assert await fetch(pool) == (200, b"ok")


async def test_memory_connection_close_answer_is_not_reused(memory_pool):
    upstream = MemoryUpstream(replies(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", OK))
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"ok")
    assert upstream.streams[0].closed
    assert await fetch(pool) == (200, b"ok")
    assert len(upstream.streams) == 2


async def test_memory_idle_connection_past_the_keepalive_timeout_is_not_reused(memory_pool):
    upstream = MemoryUpstream(replies(OK, OK))
    pool = memory_pool(upstream.connect, keepalive=0.05)
    assert await fetch(pool) == (200, b"ok")
    await asyncio.sleep(0.1)
    assert await fetch(pool) == (200, b"ok")
    first, _ = upstream.streams
    assert first.closed


def drops_second_requests(after: bytes = b"") -> Answer:
    """An upstream that closes a connection instead of answering its second request (after sending `after`)."""

    def answer(stream: MemoryStream, request: Request) -> None:
        if len(stream.requests) == 2:
            stream.send(after)
            stream.hang_up()
        else:
            stream.send(OK)

    return answer


async def test_memory_stale_reused_connection_is_retried_once_on_a_fresh_one(memory_pool):
    upstream = MemoryUpstream(drops_second_requests())
    pool = memory_pool(upstream.connect)
    assert await fetch(pool, target="/1") == (200, b"ok")
    assert await fetch(pool, target="/2") == (200, b"ok")
    first, second = upstream.streams
    assert [r.target for r in first.requests] == ["/1", "/2"]
    assert [r.target for r in second.requests] == ["/2"]


async def test_memory_stale_connection_is_not_retried_for_a_request_with_a_body(memory_pool):
    upstream = MemoryUpstream(drops_second_requests())
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"ok")
    with pytest.raises(UpstreamError, match="closed the connection"):
        await ask(pool, "POST", body=chunks(b"abc"), length=3)
    assert len(upstream.streams) == 1


async def test_memory_stale_connection_is_not_retried_once_answer_bytes_came(memory_pool):
    upstream = MemoryUpstream(drops_second_requests(after=b"HTTP/1.1 200 OK\r\n"))
    pool = memory_pool(upstream.connect)
    assert await fetch(pool) == (200, b"ok")
    with pytest.raises(UpstreamError, match="mid-answer"):
        await ask(pool)
    assert len(upstream.streams) == 1


async def test_memory_fresh_connection_closed_unanswered_is_not_retried(memory_pool):
    upstream = MemoryUpstream(lambda stream, request: stream.hang_up())
    pool = memory_pool(upstream.connect)
    with pytest.raises(UpstreamError, match="closed the connection"):
        await ask(pool)
    assert len(upstream.streams) == 1


@pytest.mark.parametrize(("length", "framing"), [(5, ("Content-Length", "5")),
                                                 (None, ("Transfer-Encoding", "chunked"))])
async def test_memory_the_client_writes_the_framing_of_the_body_it_sends(memory_pool, length, framing):
    upstream = MemoryUpstream(replies(OK))
    pool = memory_pool(upstream.connect)
    response = await pool.request("POST", "/", [("content-length", "99"), ("Transfer-Encoding", "gzip")],
                                  chunks(b"ab", b"", b"cde"), body_length=length, connect_timeout=1, read_timeout=1)
    assert await read_all(response) == b"ok"
    [request] = upstream.streams[0].requests
    assert request.body == b"abcde"
    assert [(k, v) for k, v in request.headers if k.lower() in ("content-length", "transfer-encoding")] == [framing]


async def test_memory_an_answer_before_the_whole_body_gets_through_and_ends_the_connection(memory_pool):
    upstream = MemoryUpstream()
    pool = memory_pool(upstream.connect)

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 10
        upstream.streams[0].send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
        await asyncio.Event().wait()  # the rest never comes
        yield b"b" * 10

    response = await ask(pool, "POST", body=body(), length=20)
    assert (response.status, await read_all(response)) == (403, b"nope")
    assert upstream.streams[0].closed


BIG = bytes(range(256)) * 4096  # 1 MiB, with an order to check


def big_answer(stream: MemoryStream, request: Request) -> None:
    stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(BIG), BIG))


async def test_memory_reading_pauses_while_the_consumer_is_behind(memory_pool):
    upstream = MemoryUpstream(big_answer)
    pool = memory_pool(upstream.connect)
    response = await ask(pool)
    [stream] = upstream.streams
    assert not stream.reading and stream.pauses == 1
    assert stream.unread >= len(BIG) - 2**18 - 2**16  # the client took no more than its high-water mark and a read
    received = bytearray()
    async for chunk in response.iter_body():
        received += chunk
    response.close()
    assert received == BIG and stream.reading and stream.unread == 0


async def test_memory_no_read_deadline_while_reading_is_paused(memory_pool):
    upstream = MemoryUpstream(big_answer)
    pool = memory_pool(upstream.connect)
    response = await ask(pool, read_timeout=0.05)
    assert not upstream.streams[0].reading
    await asyncio.sleep(0.2)  # the consumer is slow, not the upstream
    assert await read_all(response) == BIG


async def test_memory_silent_upstream_times_out_before_the_head(memory_pool):
    upstream = MemoryUpstream()
    pool = memory_pool(upstream.connect)
    with pytest.raises(UpstreamTimeout):
        await asyncio.wait_for(ask(pool, read_timeout=0.05), 2)
    assert upstream.streams[0].closed


async def test_memory_silent_upstream_mid_body_times_out(memory_pool):
    upstream = MemoryUpstream(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"))
    pool = memory_pool(upstream.connect)
    response = await ask(pool, read_timeout=0.05)
    with pytest.raises(UpstreamTimeout):
        await asyncio.wait_for(read_all(response), 2)
    assert upstream.streams[0].closed


async def test_memory_each_read_moves_the_read_deadline(memory_pool):
    upstream = MemoryUpstream(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
    pool = memory_pool(upstream.connect)
    response = await ask(pool, read_timeout=0.2)
    for digit in b"0123456789":
        await asyncio.sleep(0.04)  # 0.4 s in all: twice the read timeout, but never that long between bytes
        upstream.streams[0].send(bytes([digit]))
    assert await read_all(response) == b"0123456789"


async def test_memory_upstream_that_stops_taking_the_body_times_out(memory_pool):
    upstream = MemoryUpstream(replies(OK), on_connect=MemoryStream.block_writes)
    pool = memory_pool(upstream.connect)
    with pytest.raises(UpstreamTimeout, match="request body"):
        await asyncio.wait_for(ask(pool, "POST", body=chunks(b"abc"), length=3, read_timeout=0.05), 2)
    assert upstream.streams[0].closed


async def test_memory_body_waits_for_the_upstream_to_take_it(memory_pool):
    def full_for_a_while(stream: MemoryStream) -> None:
        stream.block_writes()
        asyncio.get_running_loop().call_later(0.05, stream.unblock_writes)

    upstream = MemoryUpstream(replies(OK), on_connect=full_for_a_while)

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        assert upstream.streams[0].taking  # the client waited before asking for more
        yield b"def"

    pool = memory_pool(upstream.connect)
    response = await ask(pool, "POST", body=body(), length=6)
    assert await read_all(response) == b"ok"
    assert upstream.streams[0].requests[0].body == b"abcdef"


async def test_memory_connect_failure_is_an_upstream_error(memory_pool):
    async def refused(protocol: asyncio.Protocol, host: str, port: int, tls: object) -> MemoryStream:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(UpstreamError, match="cannot connect to the upstream: Connection refused"):
        await ask(memory_pool(refused))
