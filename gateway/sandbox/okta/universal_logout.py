"""Universal Logout as Okta sends it (okta-reference.md, "Universal Logout"): the org's logout signing keys, their
JWKS at GET /oauth2/v1/keys, the signed request, and the POST to an app's endpoint.

Rules of this module:
- Universal Logout has keys of its own, apart from the SAML signing key. The JWKS holds the one current key;
  `rotate()` replaces it and the old kid leaves the JWKS at once.
- The token: header typ `global-token-revocation+jwt`, alg RS256, kid; claims jti (new each time), iss = the org
  URL, sub = the app instance id (the one given, else the org's first SAML app, else a fixed per-org `0oa` id),
  aud = the endpoint URL without query or fragment, iat = now, nbf = now − 5 min, exp = now + 5 min, in whole
  seconds on the org clock.
- The body names the user by login (`email` format) or by org URL and user id (`iss_sub` format).
- Sending: one POST, no retry, 3 s to answer; the status, or 0 when nothing answered, is what the caller gets.
Overrides make bad requests for tests: a claim (jti, iss, sub, aud, iat, nbf, exp) or header field (kid, typ) set
to a value, or to None to leave it out; alg= another algorithm ("none" signs nothing); key= another signing key.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from yarl import URL

from .common import ORG, json_answer

if TYPE_CHECKING:
    from .org import OktaOrg, User

LogoutFormat = Literal["email", "iss_sub"]
TOKEN_TYPE = "global-token-revocation+jwt"
ALGORITHM = "RS256"
VALIDITY_SECONDS = 300
SEND_TIMEOUT = 3.0
CLAIMS = frozenset({"jti", "iss", "sub", "aud", "iat", "nbf", "exp"})
HEADER_FIELDS = frozenset({"kid", "typ"})
OTHER_OVERRIDES = frozenset({"alg", "key"})


class LogoutKey:
    """One RSA signing key and its kid."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_urlsafe(32)

    def jwk(self) -> dict[str, str]:
        public = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"kty": "RSA", "alg": ALGORITHM, "use": "sig", "kid": self.kid, "n": public["n"], "e": public["e"]}


class LogoutKeys:
    def __init__(self, default_app_id: str) -> None:
        self.current = LogoutKey()
        self.default_app_id = default_app_id

    def rotate(self) -> str:
        self.current = LogoutKey()
        return self.current.kid

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.current.jwk()]}


def add_logout_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/oauth2/v1/keys", jwks)


async def jwks(request: web.Request) -> web.Response:
    return json_answer(200, request.app[ORG].logout_keys.jwks())


def build_request(org: OktaOrg, endpoint_url: str, user: User, *, fmt: LogoutFormat = "email",
                  app_id: str | None = None, **overrides: Any) -> tuple[dict[str, str], bytes]:
    unknown = set(overrides) - CLAIMS - HEADER_FIELDS - OTHER_OVERRIDES
    if unknown:
        raise TypeError(f"unknown overrides {sorted(unknown)}")
    claims = _with(_claims(org, endpoint_url, app_id), overrides, CLAIMS)
    keys = org.logout_keys
    header = _with({"typ": TOKEN_TYPE, "kid": keys.current.kid}, overrides, HEADER_FIELDS)
    header.setdefault("typ", None)  # PyJWT writes typ "JWT" unless told None
    alg = overrides.get("alg", ALGORITHM)
    key = "" if alg == "none" else overrides.get("key", keys.current.private_key)
    token = jwt.encode(claims, key, algorithm=alg, headers=header)
    body = json.dumps({"sub_id": subject_id(org, user, fmt)}).encode()
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Accept": "application/json"}, body


def subject_id(org: OktaOrg, user: User, fmt: LogoutFormat) -> dict[str, str]:
    if fmt == "email":
        return {"format": "email", "email": user.login}
    if fmt == "iss_sub":
        return {"format": "iss_sub", "iss": org.issuer, "sub": user.id}
    raise ValueError(f"fmt must be 'email' or 'iss_sub', not {fmt!r}")


async def send(org: OktaOrg, endpoint_url: str, user: User, fmt: LogoutFormat = "email",
               app_id: str | None = None) -> int:
    headers, body = build_request(org, endpoint_url, user, fmt=fmt, app_id=app_id)
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as http, \
                http.post(endpoint_url, data=body, headers=headers, allow_redirects=False) as answer:
            await answer.read()
            return answer.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


def outcome(status: int) -> dict[str, str | None]:
    """The System Log outcome of one call: SUCCESS for a 2xx, FAILURE with the reason otherwise."""
    if 200 <= status < 300:
        return {"result": "SUCCESS", "reason": None}
    return {"result": "FAILURE", "reason": f"HTTP {status}" if status else "no answer"}


def _claims(org: OktaOrg, endpoint_url: str, app_id: str | None) -> dict[str, Any]:
    now = int(org.clock.timestamp())
    default_app = next(iter(org.apps.values())).id if org.apps else org.logout_keys.default_app_id
    return {
        "jti": "ul." + secrets.token_urlsafe(24),
        "iss": org.issuer,
        "sub": app_id or default_app,
        "aud": str(URL(endpoint_url).with_query(None).with_fragment(None)),
        "iat": now,
        "nbf": now - VALIDITY_SECONDS,
        "exp": now + VALIDITY_SECONDS,
    }


def _with(values: dict[str, Any], overrides: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """values with the overrides among names applied; an override of None leaves the field out."""
    merged = {**values, **{k: v for k, v in overrides.items() if k in names}}
    return {k: v for k, v in merged.items() if v is not None}
