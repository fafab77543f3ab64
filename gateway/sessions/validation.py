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
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..metrics import Metrics
from ..okta.client import OktaClient, OktaError, SessionGone
from ..okta.ids import is_session_id
from ..okta.model import OktaSession
from .cache import GONE, UNAVAILABLE, Entry, Freshness, ValidationCache
from .policy import OktaView

log = logging.getLogger("gateway.validation")

_OUTAGE_LOG_INTERVAL = 10.0


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

    def __init__(self, reason: str) -> None:
        self.reason = reason


_Fetched = Entry | _Outage


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
        """Drop what is cached of this session (a revocation arrived)."""
        self.cache.evict(session_id)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- fetching ---------------------------------------------------------------------------------------

    def _fetch(self, session_id: str) -> asyncio.Task[_Fetched]:
        task = asyncio.get_running_loop().create_task(self._ask_okta(session_id))
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

    async def _ask_okta(self, session_id: str) -> _Fetched:
        try:
            session = await self.client.get_session(session_id)
        except SessionGone:
            return self._stored(self.cache.store_gone(session_id, self._clock()))
        except OktaError as exc:
            return self._unanswered(session_id, str(exc))
        except Exception as exc:  # a bug must not take the request path down with a traceback per request
            log.exception("validating a session failed unexpectedly")
            return self._unanswered(session_id, type(exc).__name__)
        return self._stored(self.cache.store_alive(session, self._clock(), self._current_stretch()))

    def _unanswered(self, session_id: str, reason: str) -> _Outage:
        self.cache.stop_serving_stale(session_id)
        return _Outage(reason)

    def _stored(self, entry: Entry) -> Entry:
        self._metrics.cache_entries.set(len(self.cache))
        return entry

    def _current_stretch(self) -> float:
        limit = self.client.rate_limit
        if limit is not None and limit.limit > 0 and limit.remaining < self._low_headroom * limit.limit:
            return self._stretch
        return 1.0

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


def _from_entry(entry: Entry, via: str) -> Validation:
    if entry.session is None:
        return Validation(Verdict.GONE, None, via, GONE, entry)
    return Validation(Verdict.ALIVE, entry.session, via, entry.view, entry)
