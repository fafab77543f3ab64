"""A lean HTTP/1.1 client for upstream requests: keep-alive pools per origin, httptools for parsing.

Why not aiohttp's client: profiling the proxy showed aiohttp's ClientSession (URL building, auto headers, cookie
handling, tracing hooks, its StreamReader) costing about as much per request as the whole aiohttp server side. A
proxy needs none of it: it has a request target and header list already, and wants the answer's status, headers
and body bytes as they come. WebSocket upgrades still go through aiohttp's client (websocket.py).

Rules of this module:
- Bytes out are exactly what the caller gave: the request target and headers are not re-quoted, re-cased or
  completed, with one exception: the client owns the framing. Any Content-Length or Transfer-Encoding in the
  caller's headers is left out, and the client writes `Content-Length` (a body of known length, which it never
  sends more or less of) or `Transfer-Encoding: chunked` (one of unknown length) for the body it actually sends.
- A connection goes back to its pool only when both messages on it are complete and neither side said close;
  anything else closes it. One request at a time per connection (no pipelining). Bytes the client did not ask
  for (after a complete answer, or while no request is outstanding) close the connection: the upstream and the
  gateway no longer agree on where messages begin, and the next user would get someone else's answer.
- A request with no body that fails on a reused connection before any answer byte is retried once on a fresh
  connection (the upstream closed an idle keep-alive connection as we reused it); nothing else is retried.
- The answer body is read with back-pressure: the socket stops reading while the consumer is behind.
- Time limits: `connect_timeout` for the TCP connect (and for a free pool slot), `read_timeout` for each wait on
  the upstream (each read, and each write the upstream is too slow to take); not while reading is paused
  because the gateway's client is slow.
- Every byte in or out goes through backend.py's `Transport` (write, pause/resume reading, close), opened by the
  pool's `connect` (a TCP connection of the event loop unless told otherwise); what comes back arrives through the
  connection's asyncio.Protocol callbacks. Nothing here touches a socket, so tests drive it over memory.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator

import httptools

from .backend import Connect, Transport, tcp_connect

Header = tuple[str, str]
RawHeader = tuple[bytes, bytes]

_HIGH_WATER = 2**18
_LOW_WATER = 2**16


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange."""


class UpstreamTimeout(UpstreamError):
    """The upstream took longer than a configured limit."""


def headers_as_text(raw: list[RawHeader]) -> list[Header]:
    """An answer's header bytes as text; what is not UTF-8 reads as U+FFFD (as aiohttp's text would have it)."""
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in raw]


class UpstreamResponse:
    """An answer whose head has arrived; its body streams from `iter_body()`. Always `close()` it.

    `raw_headers` are the answer's headers as the upstream sent them: httptools let no CR, LF or other control
    character through (a tab, and bytes from 0x80 up, may be in values).
    """

    __slots__ = ("status", "reason", "raw_headers", "_conn", "_pool")

    def __init__(self, conn: _Connection, pool: OriginPool) -> None:
        self.status = conn.status
        self.reason = conn.reason
        self.raw_headers = conn.headers
        self._conn = conn
        self._pool = pool

    @property
    def headers(self) -> list[Header]:
        """The headers as text; what is not UTF-8 reads as U+FFFD."""
        return headers_as_text(self.raw_headers)

    def iter_body(self) -> AsyncIterator[bytes]:
        return self._conn.iter_body()

    def body_if_complete(self) -> bytes | None:
        """The whole body, when it arrived with the head (most small answers); None otherwise."""
        return self._conn.body_if_complete()

    def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._pool.release(conn)


class OriginPool:
    """Keep-alive connections to one upstream origin (scheme, host, port)."""

    def __init__(
        self, host: str, port: int, *, tls: bool, size: int, keepalive_timeout: float, connect: Connect = tcp_connect
    ) -> None:
        self.host, self.port = host, port
        self._connect = connect
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self._keepalive = keepalive_timeout
        self._idle: collections.deque[tuple[float, _Connection]] = collections.deque()
        self._slots = _Slots(size)
        self._max_idle = size
        self.closed = False
        self.answered_at: float | None = None  # time.monotonic() of the last answer head: readiness's proof of life

    async def request(
        self,
        method: str,
        target: str,
        headers: list[Header],
        body: AsyncIterable[bytes] | None,
        *,
        body_length: int | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        if body is None and body_length:
            raise ValueError("a request with a body length needs its body")
        head = _request_head(method, target, headers, body_length, chunked=body is not None and body_length is None)
        if not self._slots.take_now():
            await self._slots.take(connect_timeout)
        conn: _Connection | None = None
        try:
            conn, reused = await self._connection(connect_timeout)
            try:
                await conn.exchange(head, body, body_length, method == "HEAD", read_timeout)
            except _StaleConnection:
                if not reused or body is not None:
                    raise UpstreamError("the upstream closed the connection") from None
                conn, _ = await self._fresh(connect_timeout)
                await conn.exchange(head, None, None, method == "HEAD", read_timeout)
        except BaseException:  # a failure, or our caller cancelled: the connection is in an unknown state
            if conn is not None:
                conn.close()
            self._slots.give()
            raise
        self.answered_at = time.monotonic()
        return UpstreamResponse(conn, self)

    def release(self, conn: _Connection) -> None:
        self._slots.give()
        if conn.finished_cleanly and not self.closed and len(self._idle) < self._max_idle:
            conn.idle()
            self._idle.append((time.monotonic(), conn))
        else:
            conn.close()

    async def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop()[1].close()

    async def _connection(self, connect_timeout: float) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if now - since < self._keepalive and conn.usable:
                return conn, True
            conn.close()
        return await self._fresh(connect_timeout)

    async def _fresh(self, connect_timeout: float) -> tuple[_Connection, bool]:
        conn = _Connection()
        try:
            conn.transport = await asyncio.wait_for(
                self._connect(conn, self.host, self.port, self._ssl), connect_timeout
            )
        except TimeoutError:
            raise UpstreamTimeout("connecting to the upstream timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the upstream: {exc.strerror or exc}") from None
        return conn, False


class _Slots:
    """At most `size` exchanges with an origin at once; the others wait, first come first served, until a slot is
    given back or their time is up. asyncio.Semaphore does the same for five times the cost of a free slot
    (900 ns against 150: its `locked()` builds a generator, its `acquire()` is a coroutine even when none waits)."""

    __slots__ = ("_free", "_waiting")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        """Take a free slot, if one is free and nobody waits for it before us."""
        if self._free and not self._waiting:
            self._free -= 1
            return True
        return False

    async def take(self, within: float) -> None:
        """Wait for a slot, `within` seconds at most (then UpstreamTimeout)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as our time ran out, or as our caller cancelled: the next one's
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("no free connection to the upstream in time") from None
            raise

    def give(self) -> None:
        """Give a slot back: to the first who still waits, else to the free ones."""
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _StaleConnection(UpstreamError):
    """A reused connection failed before the upstream sent anything."""


class _Unasked(Exception):
    """The upstream sent more than the answer to our request."""


_FRAMING = frozenset({"content-length", "transfer-encoding"})
_FRAMING_LENGTHS = frozenset(len(name) for name in _FRAMING)  # most names are not lower-cased at all
_FRAMED_ANSWER = frozenset({b"content-length", b"transfer-encoding"})


def _request_head(method: str, target: str, headers: list[Header], length: int | None, *, chunked: bool) -> bytes:
    lines = [f"{name}: {value}" for name, value in headers
             if len(name) not in _FRAMING_LENGTHS or name.lower() not in _FRAMING]
    lines.insert(0, f"{method} {target} HTTP/1.1")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")  # aiohttp decoded them so


class _Connection(asyncio.Protocol):
    """One upstream connection; carries one exchange at a time. Its transport is set once the backend's connect
    returns; bytes that come before that (none were asked for) leave it closed."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.transport: Transport | None = None
        self.reusable = False
        self._closed = False
        self._can_write: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._read_timeout = 0.0
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None
        self._head_only = False
        self._answer_done = False
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._failure: UpstreamError | None = None
        self._received_any = False
        self._paused = False
        self.status = 0
        self.reason = ""
        self.headers: list[RawHeader] = []

    @property
    def usable(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    @property
    def finished_cleanly(self) -> bool:
        """Both messages are complete and nobody asked to close: the connection may carry another exchange."""
        return self.reusable and self._answer_done and self._failure is None and self.usable

    # --- the exchange -----------------------------------------------------------------------------------

    async def exchange(
        self, head: bytes, body: AsyncIterable[bytes] | None, length: int | None, head_only: bool, read_timeout: float
    ) -> None:
        """Send the request and wait for the answer's head (the read deadline applies, see `_arm_timer`)."""
        self._reset_exchange()
        self._parser = httptools.HttpResponseParser(self)
        self._head = self._loop.create_future()
        self._head_only = head_only
        self._read_timeout = read_timeout
        self.reusable = True
        transport = self.transport
        if transport is None or not self.usable:
            raise _StaleConnection()
        transport.write(head)
        if body is None:
            self._arm_timer()
            await self._head
            return
        sender = asyncio.ensure_future(self._send_body(body, length))
        try:
            await asyncio.wait((sender, self._head), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            sender.cancel()
            self._give_up_head()
            raise
        if not sender.done():
            sender.cancel()  # the upstream answered before taking the whole body: this connection cannot be reused
            self.reusable = False
        elif sender.exception() is not None:
            self._give_up_head()  # the body's failure is the one to report
            raise sender.exception()  # type: ignore[misc]
        await self._head

    def _give_up_head(self) -> None:
        """Close the connection while nobody will wait for the answer's head any more: the failure the closing
        brings to it (`connection_lost`) must not be left for asyncio to log as never retrieved."""
        head = self._head
        if head is not None and head.done() and not head.cancelled():
            head.exception()
        elif head is not None:
            head.cancel()
        self.close()

    async def _send_body(self, body: AsyncIterable[bytes], length: int | None) -> None:
        sent = 0
        chunked = length is None
        async for chunk in body:
            if not chunk:
                continue
            sent += len(chunk)
            if length is not None and sent > length:
                self.reusable = False
                raise UpstreamError("the request body is longer than its Content-Length")
            await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            await self._write(b"0\r\n\r\n")
        elif sent != length:
            self.reusable = False
            raise UpstreamError("the request body ended before its Content-Length")
        self._arm_timer()

    async def _write(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        assert self.transport is not None
        self.transport.write(data)
        if self._can_write is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._can_write), self._read_timeout)
            except TimeoutError:
                self._fail(UpstreamTimeout("the upstream stopped taking the request body"))
                raise self._failure from None  # type: ignore[misc]

    def body_if_complete(self) -> bytes | None:
        if not self._answer_done or self._failure is not None:
            return None
        body = b"".join(self._body)  # one chunk, most often: join gives it back as it is
        self._body.clear()
        self._buffered = 0
        return body

    async def iter_body(self) -> AsyncIterator[bytes]:
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= _LOW_WATER and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                    self._arm_timer()
                yield chunk
                continue
            if self._failure is not None:
                raise self._failure
            if self._answer_done:
                return
            self._body_waiter = self._loop.create_future()
            await self._body_waiter

    def idle(self) -> None:
        self._cancel_timer()
        self._parser = None

    def close(self) -> None:
        self.reusable = False
        self._closed = True
        self._drop_timer()
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._answer_done:  # bytes we did not ask for: framing is lost
            self.close()
            return
        self._received_any = True
        self._arm_timer()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._answer_done:  # more bytes after a whole answer (`_Unasked`, or garbage): keep the answer
                self.close()
                return
            self._fail(UpstreamError(f"the upstream sent a malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.reusable = False
        self._drop_timer()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        if self._parser is None or self._answer_done:
            return
        if self._head is not None and self._head.done() and self._ends_at_close():
            self.on_message_complete()
        elif not self._received_any:
            self._fail(_StaleConnection("the upstream closed the connection"))
        else:
            self._fail(UpstreamError("the upstream closed the connection mid-answer"))

    def pause_writing(self) -> None:
        if self._can_write is None:
            self._can_write = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._can_write = self._can_write, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer_done:
            raise _Unasked()  # a second answer to one request: stops the parser, closes the connection

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("utf-8", "replace")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # called for every header of every answer: nothing else here

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise UpstreamError("the upstream switched protocols on a plain request")
            self.headers, self.reason = [], ""  # an interim answer: wait for the real one
            return
        self.status = status
        if not self._parser.should_keep_alive():
            self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            self.on_message_complete()

    def on_body(self, chunk: bytes) -> None:
        if self._answer_done:
            raise _Unasked()  # a body after an answer to HEAD: not ours to relay
        self._body.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
            self._cancel_timer()  # the client is behind, not the upstream: no read deadline while paused
        self._wake_body()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an interim (1xx) answer
        self._answer_done = True
        self._cancel_timer()
        if self._head_only:
            self._parser = None
        self._wake_body()

    # --- helpers -------------------------------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        if self.status in (204, 304):
            return False
        return not any(k.lower() in _FRAMED_ANSWER for k, _ in self.headers)

    def _fail(self, error: UpstreamError) -> None:
        if self._failure is None:
            self._failure = error
        self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake_body()

    def _wake_body(self) -> None:
        waiter, self._body_waiter = self._body_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm_timer(self) -> None:
        """Move the read deadline; one timer handle serves many moves (rescheduled only when it fires)."""
        self._deadline = self._loop.time() + self._read_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    def _cancel_timer(self) -> None:
        self._deadline = None  # the pending handle, if any, finds no deadline and lapses

    def _drop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        self._fail(UpstreamTimeout("the upstream did not answer in time"))
        self.close()
