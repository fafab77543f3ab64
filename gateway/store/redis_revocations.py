"""The fleet's revocations in Redis: tombstones, user and Okta watermarks, and the stream that fans them out.

Keys, each under the gateway's one hash tag (`link.key(...)`):
- `revocations:sessions` sorted set: member an Okta session id, score when it ended. ZADD NX: the first end
  recorded is kept.
- `revocations:users` sorted set: member a user key (Okta user id or lower-cased login), score its watermark
  (bindings made before it are void). ZADD GT: it only moves forward, whatever the order of the writes and
  whichever replica makes them.
- `revocations:okta` sorted set: the same keys, score before when Okta itself ended every session of the user.
  ZADD GT.
- `revocations:stream` stream: one entry per revocation a replica took (`kind=revocation`, every field of the
  Revocation, `replica` the id of the one that took it, `acted_at` its time), or a `kind=reload` marker (a replica
  wrote its whole state back; every other one reloads). Trimmed at each XADD by MINID to the retention.
- `revocations:epoch` string: a random id, SET NX by the first replica that finds it missing. A replica that finds
  another id (or none) than the one it knew learns that Redis lost everything meanwhile.

Rules of this module:
- One write (a revocation, or a batch of them kept while Redis was away) is one MULTI/EXEC: the records and the
  stream entries go together or not at all, so a reader of an entry finds its records. A write that timed out may
  still have been applied and is written again: entries are at least once, and applying one twice changes nothing.
- Retention: records older than `link.retention` (by score, the replicas' clock) are removed by
  `forget_older_than()`, which the fan-out runs now and then, never per request; the stream is trimmed exactly at
  each XADD by MINID (this host's wall clock against Redis's entry ids); every key written gets an EXPIRE of the
  retention, so that the keys of a gateway that no longer runs go away. The epoch has no expiry: it is one small
  key that says "this Redis still holds what it was given".
- Every command goes through the link (its timeout, StoreUnavailable at once while Redis is away), except the
  blocking XREAD, which runs on a client of its own (`read()`).
- Layer 2: fields and scores only; revocation/fanout.py turns a Revocation into a `Change` and an entry back.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .redis import RedisLink

Entry = tuple[str, dict[str, str]]  # a stream entry: its id and its fields
START = "0-0"  # the id before every entry
CHUNK = 500  # records per command when a whole state is written back or read
READ_COUNT = 200  # entries per XREAD


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream id ("ms-seq", or "ms") as something that compares in stream order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Change:
    """What one revocation writes: its records (none of a kind may be given) and its stream entry."""

    entry: dict[str, str]
    session: tuple[str, float] | None = None
    users: tuple[tuple[str, float], ...] = ()
    okta: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class State:
    """Every tombstone and watermark: of Redis in a snapshot, or of a replica's mirror to write back."""

    sessions: dict[str, float] = field(default_factory=dict)
    users: dict[str, float] = field(default_factory=dict)
    okta: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sessions) + len(self.users) + len(self.okta)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    exists: bool
    last: str  # the last id Redis gave out (START when there is no stream)
    first: str | None  # the oldest entry still there (None: no entry)
    trimmed: bool  # entries were removed from it (always True when Redis does not say: older than 7.0)

    def gap_after(self, last_read: str) -> bool:
        """Whether an entry after `last_read` may have been trimmed before it was read: too old to replay."""
        if not self.exists:
            return last_read != START  # gone (expired or deleted) since it was read: nothing says what it held
        if id_order(last_read) >= id_order(self.last) or not self.trimmed:
            return False  # all read, or nothing ever removed
        return self.first is None or id_order(self.first) > id_order(last_read)


class RedisRevocations:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.sessions_key = link.key("revocations:sessions")
        self.users_key = link.key("revocations:users")
        self.okta_key = link.key("revocations:okta")
        self.stream_key = link.key("revocations:stream")
        self.epoch_key = link.key("revocations:epoch")

    # --- writes -------------------------------------------------------------------------------------------------

    async def write(self, changes: Sequence[Change]) -> None:
        """Records and stream entries of these revocations, in one transaction."""
        minid = self._minid()

        async def op(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            for c in changes:
                if c.session is not None:
                    pipe.zadd(self.sessions_key, {c.session[0]: c.session[1]}, nx=True)
                if c.users:
                    pipe.zadd(self.users_key, dict(c.users), gt=True)
                if c.okta:
                    pipe.zadd(self.okta_key, dict(c.okta), gt=True)
                pipe.xadd(self.stream_key, c.entry, minid=minid, approximate=False)  # type: ignore[arg-type]
            self._expire(pipe)
            await pipe.execute()

        await self.link.run(op)

    async def write_state(self, state: State, marker: dict[str, str]) -> None:
        """A whole state (a mirror's), then the marker that tells every replica to reload: one transaction a chunk,
        the marker in the last one."""
        chunks = list(_chunks(state)) or [State()]
        for i, chunk in enumerate(chunks):
            await self.link.run(self._chunk_writer(chunk, marker if i == len(chunks) - 1 else None))

    def _chunk_writer(self, chunk: State, marker: dict[str, str] | None) -> Callable[[aioredis.Redis], Awaitable[None]]:
        return lambda r: self._write_chunk(r, chunk, marker)

    async def _write_chunk(self, r: aioredis.Redis, chunk: State, marker: dict[str, str] | None) -> None:
        pipe = r.pipeline(transaction=True)
        if chunk.sessions:
            pipe.zadd(self.sessions_key, chunk.sessions, nx=True)
        if chunk.users:
            pipe.zadd(self.users_key, chunk.users, gt=True)
        if chunk.okta:
            pipe.zadd(self.okta_key, chunk.okta, gt=True)
        if marker is not None:
            pipe.xadd(self.stream_key, marker, minid=self._minid(), approximate=False)  # type: ignore[arg-type]
        self._expire(pipe)
        await pipe.execute()

    def _expire(self, pipe: Any) -> None:
        ttl = max(int(self.link.retention), 1)
        for key in (self.sessions_key, self.users_key, self.okta_key, self.stream_key):
            pipe.expire(key, ttl)

    def _minid(self) -> str:
        return str(max(int((time.time() - self.link.retention) * 1000), 0))

    async def forget_older_than(self, now: float) -> None:
        """Drop the records past their retention (now and then, not per request)."""
        below = f"({now - self.link.retention!r}"

        async def op(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for key in (self.sessions_key, self.users_key, self.okta_key):
                pipe.zremrangebyscore(key, "-inf", below)
            await pipe.execute()

        await self.link.run(op)

    # --- the epoch ----------------------------------------------------------------------------------------------

    async def epoch(self) -> str | None:
        async def op(r: aioredis.Redis) -> str | None:
            found = await r.get(self.epoch_key)
            return None if found is None else str(found)

        return await self.link.run(op)

    async def adopt_epoch(self) -> str:
        """The epoch in Redis, set to a new random id first if there is none."""

        async def op(r: aioredis.Redis) -> str:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.epoch_key, secrets.token_hex(8), nx=True)
            pipe.get(self.epoch_key)
            _, epoch = await pipe.execute()
            return str(epoch)

        return await self.link.run(op)

    async def server(self) -> str:
        """Which Redis server answers (its run id): another one behind the same address after a Sentinel failover,
        or a restart, may lack the last writes the old one acknowledged (replication is asynchronous)."""

        async def op(r: aioredis.Redis) -> str:
            return str((await r.info("server")).get("run_id", ""))

        return await self.link.run(op)

    # --- reads --------------------------------------------------------------------------------------------------

    async def stream_info(self) -> StreamInfo:
        async def op(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.xinfo_stream(self.stream_key)
            [found] = await pipe.execute(raise_on_error=False)  # no such key is an error reply, not an outage
            return found

        found = await self.link.run(op)
        if isinstance(found, ResponseError):
            return StreamInfo(False, START, None, False)
        first = found.get("first-entry")
        added = found.get("entries-added")
        return StreamInfo(True, str(found["last-generated-id"]), str(first[0]) if first else None,
                          added is None or int(added) > int(found["length"]))

    async def snapshot(self) -> tuple[State, str]:
        """Every record, and the stream id to read on from: taken before the records are, so that what is written
        meanwhile is read again from the stream rather than missed (applying a record twice changes nothing)."""
        position = (await self.stream_info()).last
        state = State(await self._scan(self.sessions_key), await self._scan(self.users_key),
                      await self._scan(self.okta_key))
        return state, position

    async def _scan(self, key: str) -> dict[str, float]:
        found: dict[str, float] = {}
        cursor = 0
        while True:
            cursor, items = await self.link.run(self._scanner(key, cursor))
            found.update((str(member), float(score)) for member, score in items)
            if cursor == 0:
                return found

    @staticmethod
    def _scanner(key: str, cursor: int) -> Callable[[aioredis.Redis], Awaitable[Any]]:
        return lambda r: r.zscan(key, cursor, count=CHUNK)

    def reader(self, block: float) -> aioredis.Redis:
        """The client of the blocking reads (one per reader: a blocked connection serves nothing else)."""
        return self.link.blocking_client(block)

    async def read(self, client: aioredis.Redis, after: str, block: float) -> list[Entry]:
        """The entries after `after`, waiting up to `block` seconds for one; raises what the client raises (a hung
        Redis: TimeoutError once the client's socket timeout, `block` and the command timeout, has passed)."""
        reply: Any = await client.xread({self.stream_key: after}, count=READ_COUNT, block=max(int(block * 1000), 1))
        if not reply:
            return []
        [[_, entries]] = reply
        return [(str(entry_id), dict(fields)) for entry_id, fields in entries]


def _chunks(state: State) -> Iterator[State]:
    """The state in parts of at most CHUNK records of each kind."""
    parts = [iter(state.sessions.items()), iter(state.users.items()), iter(state.okta.items())]
    while True:
        sessions, users, okta = (dict(islice(p, CHUNK)) for p in parts)
        if not (sessions or users or okta):
            return
        yield State(sessions, users, okta)
