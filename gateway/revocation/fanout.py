"""Every revocation on every replica: what this process takes is written to Redis, what the others take is read
from the stream and acted on here. The keys are store/redis_revocations.py's.

Rules of this module (the fan-out protocol):
- Out. The bus hands every revocation this process takes (`publish()`, already acted on here) to `FanOut`, which
  keeps it in a buffer that a writer task empties into Redis at once: its records and its stream entry, one
  transaction. Publishing never waits on Redis. While Redis is away the buffer keeps them
  (`session_gateway_store_buffered_revocations`); when it is back (`RedisLink.on_up`) they are written, in order.
- In. A reader task XREADs the stream (blocking, on a client of its own) after the last id it read, and acts on each
  entry of another replica with `bus.apply_remote()`: the mirror, the cache, the sockets, an audit line marked
  `fanned_in=<replica>`. That calls no listener, so nothing read is written again (no echo, no loop); entries of
  this replica are skipped. `session_gateway_store_replay_lag_seconds`: the age of the last entry read, when read.
- Start-up, before the gateway serves (`start()`): adopt the epoch, take the stream's end, load every record into
  the mirror, then read on from that end; so a replica that starts later knows every tombstone and watermark (a
  Universal Logout's too, which leaves the Okta session ACTIVE). Redis away then is not fatal: the gateway starts
  with what it takes itself, and loads when Redis answers.
- After a failed read, when Redis is back and every TICK seconds, the epoch is checked. Another one, or none: Redis
  lost the fleet's state (restarted empty). This replica adopts the new epoch, writes its whole mirror back followed
  by a reload marker, reloads and reads on from the stream's end; every other replica reloads when it reads the
  marker (`session_gateway_store_reloads{why="empty"}`), so every mirror and Redis end up holding every replica's state.
  What this replica kept meanwhile is written after that as ordinary entries (the others close those sockets too).
- The same epoch on another server (a Sentinel failover, or a restart that kept its data): the new primary may lack
  the last writes the old one acknowledged, since replication is asynchronous, so the replica writes its whole
  mirror back (records only merge: nothing is undone).
- The same epoch, but the stream was trimmed past the last id read (a gap too old to replay): reload
  (`why="gap"`) and read on from the stream's end.
- A reload is a merge (`bus.learn()`): the mirror only gains records (first end kept, watermarks only forward), and
  only what is new to it evicts cache entries and closes sockets. Nothing is ever replaced, so a reload can only
  revoke, never bring a session back.
- More than `max_buffered` revocations kept: the buffer is dropped (the mirror holds their records) and the whole
  mirror is written back with a marker instead (`why="overflow"`): bounded memory, nothing lost.
- Every TICK seconds, records past the retention leave Redis and the mirror. A log line on each change of state:
  loaded, kept, written, read failed, reading again, Redis back empty, gap, reloaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..metrics import Metrics
from ..store import StoreUnavailable
from ..store.memory import MemoryStore
from ..store.redis_revocations import START, Change, Entry, RedisRevocations, State, id_order
from .bus import Acted, Revocation, RevocationBus

log = logging.getLogger("gateway.fanout")

BLOCK = 1.0  # seconds an XREAD waits for an entry before the reader looks at its flags again
TICK = 60.0  # seconds between retention sweeps and epoch checks
RETRY = 0.25  # seconds between checks that Redis answers again, after a failed read
WRITE_BATCH = 100  # kept revocations written per transaction
MAX_BUFFERED = 100_000

TEXT = ("source", "reason", "session_id", "user_id", "login")
TIMES = ("happened_at", "cutoff")
FLAGS = ("all_sessions", "in_okta")


def replica_id() -> str:
    """This process among the fleet's: host, pid and a random part (a restarted process is another replica)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def entry_of(acted: Acted, replica: str) -> dict[str, str]:
    """The stream entry of a revocation: every field of it (None left out), who took it and when."""
    r = acted.revocation
    fields = {"kind": "revocation", "replica": replica, "acted_at": repr(acted.acted_at)}
    for name in TEXT:
        value = getattr(r, name)
        if value is not None:
            fields[name] = value
    for name in TIMES:
        value = getattr(r, name)
        if value is not None:
            fields[name] = repr(value)
    for name in FLAGS:
        fields[name] = "1" if getattr(r, name) else "0"
    return fields


def revocation_of(fields: dict[str, str]) -> tuple[Revocation, float]:
    """The revocation of a stream entry and when its replica acted; KeyError or ValueError if it is not one."""
    text = {name: fields[name] for name in TEXT if name in fields}
    times = {name: float(fields[name]) for name in TIMES if name in fields}
    flags = {name: fields[name] == "1" for name in FLAGS if name in fields}
    return Revocation(**text, **times, **flags), float(fields["acted_at"])  # type: ignore[arg-type]


def change_of(acted: Acted, replica: str) -> Change | None:
    """What a revocation writes to Redis: records with the times the bus used, and its entry (None: nothing)."""
    r, at = acted.revocation, acted.acted_at
    keys = r.user_keys()
    if not r.session_id and not keys:
        return None
    users = tuple((key, r.user_cutoff(at)) for key in keys)
    return Change(entry_of(acted, replica), (r.session_id, r.ended_at(at)) if r.session_id else None, users,
                  users if r.in_okta else ())


class FanOut:
    def __init__(self, bus: RevocationBus, mirror: MemoryStore, shared: RedisRevocations, metrics: Metrics, *,
                 replica: str | None = None, clock: Callable[[], float] = time.time,
                 max_buffered: int = MAX_BUFFERED) -> None:
        assert bus.store is mirror, "the bus records in the mirror the fan-out keeps current"
        self._bus, self._mirror, self._shared, self._link = bus, mirror, shared, shared.link
        self._metrics, self._clock, self._max = metrics, clock, max_buffered
        self.replica = replica or replica_id()
        self.last_id = START  # the last stream entry read
        self._pending: deque[Change] = deque()
        self._dropped = 0  # revocations kept past max_buffered: their records are written back with the state
        self._resync: str | None = None  # why the whole mirror is to be written back, if it is
        self._wake = asyncio.Event()
        self._epoch: str | None = None
        self._server: str | None = None  # the run id of the Redis server last checked
        self._loaded = False
        self._check = False  # the epoch and the stream's trimming are to be looked at before the next read
        self._due: str | None = None  # a reload asked for by a marker, not done yet
        self._keeping = False  # writes are failing: revocations are kept (logged once)
        self._reading = True  # reads are succeeding (logged on each change)
        self._reader: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        bus.listeners.append(self._taken)
        self._link.on_up.append(self._back)

    @property
    def buffered(self) -> int:
        return len(self._pending) + self._dropped

    async def start(self) -> None:
        """Load the fleet's state (if Redis answers) and start the writer, the reader and the retention sweep."""
        self._reader = self._shared.reader(BLOCK)
        if self._link.up:
            try:
                await self._load()
            except StoreUnavailable:
                pass  # the reader loads when Redis is back
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._read_loop()),
                       loop.create_task(self._tick_loop())]

    async def close(self) -> None:
        """Stop the tasks (a cancellation that the Redis client swallows ends them at their next turn: the reader's
        connection is closed under it), then write what is kept, if Redis answers."""
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._reader is not None:
            await self._reader.aclose()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._link.up and (self._pending or self._resync):
            try:
                await self._write_all()
            except Exception as exc:  # StoreUnavailable, or a change Redis cannot take: closing goes on
                log.warning("fan-out: the last write on closing failed: %s", type(exc).__name__)
        if self.buffered:
            log.warning("fan-out: closing with %d revocations of this replica not written to redis", self.buffered)
        self._reader = None
        if self._taken in self._bus.listeners:
            self._bus.listeners.remove(self._taken)
            self._link.on_up.remove(self._back)

    # --- out: this replica's revocations ------------------------------------------------------------------------

    def _taken(self, acted: Acted) -> None:
        change = change_of(acted, self.replica)
        if change is None:
            return
        if len(self._pending) >= self._max:
            if self._resync is None:
                log.warning("fan-out: more than %d revocations kept; the whole state will be written back instead",
                            self._max)
            self._dropped += len(self._pending)
            self._pending.clear()
            self._resync = self._resync or "overflow"
        self._pending.append(change)
        self._metrics.store_buffered.set(self.buffered)
        self._wake.set()

    async def _back(self) -> None:
        """Redis answers again: write what was kept, and look at the epoch before the next read."""
        self._check = True
        self._wake.set()

    async def _write_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_all()
            except StoreUnavailable:
                if not self._keeping:
                    log.warning("fan-out: redis is away; keeping this replica's revocations (%d so far) until it "
                                "is back", self.buffered)
                self._keeping = True
            except Exception:  # a change Redis cannot take must not stop every later one: it stays in the mirror
                log.exception("fan-out: writing to redis failed; the change at the head is dropped (this replica "
                              "still acts on it)")
                self._drop_head()

    def _drop_head(self) -> None:
        if self._pending:
            self._pending.popleft()
        else:
            self._resync = None
        self._metrics.store_buffered.set(self.buffered)
        self._wake.set()

    async def _write_all(self) -> None:
        written = 0
        if self._resync is not None:
            await self._write_state(self._resync)
        while self._pending:
            batch = list(islice(self._pending, WRITE_BATCH))
            await self._shared.write(batch)
            for _ in batch:
                self._pending.popleft()
            written += len(batch)
            self._metrics.store_buffered.set(self.buffered)
        if self._keeping:
            self._keeping = False
            log.warning("fan-out: redis is back; wrote the %d revocations kept meanwhile", written)

    async def _write_state(self, why: str) -> None:
        state = State(*self._mirror.snapshot())
        await self._shared.write_state(state, {"kind": "reload", "why": why, "replica": self.replica})
        if self._resync == why:
            self._resync = None
        self._dropped = 0  # their records were in the mirror just written
        self._metrics.store_buffered.set(self.buffered)
        log.warning("fan-out: wrote this replica's whole state back to redis (%d records, %s); every replica "
                    "reloads", len(state), why)

    # --- in: the other replicas' revocations --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        while not self._closing:
            try:
                await self._catch_up()
                entries = await self._shared.read(reader, self.last_id, BLOCK)
                if not self._reading:
                    self._reading = True
                    log.warning("fan-out: reading the stream again after %s", self.last_id)
                self._apply(entries)
            except (StoreUnavailable, RedisError, OSError, TimeoutError) as exc:
                if not self._closing:
                    await self._read_failed(exc)

    async def _catch_up(self) -> None:
        """Whatever has to happen before the next read: the first load, the epoch and gap checks, a reload."""
        if not self._loaded:
            await self._load()
        if self._check:
            await self._sync()
        if self._due is not None:
            await self._reload(self._due, from_end=False)
            self._due = None

    async def _read_failed(self, exc: BaseException) -> None:
        self._check = True
        if self._reading:
            self._reading = False
            log.warning("fan-out: reading the stream failed (%s); catching up from %s when redis answers",
                        type(exc).__name__, self.last_id)
        while not self._closing:
            await asyncio.sleep(RETRY)
            try:
                await self._link.run(lambda r: r.ping())
                return
            except StoreUnavailable:
                continue

    def _apply(self, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            self.last_id = entry_id
            origin = fields.get("replica", "")
            if origin == self.replica:
                continue
            if fields.get("kind") == "reload":
                self._due = fields.get("why", "empty")
            elif fields.get("kind") == "revocation":
                try:
                    revocation, acted_at = revocation_of(fields)
                except (KeyError, ValueError, TypeError):
                    log.warning("fan-out: stream entry %s is no revocation; skipped", entry_id)
                    continue
                self._bus.apply_remote(revocation, acted_at, origin)
        if entries:
            age = time.time() - id_order(entries[-1][0])[0] / 1000
            self._metrics.store_replay_lag.set(max(age, 0.0))

    async def _load(self) -> None:
        self._epoch = await self._shared.adopt_epoch()
        self._server = await self._shared.server()
        state, self.last_id = await self._shared.snapshot()
        new = self._bus.learn(state.sessions, state.users, state.okta)
        self._loaded, self._check = True, False
        log.info("fan-out: replica %s loaded the fleet's state (%d records, %d new here); reading the stream after "
                 "%s", self.replica, len(state), new, self.last_id)

    async def _sync(self) -> None:
        epoch = await self._shared.epoch()
        if epoch != self._epoch:
            known, self._epoch = self._epoch, await self._shared.adopt_epoch()
            log.warning("fan-out: redis lost the fleet's state (epoch %s, was %s); writing this replica's back",
                        epoch or "missing", known)
            self._resync = "empty"
            self._wake.set()
            await self._reload("empty", from_end=True)
        elif (server := await self._shared.server()) != self._server:
            # the same epoch on another server (a failover, or a restart that kept its data): it may lack what the
            # old one acknowledged last, so this replica writes its state back; the records only ever merge
            log.warning("fan-out: another redis server answers (a failover or a restart); writing this replica's "
                        "state back")
            self._server = server
            self._resync = self._resync or "failover"
            self._wake.set()
        elif (await self._shared.stream_info()).gap_after(self.last_id):
            log.warning("fan-out: the stream was trimmed past %s (a gap too old to replay); reloading",
                        self.last_id)
            await self._reload("gap", from_end=True)
        self._check = False

    async def _reload(self, why: str, *, from_end: bool) -> None:
        state, end = await self._shared.snapshot()
        new = self._bus.learn(state.sessions, state.users, state.okta)
        if from_end:
            self.last_id = end
        self._metrics.store_reloads.labels(why).inc()
        log.warning("fan-out: reloaded the fleet's state (%s): %d records, %d new here", why, len(state), new)

    async def _tick_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(TICK)
            now = self._clock()
            self._mirror.forget_older_than(now)
            try:
                await self._shared.forget_older_than(now)
            except StoreUnavailable:
                pass
            self._check = True
