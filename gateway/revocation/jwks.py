"""The org's signing keys for Universal Logout tokens: its JWKS ({org}/oauth2/v1/keys, okta-reference.md), cached.

Rules of this module:
- Only RSA keys for RS256 signing of at least 2048 bits are kept (`use` must be sig and `alg` RS256 where an entry
  names them), by a kid of at most 256 characters, from the first 32 entries of the document; other entries are
  skipped.
- Keys are used for `ttl` seconds. An unknown kid (or keys past their ttl) fetches the JWKS again, at most once per
  `min_refetch` seconds whatever the kids asked for, and concurrent misses share one fetch. A failed fetch keeps the
  keys still within their ttl and answers Refused(401); keys past their ttl are never used.
- The fetch is the only I/O, and it is injected. `jwks_fetcher` makes the real one: a GET that follows no redirect
  and wants 200 and a JSON object of at most 64 KiB. Whatever a fetch raises (JwksUnavailable, NotJson, a
  connection error) is a failed fetch to the key set, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .bodies import load_json, read_bounded
from .refusal import Refused, short_text

__all__ = ["ALGORITHM", "MAX_KID", "FetchJwks", "JwksUnavailable", "KeySet", "jwks_fetcher", "parse_jwks"]

# the logger of the endpoint these keys serve, as it was before the key set had a module of its own
log = logging.getLogger("gateway.revocation.universal_logout")

FetchJwks = Callable[[], Awaitable[dict[str, Any]]]
ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
MAX_KID = 256
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 32


class JwksUnavailable(Exception):
    """The JWKS could not be fetched or is not a JSON object."""


class KeySet:
    """The org's signing keys by kid, fetched through `fetch_jwks` (the only I/O)."""

    def __init__(self, fetch_jwks: FetchJwks, *, clock: Callable[[], float] = time.time, ttl: float = 3600,
                 min_refetch: float = 30) -> None:
        self._fetch = fetch_jwks
        self._clock = clock
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> RSAPublicKey:
        found = self._fresh(kid)
        if found is None:
            async with self._lock:
                found = self._fresh(kid)
                if found is None and self._may_fetch():
                    await self._refresh()
                    found = self._fresh(kid)
        if found is None:
            raise Refused(401, "unknown signing key")
        return found

    def _fresh(self, kid: str) -> RSAPublicKey | None:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl:
            return None
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return self._tried_at is None or self._clock() - self._tried_at >= self._min_refetch

    async def _refresh(self) -> None:
        self._tried_at = self._clock()
        try:
            keys = parse_jwks(await self._fetch())
        except Exception as exc:  # any failure of the fetcher is "no keys this time", never a crash
            log.warning("universal logout: the JWKS could not be fetched (%s)", type(exc).__name__)
            return
        self._keys, self._fetched_at = keys, self._clock()


def parse_jwks(document: object) -> dict[str, RSAPublicKey]:
    """The usable RS256 signing keys of a JWKS document by kid; other entries are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksUnavailable("no keys list")
    keys: dict[str, RSAPublicKey] = {}
    for entry in entries[:MAX_JWKS_KEYS]:
        found = _signing_key(entry)
        if found is not None:
            keys[found[0]] = found[1]
    return keys


def _signing_key(entry: object) -> tuple[str, RSAPublicKey] | None:
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    kid = entry.get("kid")
    if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM or not short_text(kid, MAX_KID):
        return None
    try:
        key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        return None
    return str(kid), key


def jwks_fetcher(session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> FetchJwks:
    """A `fetch_jwks` for KeySet: GET the JWKS, 200 and a JSON object of at most 64 KiB, else JwksUnavailable."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def fetch() -> dict[str, Any]:
        async with session.get(url, timeout=client_timeout, allow_redirects=False,
                               headers={"Accept": "application/json"}) as answer:
            if answer.status != 200:
                raise JwksUnavailable(f"HTTP {answer.status}")
            body = await read_bounded(answer.content, MAX_JWKS_BYTES)
        if body is None:
            raise JwksUnavailable("too large")
        document = load_json(body)
        if not isinstance(document, dict):
            raise JwksUnavailable("not a JSON object")
        return document

    return fetch
