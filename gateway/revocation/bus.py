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
4. observes the revocation latency (source time to action) and hands the revocation to listeners (a later
   issue fans it out to other replicas through them).
The interface is one method, `publish()`, and one list, `listeners`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Acted:
    revocation: Revocation
    acted_at: float

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
        self.listeners: list[Callable[[Revocation], None]] = []
        self.recent: deque[Acted] = deque(maxlen=remember)  # for the status page

    def publish(self, revocation: Revocation) -> Acted:
        now = self._clock()
        r = revocation
        if r.session_id:
            self.store.end_session(r.session_id, min(r.happened_at or now, now))
            if self._validator is not None:
                self._validator.forget(r.session_id)
            self._metrics.sockets_closed.inc(self._sockets.end(r.session_id))
        keys = r.user_keys()
        cutoff = min(r.cutoff if r.cutoff is not None else r.happened_at or now, now)
        for key in keys:
            self.store.end_user(key, cutoff, in_okta=r.in_okta)
        if keys:
            if self._validator is not None:
                self._validator.cache.evict_user(keys)
            self._metrics.sockets_closed.inc(self._sockets.end_user(keys))
        acted = Acted(r, now)
        self.recent.appendleft(acted)
        self._metrics.revocations.labels(r.source).inc()
        if acted.latency is not None:
            self._metrics.revocation_latency.labels(r.source).observe(acted.latency)
        audit.info("revocation source=%s reason=%s scope=%s session=%s user=%s login=%s happened_at=%s "
                   "acted_at=%.3f", r.source, r.reason, "user" if r.user_wide else "session", r.session_id or "-",
                   r.user_id or "-", r.login or "-",
                   f"{r.happened_at:.3f}" if r.happened_at is not None else "-", now)
        for listener in self.listeners:
            listener(r)
        return acted
