"""How the parts of Universal Logout say no: the key set (jwks.py), the token verifier (tokens.py) and the body reader
(universal_logout.py) raise `Refused`, and the endpoint turns it into its answer.

Rules of this module:
- A refusal carries the HTTP status to answer and a short message safe to send: it never carries exception text or
  token content.
- An identifier the caller chose (kid, jti, login) is used only when it is `short_text`: a non-empty string of at
  most a known length, and text (JSON's `\ud800` escapes decode to lone surrogates, which no store, log or
  network protocol can encode).
"""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["MAX_LOGIN", "Refused", "short_text"]

MAX_LOGIN = 320  # an email address at its longest


class Refused(Exception):
    """A request this endpoint will not act on: the status to answer and a short message safe to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def short_text(value: object, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable() and _encodes(value)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
