"""The binding: which Okta session an app session was born from, sealed so that only the gateway can read it.

Rules of this module:
- Pure: no I/O, no aiohttp. The cookie that carries a sealed binding is written by binding_cookie.py.
- A binding is sealed with Fernet (AES-CBC + HMAC-SHA256, from `cryptography`). Several keys may be configured:
  the first seals, every one opens, so keys rotate without logging anyone out; a binding opened with an older key
  says so (`stale_key`), and the caller seals it again with the first.
- A binding belongs to one app session on one route: it carries a keyed fingerprint (HMAC-SHA256, a key derived
  from each Fernet key) of the app's session cookie, never the cookie itself, and is sealed with the name of the
  route that made it. A binding presented with another app session cookie, with none, or on another route is
  void. When the app rotates its session cookie, the caller re-fingerprints.
- A binding sealed before bindings named their route is void everywhere: being stateless, it could not be taken
  "once" and then refused, so accepting it would accept it on every route for as long as its Okta session lives.
  (Each such app session goes once through the route's `unbound` rule: with `relogin`, one silent SSO round trip.)
- Sealed bindings stay far under the 4 KiB that browsers keep of a cookie: short keys, compact JSON.
- Opening and checking cost tens of microseconds; `BindingCodec.open_for()` remembers the bindings it opened
  (never a refusal, which a client can vary at will), within a budget of bytes, so a browser that sends the same
  cookies on every request pays for them once.
- `Remembered` is a memo bounded by the bytes its entries hold (approximately: their sizes are counted once, on
  insertion, and subtracted on eviction), the oldest going first; a lookup is a plain dict lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from cryptography.fernet import Fernet, InvalidToken

_FINGERPRINT_LABEL = b"session-gateway app session fingerprint v1"
_MAX_LOGIN = 256
_FERNET_KEY = re.compile(r"[A-Za-z0-9_+/-]{43}=")  # 32 bytes in base64 (Fernet.generate_key(), openssl rand)
REMEMBER_BYTES = 4 * 1024 * 1024  # what open_for() keeps of the bindings it opened, for all routes together
# An opened binding as remembered: the key tuple, Opened, Binding, its strings and floats, two dict slots.
_OPENED_BYTES = 800

K = TypeVar("K")
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """A memo bounded by bytes: `bytes` is the approximate size of what it holds, never over `budget`. Lookups go
    to `entries`, a plain dict (a hit costs what a dict lookup costs); entries go in insertion order, the dict's
    own."""

    __slots__ = ("entries", "budget", "bytes", "_sizes")

    def __init__(self, budget: int) -> None:
        self.entries: dict[K, V] = {}
        self.budget = budget
        self.bytes = 0
        self._sizes: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def remember(self, key: K, value: V, size: int) -> None:
        """Keep `value` under `key`, counted as `size` bytes (a key kept already keeps its age); the oldest
        entries go until it fits."""
        if size > self.budget:
            return
        self.bytes -= self._sizes.get(key, 0)
        self._sizes[key] = size
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.budget:
            oldest = next(iter(self.entries))
            del self.entries[oldest]
            self.bytes -= self._sizes.pop(oldest)


@dataclass(frozen=True, slots=True)
class Binding:
    session_id: str  # the Okta session (the API's {id})
    user_id: str
    login: str
    app_fingerprint: str  # keyed hash of the app session cookie this binding belongs to
    bound_at: float
    last_activity: float

    def touched(self, now: float) -> Binding:
        return replace(self, last_activity=now)


@dataclass(frozen=True, slots=True)
class Opened:
    binding: Binding
    key_index: int  # which configured key opened it (0: the current one)
    route: str | None = None  # the route it was sealed for; None: sealed before bindings named their route

    @property
    def stale_key(self) -> bool:
        return self.key_index != 0


class BindingKeyError(ValueError):
    """A configured key is not a Fernet key; the message never carries the key."""


class BindingCodec:
    def __init__(self, keys: list[str] | tuple[str, ...], *, remember_bytes: int = REMEMBER_BYTES) -> None:
        if not keys:
            raise BindingKeyError("at least one key is needed")
        fernets, fingerprint_keys = [], []
        for i, key in enumerate(keys):
            try:
                if not isinstance(key, str) or _FERNET_KEY.fullmatch(key) is None:
                    raise ValueError  # lenient base64 would take "KEY1=KEY2=" or "KEY1=;KEY2=" as KEY1 alone
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise BindingKeyError(f"key {i + 1} is not a Fernet key (32 url-safe base64-encoded bytes)") from None
            raw = base64.urlsafe_b64decode(key)
            fingerprint_keys.append(hmac.new(raw, _FINGERPRINT_LABEL, hashlib.sha256).digest())
        self._fernets = fernets
        self._fingerprint_keys = fingerprint_keys
        self._checked: Remembered[tuple[str, str, str], Opened] = Remembered(remember_bytes)

    def seal(self, binding: Binding, route: str) -> str:
        """The binding as aiohttp-session's cookie JSON ({"created", "session"}), sealed with the first key for
        this route."""
        body = {"created": int(binding.bound_at), "session": {**_to_json(binding), "r": route}}
        return self._fernets[0].encrypt(json.dumps(body, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str) -> Opened | None:
        """The binding in a cookie value, or None when no configured key opens it or it is malformed."""
        token = sealed.encode("ascii", "replace")
        for index, fernet in enumerate(self._fernets):
            try:
                plain = fernet.decrypt(token)
            except InvalidToken:
                continue
            return _from_json(plain, index)
        return None

    def open_for(self, sealed: str, route: str, cookie_name: str, cookie_value: str) -> Opened | None:
        """The binding in a cookie value if it was sealed for this route and belongs to this app session cookie,
        else None."""
        key = (sealed, cookie_name, cookie_value)
        opened = self._checked.entries.get(key)
        if opened is None:
            opened = self.open(sealed)
            if opened is None or not self.belongs_to(opened, cookie_name, cookie_value):
                return None
            self._checked.remember(key, opened, sys.getsizeof(sealed) + sys.getsizeof(cookie_name)
                                   + sys.getsizeof(cookie_value) + _OPENED_BYTES)
        return opened if opened.route == route else None

    def fingerprint(self, cookie_name: str, cookie_value: str, key_index: int = 0) -> str:
        mac = hmac.new(self._fingerprint_keys[key_index], f"{cookie_name}={cookie_value}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")

    def belongs_to(self, opened: Opened, cookie_name: str, cookie_value: str) -> bool:
        expected = self.fingerprint(cookie_name, cookie_value, opened.key_index)
        return hmac.compare_digest(expected, opened.binding.app_fingerprint)


def _to_json(b: Binding) -> dict[str, Any]:
    return {"sid": b.session_id, "uid": b.user_id, "login": b.login[:_MAX_LOGIN], "fp": b.app_fingerprint,
            "at": round(b.bound_at, 3), "last": round(b.last_activity, 3)}


def _from_json(plain: bytes, key_index: int) -> Opened | None:
    try:
        data = json.loads(plain)["session"]
        binding = Binding(data["sid"], data["uid"], data["login"], data["fp"], float(data["at"]),
                          float(data["last"]))
        route = data.get("r")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(v, str) for v in (binding.session_id, binding.user_id, binding.login,
                                            binding.app_fingerprint)) or not isinstance(route, (str, type(None))):
        return None
    return Opened(binding, key_index, route)
