"""Typed values of Okta's Sessions API, parsed leniently: unknown fields are ignored, missing ones defaulted.

Only `id`, `userId`, `status` and `expiresAt` are required: without them an answer cannot be used to decide
anything, and it is treated as a broken answer, not as a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MalformedAnswer(ValueError):
    """Okta answered 200 with something that is not a usable Session object."""


@dataclass(frozen=True, slots=True)
class OktaSession:
    id: str
    user_id: str
    login: str
    status: str  # ACTIVE, MFA_REQUIRED or MFA_ENROLL; only ACTIVE is a fully established session
    expires_at: float  # epoch seconds
    created_at: float | None
    amr: tuple[str, ...]
    idp_type: str | None

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The X-Rate-Limit-* headers of the last answer: calls allowed per window, left, and when it resets."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds


def parse_session(data: Any) -> OktaSession:
    if not isinstance(data, dict):
        raise MalformedAnswer("the answer is not a JSON object")
    try:
        sid, user_id, status = data["id"], data["userId"], data["status"]
        expires_at = parse_time(data["expiresAt"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedAnswer(f"a Session without a usable {exc}") from None
    if not all(isinstance(v, str) for v in (sid, user_id, status)):
        raise MalformedAnswer("a Session whose id, userId or status is not a string")
    amr = data.get("amr")
    idp = data.get("idp")
    created = data.get("createdAt")
    return OktaSession(
        id=sid,
        user_id=user_id,
        login=data["login"] if isinstance(data.get("login"), str) else "",
        status=status,
        expires_at=expires_at,
        created_at=_optional_time(created),
        amr=tuple(a for a in amr if isinstance(a, str)) if isinstance(amr, list) else (),
        idp_type=idp.get("type") if isinstance(idp, dict) and isinstance(idp.get("type"), str) else None,
    )


def parse_time(value: Any) -> float:
    """Okta's ISO 8601 UTC timestamps ("2016-01-03T09:13:17.000Z") as epoch seconds."""
    if not isinstance(value, str):
        raise ValueError("timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a zone")
    return parsed.timestamp()


def _optional_time(value: Any) -> float | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def parse_rate_limit(headers: Any) -> RateLimit | None:
    try:
        return RateLimit(int(headers["X-Rate-Limit-Limit"]), int(headers["X-Rate-Limit-Remaining"]),
                         float(headers["X-Rate-Limit-Reset"]))
    except (KeyError, ValueError, TypeError):
        return None
