"""Universal Logout: the endpoint Okta calls to end every session of one user (okta-reference.md).

Rules of this module:
- Authentication comes first, the body after it: a caller without a good token learns nothing about the body. The
  token is Okta's JWT, checked by TokenVerifier (tokens.py states its rules) against the org's keys (jwks.py).
- The body: at most 16 KiB of JSON `{"sub_id": {...}}` in format `email` (lower-cased) or `iss_sub`, whose iss must
  be the org URL the verifier trusts (Okta sends its own; another issuer names a user this gateway cannot know) and
  whose sub must be an Okta user id. Anything else is 400.
- Answers: 204 revoked, 400 malformed, 401 bad token, 404 unknown user, 422 the revocation failed. Bodies are one
  short line of text that never carries exception text or token content; every answer has Cache-Control: no-store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.okta.ids import is_user_id

from ..okta.client import OktaClient, OktaError, UserUnknown
from .bodies import NotJson, load_json, read_body
from .bus import Revocation, RevocationBus
from .refusal import MAX_LOGIN, Refused, short_text
from .tokens import TokenVerifier

__all__ = ["LogoutSubject", "Revoke", "handle", "subject_from_body", "user_revoker"]

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class LogoutSubject:
    """Who Okta wants logged out: by user id (iss_sub format) or by login (email format)."""

    user_id: str | None
    login: str | None


# --- the body ----------------------------------------------------------------------------------------------------

def subject_from_body(body: bytes, issuer: str) -> LogoutSubject:
    """The user a Universal Logout body names, or Refused(400)."""
    if len(body) > MAX_BODY:
        raise Refused(400, "body too large")
    try:
        document = load_json(body)
    except NotJson:
        raise Refused(400, "body is not JSON") from None
    sub_id = document.get("sub_id") if isinstance(document, dict) else None
    if not isinstance(sub_id, dict):
        raise Refused(400, "sub_id missing")
    fmt = sub_id.get("format")
    if fmt == "email":
        return _by_email(sub_id)
    if fmt == "iss_sub":
        return _by_iss_sub(sub_id, issuer.rstrip("/"))
    raise Refused(400, "unsupported sub_id format")


def _by_email(sub_id: dict[str, Any]) -> LogoutSubject:
    email = sub_id.get("email")
    if not short_text(email, MAX_LOGIN) or "@" not in email or email.strip() != email:
        raise Refused(400, "email missing or malformed")
    return LogoutSubject(user_id=None, login=email.lower())


def _by_iss_sub(sub_id: dict[str, Any], issuer: str) -> LogoutSubject:
    iss, sub = sub_id.get("iss"), sub_id.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str):
        raise Refused(400, "iss and sub required")
    if iss.rstrip("/") != issuer:
        raise Refused(400, "subject from another issuer")
    if not is_user_id(sub):
        raise Refused(400, "sub is not an Okta user id")
    return LogoutSubject(user_id=sub, login=None)


# --- the endpoint ------------------------------------------------------------------------------------------------

Revoke = Callable[[LogoutSubject, dict[str, Any]], Awaitable[bool]]


async def handle(request: web.Request, verifier: TokenVerifier, issuer: str, revoke: Revoke) -> web.Response:
    """POST {endpoint}: verify, read the subject, revoke. `revoke` answers True (done) or False (unknown user); it
    may raise Refused to choose the answer itself, and any other exception answers 422."""
    try:
        claims = await verifier.verify(request.headers.get("Authorization"))
        subject = subject_from_body(await _body(request), issuer)
    except Refused as refused:
        return _refusal(refused)
    try:
        done = await revoke(subject, claims)
    except Refused as refused:
        return _refusal(refused)
    except Exception:
        log.exception("universal logout: the revocation failed (jti %s)", claims["jti"])
        return _answer(422, "cannot log out")
    if not done:
        return _answer(404, "unknown user")
    log.info("universal logout: sessions revoked (jti %s)", claims["jti"])
    return _answer(204)


def _refusal(refused: Refused) -> web.Response:
    log.info("universal logout refused: %s %s", refused.status, refused.message)
    return _answer(refused.status, refused.message)


async def _body(request: web.Request) -> bytes:
    body = await read_body(request, MAX_BODY)
    if body is None:
        raise Refused(400, "body too large")
    return body


def _answer(status: int, message: str | None = None) -> web.Response:
    text = None if message is None else message + "\n"
    return web.Response(status=status, text=text, headers=NO_STORE)


def user_revoker(client: OktaClient, bus: RevocationBus) -> Revoke:
    """The revocation behind the endpoint: the user as Okta knows them, every binding of theirs made before now.

    A user Okta does not know is a 404. When Okta cannot be asked, the user is revoked by what the token named
    (an outage must not keep a logout from taking effect).
    """

    async def revoke(subject: LogoutSubject, claims: dict[str, Any]) -> bool:
        user_id, login = subject.user_id, subject.login
        try:
            user_id, login = await client.get_user(user_id or login or "")
        except UserUnknown:
            return False
        except OktaError:
            pass
        issued = claims.get("iat")
        bus.publish(Revocation("universal_logout", "universal_logout", None, user_id, login,
                               float(issued) if isinstance(issued, int | float) else None,
                               cutoff=math.inf,  # every binding until now: iat has whole seconds only
                               in_okta=False))  # the user's Okta sessions may live on: SSO binds them again
        return True

    return revoke
