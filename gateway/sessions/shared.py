"""What one replica tells the others of Okta's answer about a session (the fleet's shared cache, store/lookups.py),
and reading it back as the untrusted input it is.

Rules of this module:
- Pure: no I/O, no clock. Times are epoch seconds, as in cache.py.
- A value is compact JSON: `{"v": 1, "fetchedAt": s, "freshUntil": s, "session": {…}}` for a session Okta knows,
  `{"v": 1, "fetchedAt": s, "freshUntil": s, "gone": true}` for one it does not (404). The session is written in
  Okta's own shape (userId, login, status, expiresAt, createdAt, amr, idp.type), without its id (the key names it,
  and a value holds no session id), and read back with Okta's own parser (okta/model.py): a shared answer passes
  exactly the checks Okta's answer passed.
- Reading is defensive: a value longer than MAX_LENGTH, not JSON, with NaN or Infinity, of another version, with a
  field missing or mistyped, or a session Okta's parser refuses, is no value: a miss, and the caller asks Okta.
- How long an answer is then served is not the writer's to say alone: `ValidationCache.adopt` holds it to this
  replica's own TTL from when it was fetched, and to the session's expiresAt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..okta.model import MalformedAnswer, OktaSession, parse_session
from .cache import Entry

VERSION = 1
MAX_LENGTH = 4096  # an Okta Session is a few hundred bytes


@dataclass(frozen=True, slots=True)
class Shared:
    session: OktaSession | None  # None: Okta said the session is gone
    fetched_at: float
    fresh_until: float


def encode(entry: Entry) -> str:
    body: dict[str, Any] = {"v": VERSION, "fetchedAt": entry.fetched_at, "freshUntil": entry.fresh_until}
    if entry.session is None:
        body["gone"] = True
    else:
        body["session"] = _okta_shape(entry.session)
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def decode(raw: str, session_id: str) -> Shared | None:
    """The answer a value holds about `session_id`, or None when it is not a value this module wrote."""
    if len(raw) > MAX_LENGTH:
        return None
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or type(body.get("v")) is not int or body["v"] != VERSION:
        return None
    fetched_at, fresh_until = _time(body.get("fetchedAt")), _time(body.get("freshUntil"))
    if fetched_at is None or fresh_until is None or fresh_until < fetched_at:
        return None
    if body.get("gone") is True and "session" not in body:
        return Shared(None, fetched_at, fresh_until)
    data = body.get("session")
    if not isinstance(data, dict) or "id" in data or "gone" in body:
        return None
    try:
        return Shared(parse_session({**data, "id": session_id}), fetched_at, fresh_until)
    except (MalformedAnswer, ValueError, TypeError, OverflowError):
        return None


def _okta_shape(session: OktaSession) -> dict[str, Any]:
    shape: dict[str, Any] = {"userId": session.user_id, "login": session.login, "status": session.status,
                             "expiresAt": _iso(session.expires_at), "amr": list(session.amr)}
    if session.created_at is not None:
        shape["createdAt"] = _iso(session.created_at)
    if session.idp_type is not None:
        shape["idp"] = {"type": session.idp_type}
    return shape


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        at = float(value)
    except OverflowError:
        return None
    return at if math.isfinite(at) and at > 0 else None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a time")
