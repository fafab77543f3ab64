"""Cookie rules of session enforcement: reading the browser's Cookie header and the app's Set-Cookie headers.

Rules of this module:
- Pure: strings in, strings out; no aiohttp. Every function here runs on the hot path, so it splits strings
  instead of going through http.cookies (whose SimpleCookie costs tens of microseconds a header).
- Of a name sent twice, the first value counts, as servers commonly read it (browsers send the more specific
  Path first).
- An app cookie name ending in `*` is a prefix: `_shibsession_*` matches `_shibsession_64656661756c74…`.
- A Set-Cookie that ends a cookie (empty value, Max-Age 0 or less, or an Expires in the past) is an expiry; as in
  browsers, a Max-Age wins over an Expires.
- A value in double quotes reads without them, in the Cookie header and in a Set-Cookie alike: the binding's
  fingerprint is taken of the one and checked against the other.
- The app session cookie counts only when every reader would read it alike (`AppCookieReader`): servers differ
  on a name sent twice (aiohttp and Django take the last, PHP and Express the first, Tomcat the first that names
  a live session), on whitespace and commas between cookies (aiohttp starts a new cookie after a space, old PHP
  after a comma), on quotes and backslashes, and some on the case of names. So each app cookie name must appear
  with one value only, that value of RFC 6265 cookie-octets (optionally in double quotes), and the name nowhere
  else in the header where a reader could begin a cookie (after `;`, `,`, `"` or whitespace, any case).
  Otherwise the reading is AMBIGUOUS: the request has an app session, and no binding can belong to it.
- The app never gets the gateway's own cookie, however it is hidden: every part of the header where a reader
  could begin a cookie of that name is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache

AMBIGUOUS = ("", "")  # an app session cookie that readers could read differently: present, never bound
_COOKIE_OCTETS = r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*"
_PLAIN_VALUE = re.compile(rf'{_COOKIE_OCTETS}|"{_COOKIE_OCTETS}"')
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_cookie_header(header: str | None) -> dict[str, str]:
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name and name not in cookies:
            cookies[name] = _unquote(value.strip())
    return cookies


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def app_session_cookie(cookies: Mapping[str, str], patterns: tuple[str, ...]) -> tuple[str, str] | None:
    """The app session cookie the request carries: the first pattern that a non-empty cookie matches."""
    for pattern in patterns:
        if pattern.endswith("*"):
            prefix = pattern[:-1]
            for name, value in cookies.items():
                if name.startswith(prefix) and value:
                    return name, value
        elif cookies.get(pattern):
            return pattern, cookies[pattern]
    return None


def app_cookie_names(cookies: Mapping[str, str], patterns: tuple[str, ...]) -> list[str]:
    return [name for name in cookies if matches(name, patterns)]


def cookie_header_for_app(header: str, own: str) -> str:
    """The Cookie header the app gets: the browser's, less every part where a reader could find the gateway's own
    cookie, every other byte as sent."""
    if own.lower() not in header.lower():
        return header
    own_starts = _starts_of(re.escape(own) + r"\s*=")
    return "; ".join(p.strip() for p in header.split(";") if p.strip() and own_starts.search(p) is None)


@lru_cache(maxsize=64)
def _starts_of(names: str) -> re.Pattern[str]:
    """Where a reader could begin a cookie whose name matches `names` (a regex alternation), in any case: at the
    start, or after `;`, `,`, `"` or whitespace, and optional whitespace."""
    return re.compile(rf'(?:^|[;,\s"])\s*(?:{names})', re.IGNORECASE)


class AppCookieReader:
    """A route's reading of the app session cookie in a Cookie header, compiled once from its patterns."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        # an exact name followed by `=`; a prefix alone, since a name that merely begins with it is one of the app's
        # (lenient parsers would take `_shibsession_a b=v` for a cookie of that name)
        self._starts = _starts_of("|".join(re.escape(p[:-1]) if p.endswith("*") else re.escape(p) + r"\s*="
                                           for p in patterns))

    def read(self, header: str) -> tuple[str, str] | None:
        """The app session cookie of this header: None when it has none, AMBIGUOUS when readers could disagree
        about it."""
        if self._starts.search(header) is None:
            return None
        values: dict[str, str] = {}
        found = 0
        for part in header.split(";"):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or not name or not matches(name, self.patterns):
                continue
            value = value.strip()
            found += 1
            if (_TOKEN.fullmatch(name) is None or _PLAIN_VALUE.fullmatch(value) is None
                    or values.setdefault(name, value) != value):
                return AMBIGUOUS
        if found != len(self._starts.findall(header)):
            return AMBIGUOUS  # a name hidden where this parser does not begin a cookie, or in another case
        return app_session_cookie({name: _unquote(value) for name, value in values.items()}, self.patterns)


def only(cookies: Mapping[str, str], names: Iterable[str]) -> str:
    """A Cookie header of just these cookies (the app's own, for a server-side call to its logout)."""
    return "; ".join(f"{name}={cookies[name]}" for name in names if name in cookies)


@dataclass(frozen=True, slots=True)
class SetCookie:
    name: str
    value: str
    path: str | None
    domain: str | None
    expired: bool


def read_set_cookie(header: str, now: float) -> SetCookie | None:
    first, *attributes = header.split(";")
    name, sep, value = first.partition("=")
    name, value = name.strip(), _unquote(value.strip())
    if not sep or not name:
        return None
    path = domain = None
    max_age_over: bool | None = None
    in_the_past: bool | None = None
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        key, val = key.strip().lower(), val.strip()
        if key == "path":
            path = val or None
        elif key == "domain":
            domain = val or None
        elif key == "max-age":
            max_age_over = _unless_none(_max_age_over(val), max_age_over)
        elif key == "expires":
            in_the_past = _unless_none(_in_the_past(val, now), in_the_past)
    expired = value == "" or (bool(in_the_past) if max_age_over is None else max_age_over)
    return SetCookie(name, value, path, domain, expired)


def _unless_none(read: bool | None, before: bool | None) -> bool | None:
    """An attribute that cannot be read is ignored, as browsers do: the one before it stands."""
    return before if read is None else read


def _max_age_over(value: str) -> bool | None:
    """Whether a Max-Age ends the cookie; None when it is not a number (browsers ignore it then)."""
    try:
        return int(value) <= 0
    except ValueError:
        return None


def _in_the_past(value: str, now: float) -> bool | None:
    try:
        return parsedate_to_datetime(value).timestamp() <= now
    except (TypeError, ValueError, IndexError):
        return None
