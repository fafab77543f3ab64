"""The revocation bus: every end of an Okta session or of a user's sessions, whatever its source, goes through here.

Sources: a lookup that found the session gone (`lookup`), an Okta event hook (`event_hook`), Universal Logout
(`universal_logout`), the app's logout (`app_logout`), an operator (`operator`). Publishing one:
1. records it in the store (a tombstone for a session, a watermark for a user), so that every binding to it is void
   from the next request on, whatever the cache holds;
2. evicts the session's validation cache entry and closes its open WebSockets;
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
from ..store import RevocationStore

audit = logging.getLogger("gateway.audit")

SOURCES = ("lookup", "event_hook", "universal_logout", "app_logout", "operator")


@dataclass(frozen=True, slots=True)
class Revocation:
    source: str
    reason: str
    session_id: str | None = None
    user_id: str | None = None
    login: str | None = None
    happened_at: float | None = None  # when the source says it happened (epoch seconds)

    def user_keys(self) -> list[str]:
        return [k for k in (self.user_id, self.login.lower() if self.login else None) if k]


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
        for key in r.user_keys():
            self.store.end_user(key, min(r.happened_at or now, now))
        if r.user_keys():
            self._metrics.sockets_closed.inc(self._sockets.end_user(r.user_keys()))
        acted = Acted(r, now)
        self.recent.appendleft(acted)
        self._metrics.revocations.labels(r.source).inc()
        if acted.latency is not None:
            self._metrics.revocation_latency.labels(r.source).observe(acted.latency)
        audit.info("revocation source=%s reason=%s session=%s user=%s login=%s happened_at=%s acted_at=%.3f",
                   r.source, r.reason, r.session_id or "-", r.user_id or "-", r.login or "-",
                   f"{r.happened_at:.3f}" if r.happened_at is not None else "-", now)
        for listener in self.listeners:
            listener(r)
        return acted
