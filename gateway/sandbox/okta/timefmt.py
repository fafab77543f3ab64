"""Okta's timestamps: ISO 8601 UTC with milliseconds ("2016-01-03T09:13:17.000Z")."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
