"""Universal Logout: the endpoint Okta calls to end every session of one user (okta-reference.md).

Rules of this module:
- Authentication comes first, the body after it: a caller without a good token learns nothing about the body.
- The token is Okta's global-token-revocation JWT, in compact form (base64url parts, two dots, at most 8 KiB;
  anything else is 401 before any parsing). Its header is checked before any key is looked up: alg must be
  RS256 (so `none`, and HS256 with the public key as secret, never reach a verifier), typ must be
  `global-token-revocation+jwt` (compared as RFC 7515 says: case-insensitive, `application/` optional), kid a
  non-empty string. PyJWT then checks the signature with the kid's key (jwks.py), iss (the org URL), aud (one
  string, exactly the configured endpoint URL) and that jti, iss, sub, aud, iat and exp are all there. When an app id
  is configured, sub must be it.
- Times are checked here, on the injected clock (PyJWT reads only the wall clock): exp, nbf and iat, each with
  `leeway` seconds of clock skew.
- A jti (a non-empty string of at most 256 characters) is accepted once: the replay store (replays.py) keeps it
  until exp + leeway, after which the token is refused as expired anyway.
- The body: at most 16 KiB of JSON `{"sub_id": {...}}` in format `email` (lower-cased) or `iss_sub`, whose iss must
  be the org URL the verifier trusts (Okta sends its own; another issuer names a user this gateway cannot know) and
  whose sub must be an Okta user id. Anything else is 400.
- Answers: 204 revoked, 400 malformed, 401 bad token, 404 unknown user, 422 the revocation failed. Bodies are one
  short line of text that never carries exception text or token content; every answer has Cache-Control: no-store.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.okta.ids import is_user_id

from ..okta.client import OktaClient, OktaError, UserUnknown
from .bodies import NotJson, load_json, read_body
from .bus import Revocation, RevocationBus
from .jwks import ALGORITHM, MAX_KID, KeySet
from .refusal import Refused, short_text
from .replays import MemoryReplayStore, ReplayStore

__all__ = ["LogoutSubject", "Revoke", "TokenVerifier", "handle", "subject_from_body", "user_revoker"]

log = logging.getLogger(__name__)

TOKEN_TYPE = "global-token-revocation+jwt"
REQUIRED_CLAIMS = ["jti", "iss", "sub", "aud", "iat", "exp"]
MAX_JTI = 256
MAX_BODY = 16 * 1024
MAX_LOGIN = 320
MAX_TOKEN = 8192
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class LogoutSubject:
    """Who Okta wants logged out: by user id (iss_sub format) or by login (email format)."""

    user_id: str | None
    login: str | None


# --- the token ---------------------------------------------------------------------------------------------------

class TokenVerifier:
    def __init__(self, *, issuer: str, audience: str, keys: KeySet, clock: Callable[[], float] = time.time,
                 leeway: float = 60, replays: ReplayStore | None = None, app_id: str | None = None) -> None:
        """replays: where accepted jtis are kept (by default a MemoryReplayStore of this process).
        app_id: when set, the token's sub must be it (Okta puts the app's client id there, or a SAML app's instance
        id)."""
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys = keys
        self._clock = clock
        self._leeway = leeway
        self._app_id = app_id
        self._replays = replays if replays is not None else MemoryReplayStore()

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or Refused(401)."""
        token = _bearer(authorization)
        kid = _checked_header(token)
        claims = self._decode(token, await self._keys.key(kid))
        now = self._clock()
        self._check_times(claims, now)
        jti = claims["jti"]
        if not short_text(jti, MAX_JTI):
            raise Refused(401, "bad jti")
        if await self._replays.seen(jti, claims["exp"] + self._leeway, now):
            raise Refused(401, "token replayed")
        return claims

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        options: jwt.types.Options = {"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False,
                                      "verify_iat": False, "strict_aud": True}
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], options=options,
                                                issuer=self.issuer, audience=self.audience)
        except jwt.PyJWTError as exc:
            raise Refused(401, _reason(exc)) from None
        if self._app_id is not None and claims["sub"] != self._app_id:
            raise Refused(401, "wrong subject")
        return claims

    def _check_times(self, claims: dict[str, Any], now: float) -> None:
        exp, iat = _time_claim(claims, "exp"), _time_claim(claims, "iat")
        nbf = _time_claim(claims, "nbf") if "nbf" in claims else None
        if exp <= now - self._leeway:
            raise Refused(401, "token expired")
        if nbf is not None and nbf > now + self._leeway:
            raise Refused(401, "token not yet valid")
        if iat > now + self._leeway:
            raise Refused(401, "token issued in the future")


def _bearer(authorization: str | None) -> str:
    """The compact JWS of a Bearer header: base64url parts joined by two dots, at most MAX_TOKEN long (odd bytes
    arrive as lone surrogates, which no JWT library can encode)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refused(401, "bearer token required")
    if len(token) > MAX_TOKEN or _COMPACT_JWS.fullmatch(token) is None:
        raise Refused(401, "malformed token")
    return token


def _checked_header(token: str) -> str:
    """The kid of a token whose header names RS256 and the revocation token type."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Refused(401, "malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise Refused(401, "algorithm not allowed")
    if _media_type(header.get("typ")) != TOKEN_TYPE:
        raise Refused(401, "wrong token type")
    kid = header.get("kid")
    if not short_text(kid, MAX_KID):
        raise Refused(401, "no key id")
    return str(kid)


def _media_type(typ: object) -> str | None:
    return typ.lower().removeprefix("application/") if isinstance(typ, str) else None


def _time_claim(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(401, f"{name} is not a time")
    try:
        moment = float(value)  # JSON integers have no bound: 10**400 does not fit a float
    except OverflowError:
        raise Refused(401, f"{name} is not a time") from None
    if not math.isfinite(moment):
        raise Refused(401, f"{name} is not a time")
    return moment


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"claim {exc.claim} missing"
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.InvalidSignatureError, "bad signature"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    ]
    return next((text for kind, text in reasons if isinstance(exc, kind)), "invalid token")


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
