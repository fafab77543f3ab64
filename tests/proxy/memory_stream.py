"""An in-memory backend for the upstream client (gateway/proxy/backend.py): the test plays the upstream.

Each connection the client opens is a `MemoryStream`. The client's end is the `Transport` it writes to; the test's
end parses what was written (httptools, as a server would) and answers with `send()` and `hang_up()`. The stream
behaves as asyncio's socket transport does where the client's rules depend on it: bytes reach the client in
pieces, none while its reading is paused (they wait, as in a socket buffer), the end comes after the last byte,
and `connection_lost` comes once, on a later turn of the loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

PIECE = 2**16  # what one data_received carries at most, as a socket read would


@dataclass
class Request:
    """One request as the upstream parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


Answer = Callable[["MemoryStream", Request], None]
"""What the upstream does with each whole request it parsed: usually `stream.send(...)`, maybe `stream.hang_up()`."""


class _RequestParser:
    """httptools' callbacks for the requests written to one stream."""

    def __init__(self, done: Callable[[Request], None]) -> None:
        self._done = done
        self._parser = httptools.HttpRequestParser(self)
        self._request = Request("", "")
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._request, self._body = Request("", ""), bytearray()

    def on_url(self, url: bytes) -> None:
        self._request.target += url.decode()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._request.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        self._request.method = self._parser.get_method().decode()

    def on_body(self, chunk: bytes) -> None:
        self._body += chunk

    def on_message_complete(self) -> None:
        self._request.body = bytes(self._body)
        self._done(self._request)


class MemoryStream:
    """One connection. Transport methods (the client's end) first, then the upstream's end."""

    def __init__(self, protocol: asyncio.Protocol, answer: Answer | None) -> None:
        self._protocol = protocol
        self._answer = answer
        self._loop = asyncio.get_running_loop()
        self._parser = _RequestParser(self._requested)
        self._pending = bytearray()
        self._eof = False
        self._untaken: bytearray | None = None  # while the upstream takes nothing: what the client wrote meanwhile
        self.written = bytearray()
        self.requests: list[Request] = []
        self.reading = True
        self.closed = False
        self.pauses = 0

    # --- the client's end (backend.Transport) ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            return  # as asyncio's transport: writes after close are dropped
        if self._untaken is not None:
            self._untaken += data
            return
        self.written += data
        self._parser.feed(data)

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True
        self._loop.call_soon(self._deliver)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pending.clear()
            self._loop.call_soon(self._protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    # --- the upstream's end ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Bytes for the client: delivered now as far as it reads, the rest when it resumes."""
        if not self.closed and not self._eof:
            self._pending += data
            self._deliver()

    def hang_up(self) -> None:
        """The upstream closes its end: the client sees the end after every byte sent before it."""
        self._eof = True
        self._deliver()

    def block_writes(self) -> None:
        """The upstream stops taking bytes: it sees none of what the client writes now, and the client is told
        its send buffer is full."""
        self._untaken = bytearray()
        self._protocol.pause_writing()

    def unblock_writes(self) -> None:
        """The upstream takes what was held back, and the client is told it may write again."""
        untaken, self._untaken = self._untaken, None
        if untaken:
            self.write(bytes(untaken))
        self._protocol.resume_writing()

    @property
    def taking(self) -> bool:
        """Whether the upstream takes what the client writes (see `block_writes`)."""
        return self._untaken is None

    @property
    def unread(self) -> int:
        """Bytes sent that the client has not been given (it paused reading)."""
        return len(self._pending)

    def _deliver(self) -> None:
        while self.reading and self._pending and not self.closed:
            piece = bytes(self._pending[:PIECE])
            del self._pending[:PIECE]
            self._protocol.data_received(piece)
        if self.reading and self._eof and not self._pending and not self.closed:
            if not self._protocol.eof_received():
                self.close()

    def _requested(self, request: Request) -> None:
        self.requests.append(request)
        if self._answer is not None:
            self._loop.call_soon(self._answer, self, request)


class MemoryUpstream:
    """A `backend.Connect` whose connections are MemoryStreams, each answering with `answer` (if given);
    `on_connect` sees each stream before the client gets it."""

    def __init__(self, answer: Answer | None = None, *,
                 on_connect: Callable[[MemoryStream], None] | None = None) -> None:
        self._answer = answer
        self._on_connect = on_connect
        self.streams: list[MemoryStream] = []

    async def connect(self, protocol: asyncio.Protocol, host: str, port: int, tls: ssl.SSLContext | None
                      ) -> MemoryStream:
        stream = MemoryStream(protocol, self._answer)
        self.streams.append(stream)
        if self._on_connect is not None:
            self._on_connect(stream)
        return stream


def replies(*answers: bytes) -> Answer:
    """An upstream that gives each request the next of `answers`, whole, on whichever connection it came."""
    left = list(answers)

    def answer(stream: MemoryStream, request: Request) -> None:
        stream.send(left.pop(0))

    return answer
