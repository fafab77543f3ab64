"""Where the jti of every accepted Universal Logout token is kept, so that a token is accepted once.

`ReplayStore` is the interface: one method, `seen(jti, until, now)`. `MemoryReplayStore` is the embedded default (one
process). A shared backend (Redis) implements the same method, so that a token one replica accepted is a replay at
every other. Unlike RevocationStore the method is a coroutine: a replay has to be caught at the moment it arrives,
so a shared backend answers with a round trip (a set-if-absent with an expiry), not from a copy kept in step later.

Rules of this module:
- `seen` answers and remembers in one step: of two callers with one jti, at most one hears False.
- A jti need not be kept once `until` has passed (the verifier passes exp + leeway: a token is refused as expired
  after that anyway), and one whose `until` has passed is not a replay.
- No clock of its own: times come in as arguments, in epoch seconds.
- The memory store keeps at most `limit` jtis: expired ones go first, then the soonest to expire (a replayed logout
  can only log the same user out again).
"""

from __future__ import annotations

import heapq
from typing import Protocol

__all__ = ["MemoryReplayStore", "ReplayStore"]


class ReplayStore(Protocol):
    async def seen(self, jti: str, until: float, now: float) -> bool:
        """True when the jti is kept (a replay); otherwise it is kept from now on, until `until`."""


class MemoryReplayStore:
    """jti -> the time after which it need not be kept; bounded."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = max(limit, 1)
        self._until: dict[str, float] = {}
        self._order: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    async def seen(self, jti: str, until: float, now: float) -> bool:
        """Without an await between the look-up and the insert: one step for the event loop."""
        while self._order and self._order[0][0] <= now:
            self._drop()
        if jti in self._until:
            return True
        while len(self._until) >= self._limit:
            self._drop()
        self._until[jti] = until
        heapq.heappush(self._order, (until, jti))
        return False

    def _drop(self) -> None:
        _, jti = heapq.heappop(self._order)
        self._until.pop(jti, None)
