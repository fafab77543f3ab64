"""The fleet's "seen once" set on Redis (store/seen.py states the interface): a jti or an event-hook delivery uuid
accepted by one replica is a replay at every other.

Rules of this module:
- One key per kept id, `link.key("<kind>:<sha256 of the id>")` (kind "jti" or "hook": one RedisSeen per kind), set
  with SET NX PX: Redis answers and remembers in one step, so of two replicas with one id at most one hears "new".
  The key is at most the prefix plus 70 characters, whatever the id (a hostile jti or uuid of any length or bytes).
- The expiry is relative (PX, until - now, at most `MAX_KEEP`): the caller's clock says how long the id matters and
  Redis's clock only counts it down, so a skew between the two neither keeps a key for ever nor drops it at once.
- This process's memory set (`MemorySeen`) is asked first and always remembers: a replay on the same replica costs
  no round trip, and is caught whether or not Redis answers.
- Redis away (down, hung, refusing): the answer is the memory set's, within the store timeout (RedisLink: one
  timeout per outage, then none while away), never an exception. A replay on another replica cannot be caught
  meanwhile. The ids accepted meanwhile (at most `limit`, the oldest dropped first) are written to Redis when it is
  back (an `on_up` callback), so that a replay after the outage is caught on every replica.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from itertools import islice

import redis.asyncio as aioredis

from .redis import RedisLink, StoreUnavailable
from .seen import MemorySeen, digest

__all__ = ["MAX_KEEP", "RedisSeen"]

BATCH = 500
MAX_KEEP = 366 * 86_400.0  # a token valid for longer than a year is not one Okta sends


class RedisSeen:
    def __init__(self, link: RedisLink, kind: str, *, limit: int = 100_000) -> None:
        self._link, self._kind = link, kind
        self._local = MemorySeen(limit)
        self._limit = max(limit, 1)
        self._unwritten: OrderedDict[str, float] = OrderedDict()  # digest -> monotonic deadline, while Redis is away
        link.on_up.append(self.write_unwritten)

    def key(self, key: str) -> str:
        """The Redis key that keeps `key` (a jti, a uuid)."""
        return self._name(digest(key))

    async def seen(self, key: str, until: float, now: float) -> bool:
        if await self._local.seen(key, until, now):  # no await inside: remembered before anyone else is asked
            return True
        if until <= now:
            return False
        kept, ttl = digest(key), min(until - now, MAX_KEEP)
        try:
            return not await self._link.run(lambda r: r.set(self._name(kept), "1", nx=True, px=_ms(ttl)))
        except StoreUnavailable:
            self._keep_unwritten(kept, time.monotonic() + ttl)
            return False

    async def write_unwritten(self) -> None:
        """Write what was accepted while Redis was away, `BATCH` ids a round trip (StoreUnavailable, and the rest
        kept, if it goes away again)."""
        while self._unwritten:
            batch = list(islice(self._unwritten.items(), BATCH))
            await self._link.run(functools.partial(self._write, batch=batch))
            for kept, _ in batch:
                self._unwritten.pop(kept, None)

    async def _write(self, client: aioredis.Redis, *, batch: list[tuple[str, float]]) -> None:
        pipe, now = client.pipeline(transaction=False), time.monotonic()
        for kept, deadline in batch:
            if deadline > now:
                pipe.set(self._name(kept), "1", nx=True, px=_ms(deadline - now))
        await pipe.execute()

    def _keep_unwritten(self, kept: str, deadline: float) -> None:
        self._unwritten[kept] = deadline
        while len(self._unwritten) > self._limit:
            self._unwritten.popitem(last=False)

    def _name(self, kept: str) -> str:
        return self._link.key(f"{self._kind}:{kept}")


def _ms(seconds: float) -> int:
    return max(math.ceil(seconds * 1000), 1)
