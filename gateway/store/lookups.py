"""The fleet's shared cache of Okta's answers about sessions, as the validator sees it (sessions/validation.py).

Rules of this interface (redis_sessions.py implements it on Redis; with the memory store there is none):
- It keeps what the validator hands it: one opaque string per session id (sessions/shared.py writes and reads
  them; a value read back is untrusted and checked there), each for the ttl it is given and never longer.
- A claim is a short lock per session id, so that one replica at a time asks Okta about an id. It lapses by itself
  once an Okta call would have timed out (a holder that dies holds nobody back for longer), and only its holder
  releases it (`settle`, with the token `claim` gave).
- `wait` follows another replica's claim until its answer is there, the claim is gone, or the caller's deadline.
- Rate-limit holds are kept per endpoint family name, until an epoch time; a hold only ever moves later.
- Every call answers within the store's own command timeout (a wait: by its deadline, give or take one command)
  or raises StoreUnavailable: Redis away or slow costs a caller one timeout, and the caller then asks Okta itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Looked:
    """What the fleet holds about one id: the shared value (None: nothing), whether another replica is asking
    Okta about it now, and the rate-limit holds of the families asked for (epoch seconds; absent: none)."""

    value: str | None
    holds: Mapping[str, float] = field(default_factory=dict)
    claimed: bool = False


class SharedLookups(Protocol):
    wait_limit: float  # the longest a caller waits for another replica's answer: the Okta timeout

    async def look(self, session_id: str, families: Sequence[str]) -> Looked:
        """The shared value of the id and the holds of the families, in one round trip."""

    async def claim(self, session_id: str) -> str | None:
        """Take the id's lock: a token to settle it with, or None when another replica holds it."""

    async def wait(self, session_id: str, families: Sequence[str], deadline: float) -> Looked | None:
        """Until the id has a value or nobody holds its lock (what is there then), or None at `deadline`
        (time.monotonic())."""

    async def settle(self, session_id: str, token: str, value: str | None, ttl: float) -> None:
        """Keep `value` (if any) for `ttl` seconds, and release the lock if this token still holds it."""

    async def hold(self, family: str, until: float, ttl: float) -> None:
        """No call of the family before `until` (epoch seconds), for every replica; kept `ttl` seconds."""

    async def forget(self, session_ids: Collection[str]) -> None:
        """Drop the shared values of these ids (a revocation arrived)."""
