"""The legacy app's memory: its own sessions, the Assertion IDs it has used, the AuthnRequests it has sent.

Rules:
- A session is a random url-safe cookie value → login, attributes, created, last_seen. It lives until it is
  destroyed (logout) or idle for longer than the idle limit; an idle one is dropped when next looked at, and
  `sessions` is pruned on every new sign-in, so tests may read `sessions` directly.
- A used Assertion ID is remembered until its NotOnOrAfter (plus skew): a second use is a replay.
- An AuthnRequest ID is good for one Response within REQUEST_LIFETIME.
No aiohttp here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

REQUEST_LIFETIME = timedelta(minutes=10)


@dataclass(eq=False)
class LegacySession:
    login: str
    attributes: dict[str, str]
    created: datetime
    last_seen: datetime


@dataclass(eq=False)
class LegacyState:
    idle: timedelta
    sessions: dict[str, LegacySession] = field(default_factory=dict)  # cookie value -> session
    logouts: int = 0  # sessions ended by the logout path
    used_assertions: dict[str, datetime] = field(default_factory=dict)  # Assertion ID -> forget after
    pending_requests: dict[str, datetime] = field(default_factory=dict)  # AuthnRequest ID -> issued at

    def create(self, login: str, attributes: dict[str, str], now: datetime) -> str:
        """A new session; returns its cookie value."""
        self._prune(now)
        cookie = secrets.token_urlsafe(32)
        self.sessions[cookie] = LegacySession(login, dict(attributes), now, now)
        return cookie

    def lookup(self, cookie: str | None, now: datetime, *, touch: bool = True) -> LegacySession | None:
        """The live session of this cookie value (and the request counts as activity), or None."""
        session = self.sessions.get(cookie) if cookie else None
        if session is None or cookie is None:
            return None
        if now - session.last_seen > self.idle:
            del self.sessions[cookie]
            return None
        if touch:
            session.last_seen = max(session.last_seen, now)
        return session

    def rotate(self, cookie: str) -> str | None:
        """The same session under a new cookie value (as servlet containers change the session id); None if none."""
        session = self.sessions.pop(cookie, None)
        if session is None:
            return None
        fresh = secrets.token_urlsafe(32)
        self.sessions[fresh] = session
        return fresh

    def destroy(self, cookie: str | None) -> bool:
        """End the session of this cookie value; whether there was one."""
        return self.sessions.pop(cookie, None) is not None if cookie else False

    def use_assertion(self, assertion_id: str, forget_after: datetime, now: datetime) -> bool:
        """Record an Assertion ID; False when it was used before (a replay)."""
        self.used_assertions = {k: v for k, v in self.used_assertions.items() if v >= now}
        if assertion_id in self.used_assertions:
            return False
        self.used_assertions[assertion_id] = forget_after
        return True

    def new_request_id(self, now: datetime) -> str:
        self.pending_requests = {k: v for k, v in self.pending_requests.items() if now - v <= REQUEST_LIFETIME}
        request_id = "_" + secrets.token_hex(16)
        self.pending_requests[request_id] = now
        return request_id

    def take_request(self, request_id: str, now: datetime) -> bool:
        """Whether this AuthnRequest was sent by us, recently, and not answered yet (it is used up either way)."""
        issued = self.pending_requests.pop(request_id, None)
        return issued is not None and now - issued <= REQUEST_LIFETIME

    def _prune(self, now: datetime) -> None:
        for cookie in [c for c, s in self.sessions.items() if now - s.last_seen > self.idle]:
            del self.sessions[cookie]
