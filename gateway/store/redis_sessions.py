"""The fleet's shared cache of Okta's answers about sessions, on Redis (lookups.SharedLookups).

Data layout, every key under the link's one hash tag (`{<key_prefix>}:`):
- `okta-session:<digest>`, a string: the answer one replica had from Okta (as sessions/shared.py encodes it), with
  an expiry (PX) equal to the time its own cache entry stays fresh, which never runs past the session's expiresAt.
- `okta-session-lock:<digest>`, a string: the random token of the replica asking Okta about the id now; SET NX PX,
  lapsing by itself after the Okta timeout plus one command timeout, deleted only by a script that compares the
  token (a slow holder whose lock lapsed cannot release the next holder's).
- `okta-hold:<family>`, a string: the epoch second until which the endpoint family is rate-limited (a 429's
  reset), expiring then; a script raises it and never lowers it, so that holds written out of order keep the last.
`<digest>` is the SHA-256 of the session id (32 hex digits): Redis never holds an Okta session id, which is a
bearer credential of the user's Okta session (the `sid` cookie); a dump, a MONITOR or a `KEYS *` shows none.

Rules of this module:
- Expiries are relative (PX from the caller's clock), not PXAT: the times inside the values are read against each
  replica's own clock, and Redis's clock is not theirs; the expiry only makes sure nothing outlives its use.
- Every command runs through RedisLink.run (the store timeout; StoreUnavailable, at once while Redis is away).
- A wait polls with a short, growing interval and stops at its deadline; it never starts a command past it.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Collection, Sequence

from .lookups import Looked
from .redis import RedisLink
from .seen import digest

FIRST_POLL, LAST_POLL = 0.01, 0.1  # seconds between two looks while another replica asks Okta

# KEYS: the value, the lock. ARGV: the claimant's token, the value ("" for none), its PX.
_SETTLE = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""

# KEYS: the family's hold. ARGV: until (epoch seconds), its PX.
_RAISE_HOLD = """
local held = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if tonumber(ARGV[1]) > held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


class RedisSessions:
    def __init__(self, link: RedisLink, okta_timeout: float) -> None:
        self._link = link
        self.wait_limit = okta_timeout
        self._lock_ms = max(int((okta_timeout + link.settings.timeout) * 1000), 1)
        self._settle = link.client.register_script(_SETTLE)
        self._raise_hold = link.client.register_script(_RAISE_HOLD)

    def value_key(self, session_id: str) -> str:
        return self._link.key(f"okta-session:{_digest(session_id)}")

    def lock_key(self, session_id: str) -> str:
        return self._link.key(f"okta-session-lock:{_digest(session_id)}")

    def hold_key(self, family: str) -> str:
        return self._link.key(f"okta-hold:{family}")

    async def look(self, session_id: str, families: Sequence[str]) -> Looked:
        keys = [self.value_key(session_id), *map(self.hold_key, families)]
        found = await self._link.run(lambda r: r.mget(keys))
        return Looked(_text(found[0]), _holds(families, found[1:]))

    async def claim(self, session_id: str) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._link.run(lambda r: r.set(self.lock_key(session_id), token, nx=True, px=self._lock_ms))
        return token if taken else None

    async def wait(self, session_id: str, families: Sequence[str], deadline: float) -> Looked | None:
        keys = [self.value_key(session_id), self.lock_key(session_id), *map(self.hold_key, families)]
        pause = FIRST_POLL
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, LAST_POLL)
            found = await self._link.run(lambda r: r.mget(keys))
            looked = Looked(_text(found[0]), _holds(families, found[2:]), claimed=found[1] is not None)
            if looked.value is not None or not looked.claimed:
                return looked
        return None

    async def settle(self, session_id: str, token: str, value: str | None, ttl: float) -> None:
        px = int(ttl * 1000)
        shared = value if value is not None and px >= 1 else ""
        keys = [self.value_key(session_id), self.lock_key(session_id)]
        args: list[str | int] = [token, shared, max(px, 1)]
        await self._link.run(lambda r: self._settle(keys=keys, args=args, client=r))

    async def hold(self, family: str, until: float, ttl: float) -> None:
        px = int(ttl * 1000)
        if px < 1 or not math.isfinite(until):
            return
        keys, args = [self.hold_key(family)], [f"{until:.3f}", str(px)]
        await self._link.run(lambda r: self._raise_hold(keys=keys, args=args, client=r))

    async def forget(self, session_ids: Collection[str]) -> None:
        keys = [self.value_key(session_id) for session_id in session_ids]
        if keys:
            await self._link.run(lambda r: r.delete(*keys))


def _digest(session_id: str) -> str:
    return digest(session_id)[:32]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _holds(families: Sequence[str], found: Sequence[object]) -> dict[str, float]:
    """The holds that parse as finite epoch times; anything else in a hold key is no hold."""
    holds: dict[str, float] = {}
    for family, value in zip(families, found, strict=True):
        try:
            until = float(value) if isinstance(value, str) else math.nan
        except ValueError:
            continue
        if math.isfinite(until) and until > 0:
            holds[family] = until
    return holds
