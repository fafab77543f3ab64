"""Where revocation state lives: tombstones of ended Okta sessions and per-user "revoked before T" watermarks.

`RevocationStore` is the interface; memory.py is the embedded default (one process). A shared backend (Redis)
implements the same few methods, so that every replica sees every revocation.
"""

from __future__ import annotations

from typing import Protocol


class StoreUnavailable(Exception):
    """The shared store (Redis) did not answer (away, slow, refusing): the caller goes on without it."""


def user_keys(user_id: str | None, login: str | None) -> tuple[str, ...]:
    """The keys a user's watermark is kept under: the Okta user id and the lower-cased login."""
    return tuple(k for k in (user_id, login.lower() if login else None) if k)


class RevocationStore(Protocol):
    generation: int  # changes whenever anything is recorded: a cheap "has anything been revoked since?"

    def end_session(self, session_id: str, at: float) -> None:
        """The Okta session ended at `at`; a binding to it is void from now on."""

    def end_user(self, user_key: str, before: float, *, in_okta: bool = False) -> None:
        """Every binding of this user (id or lower-cased login) made before `before` is void. With `in_okta`, Okta
        itself ended every session the user had then (suspend, clear, a confirmed user-wide logout): no session
        Okta created before `before` is bound again."""

    def session_ended(self, session_id: str) -> float | None:
        """When the session was recorded as ended, or None."""

    def user_ended_before(self, user_key: str) -> float:
        """The user's watermark (0 for none)."""

    def okta_ended_before(self, user_key: str) -> float:
        """Before when Okta ended every session of the user (0 for never, as far as the gateway was told)."""
