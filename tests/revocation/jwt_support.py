"""What the Universal Logout tests sign and fetch with: RSA keys and their JWKS entries made here, tokens shaped like
Okta's (every claim and header overridable, None leaves it out), a fake org JWKS endpoint and a clock moved by hand.
Imported as `revocation.jwt_support` (tests/ is on the path); the fixtures over them are in conftest.py beside it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://example.okta.com"
AUDIENCE = "https://gateway.example.com/okta/universal-logout"
TYPE = "global-token-revocation+jwt"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig", **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Org:
    """What Okta's JWKS endpoint would answer, and how often it was asked."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys) or [jwk(KEY, "k1")]
        self.calls = 0
        self.fail = False

    async def fetch_jwks(self) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise aiohttp.ClientConnectionError("okta is down")
        return {"keys": list(self.keys)}


def claims_at(now: float, **overrides: Any) -> dict[str, Any]:
    claims = {"jti": f"jti-{time.monotonic_ns()}", "iss": ISSUER, "sub": "0oa1", "aud": AUDIENCE, "iat": int(now),
              "nbf": int(now) - 300, "exp": int(now) + 300, **overrides}
    return {k: v for k, v in claims.items() if v is not None}


def token(now: float, *, key: Any = KEY, kid: str | None = "k1", alg: str = "RS256", typ: str | None = TYPE,
          **claims: Any) -> str:
    headers = {k: v for k, v in {"kid": kid, "typ": typ}.items() if v is not None} | ({} if typ else {"typ": None})
    return jwt.encode(claims_at(now, **claims), key, algorithm=alg, headers=headers)

