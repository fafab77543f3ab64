"""A request body must keep coming, whichever handler reads it.

When `body_timeout` seconds pass without a body byte while the gateway is ready to read (its socket not paused
for back-pressure), the read fails with 408 (at most a quarter of the limit later) and the connection is closed;
so does a body that, past its first `body_timeout` seconds, averages fewer than `body_min_rate` bytes a second (a
trickle that never pauses long). The request head has its own limit (`header_timeout`, run.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from ..settings import ServerSettings


@contextmanager
def body_deadline(request: web.BaseRequest, limits: ServerSettings) -> Iterator[None]:
    """The request body's reads bounded by `BodyDeadline` while the block runs; nothing without a body."""
    if not request.body_exists:
        yield
        return
    deadline = BodyDeadline(request, limits.body_timeout, limits.body_min_rate)
    try:
        yield
    finally:
        deadline.cancel()


class BodyDeadline:
    """Fails the request body's reads with 408 when the client sends it too slowly, counting only the time the
    gateway is ready to read (not while its socket is paused because the gateway is behind):
    - a pause: `idle` seconds without a byte;
    - a trickle: past the first `idle` seconds, fewer than `min_rate` bytes a second on average (Apache's
      mod_reqtimeout MinRate): one byte every few seconds never pauses for long, yet would hold a connection and
      an upstream slot for as long as the client likes.
    One timer per request body. It does not learn when a byte came, only whether one came since its last run: it
    runs every quarter of `idle` and refuses a pause at the fourth run in a row that saw none, so the pause it
    refuses is `idle` to `idle` and a quarter long (one check per `idle` would let a byte just after a check buy
    almost two)."""

    __slots__ = ("_content", "_transport", "_step", "_min_rate", "_first", "_seen", "_quiet", "_reading",
                 "_handle")

    def __init__(self, request: web.BaseRequest, idle: float, min_rate: int | None) -> None:
        self._content = request.content
        self._transport = request.transport
        self._step = idle / _QUIET_CHECKS
        self._min_rate = min_rate
        self._first = self._seen = self._content.total_bytes
        self._quiet = 0
        self._reading = -idle  # seconds spent ready to read, less the first `idle`, which are free
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(self._step, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        content, transport = self._content, self._transport
        if content.is_eof() or content.exception() is not None or transport is None or transport.is_closing():
            return
        received = content.total_bytes
        if not transport.is_reading():
            self._quiet = 0
        else:
            self._reading += self._step
            self._quiet = 0 if received != self._seen else self._quiet + 1
        self._seen = received
        if self._quiet >= _QUIET_CHECKS:
            self._fail("The request body stopped arriving.")
        elif self._min_rate is not None and self._reading * self._min_rate > received - self._first:
            self._fail("The request body arrives too slowly.")
        else:
            self._handle = asyncio.get_running_loop().call_later(self._step, self._check)

    def _fail(self, why: str) -> None:
        timeout = BodyTooSlow(text=why)
        timeout.force_close()
        self._content.set_exception(timeout)


class BodyTooSlow(web.HTTPRequestTimeout, TimeoutError):
    """The 408 a body read fails with. A TimeoutError too: after the answer, aiohttp reads on to drain the rest of
    an unfinished body (its lingering close), meets this error again, and takes only a TimeoutError there for the
    end of the wait; any other error it logs as an ERROR traceback, one per slow client."""


_QUIET_CHECKS = 4  # runs of a body's timer per `body_timeout`; a pause is refused within a quarter past the limit
