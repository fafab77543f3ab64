"""Validate an Okta session id: the cache first, then one call to Okta per id however many requests wait for it.

The rules of the cache itself are in cache.py. This module adds the I/O around it:
- single-flight: concurrent lookups of one id share one call (the waiters are counted as `coalesced`);
- stale-while-revalidate: an entry in its refresh window is served while one background call refreshes it, with
  at most `max_background` such calls at once (past that the entry is just served);
- rate-limit awareness: while X-Rate-Limit-Remaining is under `low_headroom` of the limit, new entries live
  `stretch` times longer; after a 429 the client itself sends nothing of that endpoint family until the reset
  time;
- which ids reach it: Okta is asked only about ids a binding vouches for or that the app accepted at its ACS,
  those within a bounded budget of unknown ids (`asks_okta` says which would cost a call; the enforcer's rule,
  see enforcement/enforcer.py and policy.py); an id a session-id source claims is only compared with the bound
  one and never looked up, so what a client makes up spends at most that budget of the org's rate limit;
- outages (Okta unreachable, 5xx, rate-limited, or refusing our token): each caller's fail mode decides. `closed`
  (grace None) answers UNAVAILABLE; `grace` serves a session last seen ACTIVE for at most that many seconds past
  its cache entry's end (never past its expiresAt). Either way a counter says so, and a log line at most every
  few seconds.
- a fleet (`shared`, store/lookups.py; none with the memory store, and then nothing below happens): one Okta call
  per session per TTL for every replica. The in-process cache stays in front, so a warm hit costs no I/O; a local
  miss (or a background refresh) first looks in the shared cache, in the same round trip as the fleet's
  rate-limit holds (`look`). Nothing there: it claims the id's short lock and asks Okta, then hands the answer
  (negative ones too) to the fleet and releases the lock in the background (`settle`); another replica holds the
  lock: it waits for that answer, at most the Okta timeout, and past it asks Okta itself. A 429 is written as a
  hold of its endpoint family that every replica takes before its next call. A value read back is untrusted
  (shared.py parses it; cache.py's `adopt` holds it to this replica's own TTLs; a malformed one is a miss), and
  only ids that passed is_session_id() and the enforcer's budget reach the shared cache. Redis away or slow: each
  store command costs at most the store timeout (none while RedisLink knows it is away) and the lookup asks Okta
  as it would alone; the fleet's cache is an optimisation, never a dependency.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from ..metrics import Metrics
from ..okta.client import Family, OktaClient, OktaError, RateLimited, SessionGone
from ..okta.ids import is_session_id
from ..okta.model import OktaSession
from ..store import StoreUnavailable
from ..store.lookups import Looked, SharedLookups
from . import shared as fleet
from .cache import GONE, UNAVAILABLE, Entry, Freshness, ValidationCache
from .policy import OktaView

log = logging.getLogger("gateway.validation")

_OUTAGE_LOG_INTERVAL = 10.0
_FAMILIES = tuple(family.value for family in Family)
_LONGEST_HOLD = 120.0  # Okta's rate-limit windows are a minute: a shared hold further ahead is not believed
_MAX_WRITES = 1024  # background writes to the shared cache in flight; past that an answer is not shared


class Verdict(enum.Enum):
    ALIVE = "alive"  # Okta knows the session (look at session.status: only ACTIVE is signed in)
    GONE = "gone"  # Okta does not know it, or the id is not an Okta id
    UNAVAILABLE = "unavailable"  # Okta could not say, and the fail mode does not allow a guess


@dataclass(slots=True)  # built per request: not frozen, which costs ~0.4 us a build; never mutated
class Validation:
    verdict: Verdict
    session: OktaSession | None
    via: str  # hit, refresh, miss, coalesced, negative, grace, unavailable, invalid_id
    view: OktaView = UNAVAILABLE  # the same, as decide() takes it
    entry: Entry | None = None  # the cache entry it came from, if any

    @property
    def signed_in(self) -> bool:
        return self.verdict is Verdict.ALIVE and self.session is not None and self.session.active


class _Outage:
    """What a shared fetch hands its waiters when Okta could not answer."""

    def __init__(self, reason: str, held_until: float | None = None) -> None:
        self.reason = reason
        self.held_until = held_until  # rate-limited: no session read before then


@dataclass(frozen=True, slots=True)
class _FromFleet:
    """An entry made of another replica's answer (the shared cache), not of a call of this one."""

    entry: Entry


_Fetched = Entry | _FromFleet | _Outage
_Found = Entry | str | None  # in the fleet: its answer, our claim's token, or nothing (ask Okta unclaimed)


class SessionValidator:
    def __init__(
        self,
        client: OktaClient,
        cache: ValidationCache,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        low_headroom: float = 0.2,
        stretch: float = 4.0,
        max_background: int = 16,
        shared: SharedLookups | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self._metrics = metrics
        self._clock = clock
        self._low_headroom = low_headroom
        self._stretch = stretch
        self._max_background = max_background
        self._inflight: dict[str, asyncio.Task[_Fetched]] = {}
        self._background = 0
        self._last_outage_log = 0.0
        self._last_malformed_log = 0.0
        self.shared = shared
        self._writes: set[asyncio.Task[None]] = set()
        if shared is not None:
            client.on_rate_limited.append(self._share_hold)

    async def validate(self, session_id: str, grace: float | None = None) -> Validation:
        """What is known of this session now; `grace` is the caller's fail mode (None: closed)."""
        # Only ids that passed is_session_id() and reached Okta are ever cached, so a hit needs no pattern check.
        freshness, entry = self.cache.lookup(session_id, self._clock())
        if entry is not None:
            if freshness is Freshness.REFRESH:
                self._refresh_in_background(session_id)
            via = "hit" if freshness is Freshness.FRESH else "refresh"
            if entry.session is None:
                via = "negative"
            self._metrics.lookups[via].inc()
            return _from_entry(entry, via)
        if not is_session_id(session_id):
            self._metrics.lookups["invalid_id"].inc()
            return Validation(Verdict.GONE, None, "invalid_id", GONE)
        task = self._inflight.get(session_id)
        via = "coalesced"
        if task is None:
            task = self._fetch(session_id)
            via = "miss"
        fetched = await asyncio.shield(task)
        if isinstance(fetched, _FromFleet):
            via = "shared" if via == "miss" else via
            fetched = fetched.entry
        if isinstance(fetched, Entry):
            self._metrics.lookups[via].inc()
            return _from_entry(fetched, via)
        return self._outage(session_id, fetched, grace)

    def asks_okta(self, session_id: str) -> bool:
        """Whether validating this id now would call Okta: a well-formed id the cache holds nothing servable of,
        and no lookup of it under way (what the caller's budget of unknown ids is spent on)."""
        if session_id in self._inflight or not is_session_id(session_id):
            return False
        return self.cache.lookup(session_id, self._clock())[1] is None

    def forget(self, session_id: str) -> None:
        """Drop what is cached of this session, here and in the fleet's shared cache (a revocation arrived)."""
        self.cache.evict(session_id)
        if self.shared is not None:
            self._write(self.shared.forget((session_id,)))

    def forget_user(self, keys: Iterable[str]) -> int:
        """Drop what is cached of the user's sessions held here, here and in the fleet's shared cache (a user-wide
        revocation arrived); how many there were."""
        ids = self.cache.sessions_of(keys)
        self.cache.evict_user(keys)
        if ids and self.shared is not None:
            self._write(self.shared.forget(ids))
        return len(ids)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)  # each within the store timeout

    # --- fetching ---------------------------------------------------------------------------------------

    def _fetch(self, session_id: str) -> asyncio.Task[_Fetched]:
        lookup = self._ask_okta(session_id) if self.shared is None else self._ask_fleet(self.shared, session_id)
        task = asyncio.get_running_loop().create_task(lookup)
        self._inflight[session_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(session_id, None))
        return task

    def _refresh_in_background(self, session_id: str) -> None:
        if session_id in self._inflight or self._background >= self._max_background:
            return
        self._background += 1
        self._fetch(session_id).add_done_callback(self._background_done)

    def _background_done(self, _: object) -> None:
        self._background -= 1

    async def _ask_okta(self, session_id: str) -> Entry | _Outage:
        try:
            session = await self.client.get_session(session_id)
        except SessionGone:
            return self._stored(self.cache.store_gone(session_id, self._clock()))
        except RateLimited as exc:
            return self._unanswered(session_id, str(exc), exc.reset_at)
        except OktaError as exc:
            return self._unanswered(session_id, str(exc))
        except Exception as exc:  # a bug must not take the request path down with a traceback per request
            log.exception("validating a session failed unexpectedly")
            return self._unanswered(session_id, type(exc).__name__)
        return self._stored(self.cache.store_alive(session, self._clock(), self._current_stretch()))

    def _unanswered(self, session_id: str, reason: str, held_until: float | None = None) -> _Outage:
        self.cache.stop_serving_stale(session_id)
        return _Outage(reason, held_until)

    def _stored(self, entry: Entry) -> Entry:
        self._metrics.cache_entries.set(len(self.cache))
        return entry

    def _current_stretch(self) -> float:
        limit = self.client.rate_limit
        if limit is not None and limit.limit > 0 and limit.remaining < self._low_headroom * limit.limit:
            return self._stretch
        return 1.0

    # --- the fleet's shared cache (store/lookups.py) -------------------------------------------------------

    async def _ask_fleet(self, shared: SharedLookups, session_id: str) -> _Fetched:
        """Another replica's answer if the fleet has one (or is getting one), else Okta's, shared with the fleet."""
        try:
            found = await self._find_or_claim(shared, session_id)
        except StoreUnavailable:
            self._metrics.shared_lookups["unavailable"].inc()
            found = None
        if isinstance(found, Entry):
            return _FromFleet(self._stored(found))
        fetched = await self._ask_okta(session_id)
        if found is not None:
            self._settle(shared, session_id, found, fetched)
        return fetched

    async def _find_or_claim(self, shared: SharedLookups, session_id: str) -> _Found:
        entry = self._adopt(session_id, await shared.look(session_id, _FAMILIES), "hit")
        if entry is not None or self._held():
            return entry
        deadline = time.monotonic() + shared.wait_limit
        while True:
            token = await shared.claim(session_id)
            if token is not None:
                self._metrics.shared_lookups["claimed"].inc()
                return token
            looked = await shared.wait(session_id, _FAMILIES, deadline)
            if looked is None:
                self._metrics.shared_lookups["wait_bound"].inc()
                return None
            entry = self._adopt(session_id, looked, "waited")
            if entry is not None or self._held():
                return entry
            # the claim is gone with nothing shared (its holder could not get an answer): claim it in turn

    def _adopt(self, session_id: str, looked: Looked, outcome: str) -> Entry | None:
        now = self._clock()
        for family in Family:
            until = looked.holds.get(family.value)
            if until is not None:
                self.client.hold_back(family, min(until, now + _LONGEST_HOLD))
        if looked.value is None:
            return None
        answer = fleet.decode(looked.value, session_id)
        if answer is None:
            self._note_malformed()
            return None
        entry = self.cache.adopt(session_id, answer.session, answer.fetched_at, answer.fresh_until, now,
                                 self._stretch)
        if entry is not None:
            self._metrics.shared_lookups[outcome].inc()
        return entry

    def _held(self) -> bool:
        """Whether session reads are held back (a 429 here or on another replica): then nothing is claimed, and
        the client refuses the call without sending it."""
        if self.client.blocked_until(Family.SESSION_READS) > self._clock():
            self._metrics.shared_lookups["held"].inc()
            return True
        return False

    def _settle(self, shared: SharedLookups, session_id: str, token: str, fetched: Entry | _Outage) -> None:
        """Hand our answer to the fleet and release the claim (a 429's hold first, so that nobody who sees the
        claim gone calls Okta), in the background: the request does not wait on Redis."""
        now = self._clock()
        value, ttl = (fleet.encode(fetched), fetched.fresh_until - now) if isinstance(fetched, Entry) else (None, 0.0)
        held = fetched.held_until if isinstance(fetched, _Outage) else None

        async def settle() -> None:
            if held is not None:
                await shared.hold(Family.SESSION_READS.value, held, held - now)
            await shared.settle(session_id, token, value, ttl)

        self._write(settle())

    def _share_hold(self, family: Family, until: float) -> None:
        if self.shared is not None:
            self._write(self.shared.hold(family.value, until, until - self._clock()))

    def _write(self, write: Coroutine[Any, Any, None]) -> None:
        if len(self._writes) >= _MAX_WRITES:
            write.close()  # the fleet does without it: a claim lapses by itself, a value is asked again
            return
        task = asyncio.get_running_loop().create_task(_quietly(write))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _note_malformed(self) -> None:
        self._metrics.shared_lookups["malformed"].inc()
        now = time.monotonic()
        if now - self._last_malformed_log >= _OUTAGE_LOG_INTERVAL:
            self._last_malformed_log = now
            log.warning("the fleet's shared cache holds a value this gateway cannot read; asking Okta instead")

    # --- outages ----------------------------------------------------------------------------------------

    def _outage(self, session_id: str, outage: _Outage, grace: float | None) -> Validation:
        now = self._clock()
        mode = "closed" if grace is None else "grace"
        if grace is not None:
            last = self.cache.last_alive(session_id, now)
            if last is not None and last.session is not None and last.session.active and now <= last.good_until + grace:
                self._note_outage(outage, mode)
                self._metrics.lookups["grace"].inc()
                return Validation(Verdict.ALIVE, last.session, "grace", last.view)
        self._note_outage(outage, mode)
        self._metrics.lookups["unavailable"].inc()
        return Validation(Verdict.UNAVAILABLE, None, "unavailable")

    def _note_outage(self, outage: _Outage, mode: str) -> None:
        self._metrics.fail_open.labels(mode).inc()
        now = time.monotonic()
        if now - self._last_outage_log >= _OUTAGE_LOG_INTERVAL:
            self._last_outage_log = now
            log.warning("Okta cannot validate sessions (%s); answering by fail mode %s", outage.reason, mode)


async def _quietly(write: Coroutine[Any, Any, None]) -> None:
    """A write to the shared cache: Redis away or slow loses it (RedisLink logs and counts that), nothing else."""
    try:
        await write
    except StoreUnavailable:
        pass
    except Exception:  # a bug in a background write must not go unseen, nor take anything down
        log.exception("writing to the fleet's shared cache failed unexpectedly")


def _from_entry(entry: Entry, via: str) -> Validation:
    if entry.session is None:
        return Validation(Verdict.GONE, None, via, GONE, entry)
    return Validation(Verdict.ALIVE, entry.session, via, entry.view, entry)
