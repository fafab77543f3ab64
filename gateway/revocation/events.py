"""What an Okta event hook delivery means for sessions: events in, revocations out.

Rules of this module (okta-reference.md, "Event hooks"):
- Pure: JSON values in, `Revocation`s out; no aiohttp, no I/O, no clock. Anything malformed is skipped, never
  raised: one bad event must not lose the others of its delivery.
- `user.session.end` ends one session: the one `debugContext.debugData.EndedSessionId` names when present (reported,
  unconfirmed); without it, `authenticationContext.externalSessionId`, but only when the user ended their own
  session (the actor is the user, no other User among the targets): for an admin or API end that id is the admin's
  session, not the ended one, and the next lookup will find the session gone anyway.
- `user.session.clear`, `user.lifecycle.suspend` and `user.lifecycle.deactivate` end every session of the user
  named by the `User` target (else the actor): a watermark at the event's `published` time, so that bindings
  made before it die and later ones live, whatever order the deliveries come in.
- Every other event type is ignored. Ids are checked against Okta's patterns before they go anywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..okta.ids import is_session_id, is_user_id
from .bus import Revocation
from .refusal import MAX_LOGIN, short_text

SESSION_END = "user.session.end"
USER_WIDE = {"user.session.clear": "user_sessions_cleared", "user.lifecycle.suspend": "user_suspended",
             "user.lifecycle.deactivate": "user_deactivated"}


def events_of(delivery: Any) -> list[dict[str, Any]]:
    data = delivery.get("data") if isinstance(delivery, dict) else None
    events = data.get("events") if isinstance(data, dict) else None
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def revocation_of(event: dict[str, Any]) -> Revocation | None:
    kind = event.get("eventType")
    published = _time(event.get("published"))
    if kind == SESSION_END:
        session_id = _ended_session(event)
        if session_id is None:
            return None
        user = _user(event)
        return Revocation("event_hook", "okta_session_ended", session_id, user[0] if user else None,
                          user[1] if user else None, published)
    reason = USER_WIDE.get(kind) if isinstance(kind, str) else None
    user = _user(event) if reason else None
    if reason is None or user is None:
        return None
    return Revocation("event_hook", reason, None, user[0], user[1], published)


def _ended_session(event: dict[str, Any]) -> str | None:
    debug = _get(event, "debugContext", "debugData")
    ended = debug.get("EndedSessionId") if isinstance(debug, dict) else None
    if is_session_id(ended):
        return str(ended)
    if not _own_sign_out(event):
        return None
    context = event.get("authenticationContext")
    external = context.get("externalSessionId") if isinstance(context, dict) else None
    return str(external) if is_session_id(external) else None


def _own_sign_out(event: dict[str, Any]) -> bool:
    actor = event.get("actor")
    if not isinstance(actor, dict) or actor.get("type") != "User":
        return False
    others = [t for t in _targets(event) if t.get("type") == "User" and t.get("id") != actor.get("id")]
    return not others


def _user(event: dict[str, Any]) -> tuple[str, str | None] | None:
    """(user id, login) of the user the event is about: the User target, else a User actor."""
    candidates = [t for t in _targets(event) if t.get("type") == "User"]
    actor = event.get("actor")
    if not candidates and isinstance(actor, dict) and actor.get("type") == "User":
        candidates = [actor]
    for who in candidates:
        if is_user_id(who.get("id")):
            login = who.get("alternateId")
            return str(who["id"]), login if short_text(login, MAX_LOGIN) and "@" in login else None
    return None


def _targets(event: dict[str, Any]) -> list[dict[str, Any]]:
    targets = event.get("target")
    return [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # Okta's times are UTC
