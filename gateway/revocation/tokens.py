"""The Universal Logout token: TokenVerifier turns the Authorization header of Okta's call into claims it trusts.

Rules of this module:
- The token is Okta's global-token-revocation JWT, in compact form (base64url parts, two dots, at most 8 KiB;
  anything else is 401 before any parsing). Its header is checked before any key is looked up: alg must be
  RS256 (so `none`, and HS256 with the public key as secret, never reach a verifier), typ must be
  `global-token-revocation+jwt` (compared as RFC 7515 says: case-insensitive, `application/` optional), kid a
  non-empty string. PyJWT then checks the signature with the kid's key (jwks.py), iss (the org URL), aud (one
  string, exactly the configured endpoint URL) and that jti, iss, sub, aud, iat and exp are all there. When an app id
  is configured, sub must be it.
- Times are checked here, on the injected clock (PyJWT reads only the wall clock): exp, nbf and iat, each with
  `leeway` seconds of clock skew.
- A jti (a non-empty string of at most 256 characters) is accepted once: the replay store (store/seen.py's "seen
  once", shared by the fleet with the Redis store) keeps it until exp + leeway, after which the token is refused as
  expired anyway.
- Every refusal is Refused(401) with a short reason that names no token content.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ..store.seen import MemorySeen, SeenOnce
from .jwks import ALGORITHM, MAX_KID, KeySet
from .refusal import Refused, short_text

__all__ = ["TokenVerifier"]

TOKEN_TYPE = "global-token-revocation+jwt"
REQUIRED_CLAIMS = ["jti", "iss", "sub", "aud", "iat", "exp"]
MAX_JTI = 256
MAX_TOKEN = 8192
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class TokenVerifier:
    def __init__(self, *, issuer: str, audience: str, keys: KeySet, clock: Callable[[], float] = time.time,
                 leeway: float = 60, replays: SeenOnce | None = None, app_id: str | None = None) -> None:
        """replays: where accepted jtis are kept (by default a MemorySeen of this process; a fleet's is
        store/redis_seen.py's RedisSeen of kind "jti").
        app_id: when set, the token's sub must be it (Okta puts the app's client id there, or a SAML app's instance
        id)."""
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys = keys
        self._clock = clock
        self._leeway = leeway
        self._app_id = app_id
        self._replays = replays if replays is not None else MemorySeen()

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
