""""Seen once": the one primitive behind the Universal Logout jti set and the event-hook delivery dedupe.

`SeenOnce` is the interface: one method, `seen(key, until, now)`. `MemorySeen` is the embedded default (one
process); redis_seen.py's `RedisSeen` is the fleet's (a set-if-absent with an expiry in Redis, this memory set in
front of it and in its place while Redis is away). The method is a coroutine: a replay has to be caught at the
moment it arrives, so a shared backend answers with a round trip, not from a copy kept in step later.

Rules of this module:
- `seen` answers and remembers in one step: of two callers with one key, at most one hears False.
- A key need not be kept once `until` has passed (the jti verifier passes exp + leeway: a token is refused as
  expired after that anyway; the hook receiver passes now + `[store] retention`), and one whose `until` has passed
  is not a replay.
- A key is client-controlled (a token's jti, a delivery's uuid): it is kept as its SHA-256 (`digest`), so that a
  hostile one costs 64 characters whatever its length or bytes (lone surrogates included).
- No clock of its own: times come in as arguments, in epoch seconds.
- The memory store keeps at most `limit` keys: expired ones go first, then the soonest to expire (a replayed logout
  can only log the same user out again; a replayed hook event only revokes again what it revoked).
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Protocol

__all__ = ["MemorySeen", "SeenOnce", "digest"]


class SeenOnce(Protocol):
    async def seen(self, key: str, until: float, now: float) -> bool:
        """True when the key is kept (a replay); otherwise it is kept from now on, until `until`."""


def digest(key: str) -> str:
    """The SHA-256 of a client-controlled key, in hex: what is kept in its place (64 characters, plain ASCII)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class MemorySeen:
    """digest(key) -> the time after which it need not be kept; bounded."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = max(limit, 1)
        self._until: dict[str, float] = {}
        self._order: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    async def seen(self, key: str, until: float, now: float) -> bool:
        """Without an await between the look-up and the insert: one step for the event loop (so a caller that
        awaits it does not yield either)."""
        while self._order and self._order[0][0] <= now:
            self._drop()
        kept = digest(key)
        if kept in self._until:
            return True
        if until <= now:
            return False  # past its time: not a replay, and nothing to keep
        while len(self._until) >= self._limit:
            self._drop()
        self._until[kept] = until
        heapq.heappush(self._order, (until, kept))
        return False

    def _drop(self) -> None:
        _, kept = heapq.heappop(self._order)
        self._until.pop(kept, None)
