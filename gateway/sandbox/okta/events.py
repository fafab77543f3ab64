"""System Log events and event hooks: what the org records, and the envelope it POSTs (okta-reference.md).

Pure values: building events and envelopes needs no I/O. Sending them is hooks.py's job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .timefmt import iso

Event = dict[str, Any]

SESSION_START = "user.session.start"
SESSION_END = "user.session.end"
SESSION_CLEAR = "user.session.clear"
SSO = "user.authentication.sso"
SUSPEND = "user.lifecycle.suspend"
DEACTIVATE = "user.lifecycle.deactivate"
UNIVERSAL_LOGOUT = "user.authentication.universal_logout"

DISPLAY_MESSAGES = {
    SESSION_START: "User login to Okta",
    SESSION_END: "User logout from Okta",
    SESSION_CLEAR: "Clear user session",
    SSO: "User single sign on to app",
    SUSPEND: "Suspend Okta user",
    DEACTIVATE: "Deactivate Okta user",
    UNIVERSAL_LOGOUT: "Universal Logout of the user from an app",
}


@dataclass(eq=False)
class EventHook:
    """A registered hook. Okta sends events only to an ACTIVE hook that passed its one-time verification."""

    id: str
    url: str
    event_types: frozenset[str]
    auth_header: str
    secret: str = field(repr=False)
    status: str = "ACTIVE"
    verified: bool = False

    def wants(self, event_type: str) -> bool:
        return self.status == "ACTIVE" and self.verified and event_type in self.event_types

    def auth_headers(self) -> dict[str, str]:
        return {self.auth_header: self.secret} if self.auth_header and self.secret else {}


@dataclass(slots=True)
class Attempt:
    """One POST of an envelope: the receiver's status, or None and what went wrong (timeout, refused, …)."""

    status: int | None
    error: str | None = None


@dataclass(eq=False)
class Delivery:
    """One envelope sent to one hook (a duplicate sent on purpose is a Delivery of its own, copy 2)."""

    hook_id: str
    event_id: str  # the envelope's eventId
    event_uuids: list[str]
    event_types: list[str]
    copy: int = 1
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(a.status is not None and 200 <= a.status < 300 for a in self.attempts)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a user signing in or out, or the admin who owns the API token."""

    id: str
    alternate_id: str
    display_name: str
    type: str = "User"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "alternateId": self.alternate_id, "displayName": self.display_name,
                "detailEntry": None}


def make_event(
    event_type: str,
    *,
    published: datetime,
    actor: Actor,
    targets: list[Actor],
    external_session_id: str,
    transaction_id: str,
    ended_session_id: str | None = None,
) -> Event:
    """An event as the System Log and hooks show it; EndedSessionId only for a user.session.end that names one."""
    debug_data: dict[str, Any] = {}
    if ended_session_id is not None:
        debug_data["EndedSessionId"] = ended_session_id
    return {
        "uuid": str(uuid.uuid4()),
        "published": iso(published),
        "eventType": event_type,
        "version": "0",
        "severity": "INFO",
        "displayMessage": DISPLAY_MESSAGES.get(event_type, event_type),
        "actor": actor.as_json(),
        "client": None,
        "outcome": {"result": "SUCCESS", "reason": None},
        "target": [t.as_json() for t in targets],
        "transaction": {"type": "WEB", "id": transaction_id, "detail": {}},
        "authenticationContext": {"authenticationStep": 0, "externalSessionId": external_session_id},
        "debugContext": {"debugData": debug_data},
    }


def envelope(*, issuer: str, hook: EventHook, events: list[Event], now: datetime) -> dict[str, Any]:
    """The body of one delivery POST (okta-reference.md, "Event hooks")."""
    return {
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": f"{issuer}/api/v1/eventHooks/{hook.id}",
        "eventId": str(uuid.uuid4()),
        "eventTime": iso(now),
        "contentType": "application/json",
        "data": {"events": events},
    }
