"""The revocation bus: every end of an Okta session or of a user's sessions, whatever its source, goes through here.

Sources: a lookup that found the session gone (`lookup`), an Okta event hook (`event_hook`), Universal Logout
(`universal_logout`), the app's logout (`app_logout`), an operator (`operator`). Publishing one:
1. records it in the store (a tombstone for a session, a watermark for a user), so that every binding to it is void
   from the next request on, whatever the cache holds;
2. evicts the validation cache entries of the session (or of every session of the user: a suspended or cleared
   user's sessions must not look alive to the next sign-in, which binds what the cache vouches for) and closes
   their open WebSockets;
3. writes one audit line (logger `gateway.audit`): what, why, from which source, when the source says it
   happened, when the gateway acted;
4. observes the revocation latency (source time to action) and hands what was acted on (`Acted`: the revocation
   and when) to the listeners (the fan-out writes it to the fleet's store through them).
`publish()` is the one entry point of every local source, and the only one that calls the listeners.

A revocation another replica took comes in through `apply_remote()`: steps 1 to 3 on this process (the audit line
says `fanned_in=<replica>`), with the times that replica used (its `acted_at` caps them, exactly as it did there),
and no listener is called: a fanned-in revocation is never fanned out again (no echo, no loop). A whole-state
reload (a gap too old to replay, Redis back empty) goes through `learn()`: only what is new to this process is
recorded, and only for that are cache entries evicted and sockets closed; no audit line per record.

With a fleet's shared cache (sessions/validation.py), a session's end drops its shared entry too, from the replica
that took it and from each that fans it in (one delete each: a lookup in flight elsewhere may have put it back);
a user's end drops, on every replica, the shared entries of the sessions that replica holds. A reload evicts
only this process's entries (a start-up load would otherwise delete once per tombstone).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..logs import shorten
from ..metrics import Metrics
from ..sessions.sockets import OpenSockets
from ..sessions.validation import SessionValidator
from ..store import RevocationStore, user_keys

audit = logging.getLogger("gateway.audit")

SOURCES = ("lookup", "event_hook", "universal_logout", "app_logout", "operator")


@dataclass(frozen=True, slots=True)
class Revocation:
    """One session ended (`session_id`), or every session of a user: when no session is named, or `all_sessions`.

    With a session id, `user_id` and `login` only say whose session it was (for the audit line): one session's end
    must not end the user's other sessions.
    """

    source: str
    reason: str
    session_id: str | None = None
    user_id: str | None = None
    login: str | None = None
    happened_at: float | None = None  # when the source says it happened (epoch seconds)
    all_sessions: bool = False  # with a session id: every other session of the user ends too
    cutoff: float | None = None  # user-wide: bindings made before this die (default happened_at; never past now)
    in_okta: bool = True  # user-wide: Okta ended every session of the user (Universal Logout does not say so)

    @property
    def user_wide(self) -> bool:
        return not self.session_id or self.all_sessions

    def user_keys(self) -> list[str]:
        """The store keys of the user's watermark: user id and lower-cased login (none unless user-wide)."""
        if not self.user_wide:
            return []
        return list(user_keys(self.user_id, self.login))

    def ended_at(self, acted_at: float) -> float:
        """When the session is recorded as ended: the source's time, never past the action."""
        return min(self.happened_at or acted_at, acted_at)

    def user_cutoff(self, acted_at: float) -> float:
        """User-wide: bindings made before this are void (the cutoff, else the source's time; never past the action:
        a binding made after it would otherwise die too)."""
        return min(self.cutoff if self.cutoff is not None else self.happened_at or acted_at, acted_at)


@dataclass(frozen=True, slots=True)
class Acted:
    revocation: Revocation
    acted_at: float  # by the replica that took it (what its times are capped at)
    origin: str | None = None  # the replica it was fanned in from; None when taken here

    @property
    def latency(self) -> float | None:
        r = self.revocation
        return None if r.happened_at is None else max(self.acted_at - r.happened_at, 0.0)


class RevocationBus:
    def __init__(self, store: RevocationStore, validator: SessionValidator | None, sockets: OpenSockets,
                 metrics: Metrics, *, clock: Callable[[], float] = time.time, remember: int = 50) -> None:
        self.store = store
        self._validator = validator
        self._sockets = sockets
        self._metrics = metrics
        self._clock = clock
        self.listeners: list[Callable[[Acted], None]] = []
        self.recent: deque[Acted] = deque(maxlen=remember)  # for the status page

    def publish(self, revocation: Revocation) -> Acted:
        """A revocation taken by this process: acted on here, then handed to every listener."""
        now = self._clock()
        r = revocation
        self._act(r, now)
        acted = Acted(r, now)
        self.recent.appendleft(acted)
        self._metrics.revocations.labels(r.source).inc()
        if acted.latency is not None:
            self._metrics.revocation_latency.labels(r.source).observe(acted.latency)
        self._audit(r, now, None)
        for listener in self.listeners:
            listener(acted)
        return acted

    def apply_remote(self, revocation: Revocation, acted_at: float, origin: str) -> Acted:
        """A revocation that replica `origin` took at its `acted_at`: acted on here as it was there, and no listener
        hears of it (it is already in the fleet's store)."""
        self._act(revocation, acted_at)
        now = self._clock()
        self._audit(revocation, now, origin)
        acted = Acted(revocation, now, origin)
        self.recent.appendleft(acted)
        return acted

    def learn(self, sessions: Mapping[str, float], users: Mapping[str, float], okta: Mapping[str, float]) -> int:
        """Records read from the fleet's store in a whole-state reload: what this process did not know yet is
        recorded, its cache entries evicted and its sockets closed; how many records were new."""
        store = self.store
        ended = [s for s in sessions if store.session_ended(s) is None]
        for session_id in ended:
            store.end_session(session_id, sessions[session_id])
            self._session_ended(session_id, shared=False)
        advanced = [key for key, before in users.items() if before > store.user_ended_before(key)]
        for key in advanced:
            store.end_user(key, users[key])
        in_okta = [key for key, before in okta.items() if before > store.okta_ended_before(key)]
        for key in in_okta:
            store.end_user(key, okta[key], in_okta=True)
        if advanced:
            self._user_ended(advanced)
        return len(ended) + len(advanced) + len(in_okta)

    def _act(self, r: Revocation, acted_at: float) -> None:
        if r.session_id:
            self.store.end_session(r.session_id, r.ended_at(acted_at))
            self._session_ended(r.session_id)
        keys = r.user_keys()
        cutoff = r.user_cutoff(acted_at)
        for key in keys:
            self.store.end_user(key, cutoff, in_okta=r.in_okta)
        if keys:
            self._user_ended(keys)

    def _session_ended(self, session_id: str, *, shared: bool = True) -> None:
        """Its cache entry goes (with `shared`, from the fleet's shared cache too), its sockets close."""
        if self._validator is not None:
            if shared:
                self._validator.forget(session_id)
            else:
                self._validator.cache.evict(session_id)
        self._metrics.sockets_closed.inc(self._sockets.end(session_id))

    def _user_ended(self, keys: list[str]) -> None:
        """The entries of the user's sessions that this process holds go, here and from the shared cache (each
        replica drops those it holds), and their sockets close."""
        if self._validator is not None:
            self._validator.forget_user(keys)
        self._metrics.sockets_closed.inc(self._sockets.end_user(keys))

    @staticmethod
    def _audit(r: Revocation, now: float, origin: str | None) -> None:
        """The audit line: its facts in the message and as fields; the session id shortened, as everywhere."""
        scope, session = "user" if r.user_wide else "session", shorten(r.session_id)
        audit.info("revocation source=%s reason=%s scope=%s session=%s user=%s login=%s happened_at=%s "
                   "acted_at=%.3f%s", r.source, r.reason, scope, session or "-", r.user_id or "-", r.login or "-",
                   f"{r.happened_at:.3f}" if r.happened_at is not None else "-", now,
                   f" fanned_in={origin}" if origin else "",
                   extra={"event": "revocation", "source": r.source, "reason": r.reason, "scope": scope,
                          "session": session, "user_id": r.user_id, "login": r.login, "happened_at": r.happened_at,
                          "acted_at": now, "fanned_in": origin})
