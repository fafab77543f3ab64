"""The validation cache: what the gateway last learnt from Okta about each session id, and for how long it holds.

Rules of this module:
- Pure: no I/O, no asyncio, no clock of its own. Every call takes `now` (epoch seconds); validation.py owns the
  calls to Okta, the single-flight and the background refreshes.
- An entry of a live session is fresh until the earlier of `fetched_at + ttl × stretch` and the session's own
  `expiresAt`: the cache never vouches for a session past the moment Okta would end it.
- For `revalidate` seconds after its TTL (never past `expiresAt`) a live entry is still served, and the lookup says
  it wants a refresh (stale-while-revalidate). The window lies after the TTL, not inside it, so that a session in
  steady use costs one Okta call per TTL, and a session ended in Okta is served at most for the TTL plus the one
  round trip that revalidates it.
- An entry of a gone session (404) holds for `negative_ttl`.
- `stretch` is 1 normally; the caller raises it while Okta's rate-limit headroom is low, so that fewer lookups
  go out.
- When Okta cannot answer a revalidation, the entry stops being served past its TTL, so that the route's fail
  mode decides the next request, as for any miss.
- A live entry past its end is kept (not served) as the session's last known good state, for a route's `grace`
  fail mode while Okta is unavailable, until it is replaced or evicted, and never past the session's expiresAt.
- An entry another replica made (the fleet's shared cache, `adopt`) keeps its fetch time, so that the fleet
  revalidates a session once per TTL, and is held to this cache's own TTL and to the session's expiresAt.
- At most `max_entries` entries; the least recently used goes first.
- Each entry of a live session is indexed under its user's keys (`user_keys`: user id, lower-cased login) while
  it is held, so that a user-wide revocation (suspend, admin clear, Universal Logout) evicts every cached session
  of the user (`evict_user`): a user's sessions must not look alive to a sign-in after the user was ended. The
  index holds only sessions that are in the cache, so it is bounded as the cache is.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..okta.model import OktaSession
from ..settings import CachePolicy
from ..store import user_keys
from .policy import OktaState, OktaView


class Freshness(enum.Enum):
    FRESH = "fresh"  # serve it
    REFRESH = "refresh"  # serve it, and refresh it in the background
    MISSING = "missing"  # nothing usable: ask Okta


@dataclass(frozen=True, slots=True)
class Entry:
    session: OktaSession | None  # None: Okta said the session is gone
    fetched_at: float
    fresh_until: float
    good_until: float  # served until then; from fresh_until on, with a refresh
    view: OktaView  # what decide() is told of the session, made once per entry rather than once per request


class ValidationCache:
    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        # by session id: read them (the enforcer's warm hit asks whether the entry it kept is still the one held:
        # an entry is never changed, only replaced or evicted), change them here
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}  # user key -> ids of the user's live sessions held here

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, session_id: str, now: float) -> tuple[Freshness, Entry | None]:
        entry = self.entries.get(session_id)
        if entry is None or now >= entry.good_until:
            return Freshness.MISSING, None
        self.entries.move_to_end(session_id)
        if now >= entry.fresh_until:
            return Freshness.REFRESH, entry
        return Freshness.FRESH, entry

    def last_alive(self, session_id: str, now: float) -> Entry | None:
        """The last entry of a live session, even past its end, if the session's own expiresAt is still ahead."""
        entry = self.entries.get(session_id)
        if entry is None or entry.session is None or now >= entry.session.expires_at:
            return None
        return entry

    def store_alive(self, session: OktaSession, now: float, stretch: float = 1.0) -> Entry:
        fresh_until = min(now + self.policy.ttl * stretch, session.expires_at)
        good_until = min(fresh_until + self.policy.revalidate, session.expires_at)
        return self._put(session.id, Entry(session, now, fresh_until, good_until, view_of(session)))

    def store_gone(self, session_id: str, now: float) -> Entry:
        until = now + self.policy.negative_ttl
        return self._put(session_id, Entry(None, now, until, until, GONE))

    def adopt(self, session_id: str, session: OktaSession | None, fetched_at: float, fresh_until: float, now: float,
              stretch: float = 1.0) -> Entry | None:
        """Another replica's answer from Okta (the fleet's shared cache), held to this cache's own bounds: fresh until
        the earliest of what the writer said, this cache's TTL (× `stretch`, the most it ever stretches; negative_ttl
        for a gone session) from when it was fetched, and the session's expiresAt. None, and nothing kept, when
        that moment is not ahead: a miss."""
        fetched_at = min(fetched_at, now)
        if session is None:
            until = min(fresh_until, fetched_at + self.policy.negative_ttl)
            return self._put(session_id, Entry(None, fetched_at, until, until, GONE)) if until > now else None
        fresh = min(fresh_until, fetched_at + self.policy.ttl * stretch, session.expires_at)
        if fresh <= now:
            return None
        good = min(fresh + self.policy.revalidate, session.expires_at)
        return self._put(session_id, Entry(session, fetched_at, fresh, good, view_of(session)))

    def stop_serving_stale(self, session_id: str) -> None:
        """A revalidation failed: the entry is no longer served past its TTL (it stays for `last_alive`)."""
        entry = self.entries.get(session_id)
        if entry is not None and entry.good_until > entry.fresh_until:
            self.entries[session_id] = replace(entry, good_until=entry.fresh_until)

    def evict(self, session_id: str) -> None:
        self._unindex(self.entries.pop(session_id, None))

    def evict_user(self, keys: Iterable[str]) -> int:
        """Drop every entry of the user's sessions (a user-wide revocation arrived); how many there were."""
        ids = self.sessions_of(keys)
        for session_id in ids:
            self.evict(session_id)
        return len(ids)

    def sessions_of(self, keys: Iterable[str]) -> set[str]:
        """The ids of the user's sessions held here, by the user's keys (`user_keys`)."""
        return set().union(*(self._by_user.get(key, ()) for key in keys))

    def _put(self, session_id: str, entry: Entry) -> Entry:
        self._unindex(self.entries.get(session_id))
        self.entries[session_id] = entry
        self.entries.move_to_end(session_id)
        if entry.session is not None:
            for key in user_keys(entry.session.user_id, entry.session.login):
                self._by_user.setdefault(key, set()).add(session_id)
        while len(self.entries) > self.policy.max_entries:
            self._unindex(self.entries.popitem(last=False)[1])
        return entry

    def _unindex(self, entry: Entry | None) -> None:
        if entry is None or entry.session is None:
            return
        session_id = entry.session.id
        for key in user_keys(entry.session.user_id, entry.session.login):
            ids = self._by_user.get(key)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del self._by_user[key]


GONE = OktaView(OktaState.GONE)
UNAVAILABLE = OktaView(OktaState.UNAVAILABLE)


def view_of(session: OktaSession) -> OktaView:
    state = OktaState.SIGNED_IN if session.active else OktaState.NOT_SIGNED_IN
    return OktaView(state, session.user_id, session.login, session.expires_at)
