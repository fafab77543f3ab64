"""The small interfaces plugins implement, and how they are found by name.

Two kinds, each a Protocol of one method or a plain value:
- a session-id source (`SidSource`) reads the Okta session id a request carries (Okta's own cookie, a trusted
  header); that id is only compared with the bound session (a different one ends the app session), it never binds
  and is never looked up in Okta. A sign-in reader (`SignInReader`) reads who signed in, and with which Okta
  session, from what the browser posts to the app's ACS; only it binds. A source plugin is a factory
  `(SourceOptions) -> SidSource | SignInReader`, called once per route.
- an app profile (`AppProfile`) is a preset of an app's session cookies, ACS path, sign-in URL and logout paths.
Built-ins live in the `plugins` package (`plugins.SOURCES`, `plugins.PROFILES`); third-party plugins are entry
points in the group `session_gateway.plugins`: the entry point's name is the plugin's name, and it loads either an
`AppProfile` or a source factory. A built-in name cannot be taken over.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Protocol, runtime_checkable

ENTRY_POINT_GROUP = "session_gateway.plugins"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a source may look at: the request's headers (case-insensitive), its cookies, and the peer address."""

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    peer: str | None


@dataclass(frozen=True, slots=True)
class SignIn:
    """Who signed in (the SAML NameID) and the Okta session id the assertion carried, if any."""

    name_id: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """A route's settings that sources read; each source uses the ones it needs."""

    saml_attribute: str = "okta_session_id"
    okta_cookie: str = "sid"
    session_header: str = "X-Okta-Session-Id"
    session_header_from: tuple[str, ...] = ()  # addresses or networks whose header is trusted


@runtime_checkable
class SidSource(Protocol):
    def identify(self, request: RequestInfo) -> str | None:
        """The Okta session id this request carries, or None: compared with the bound one, never bound."""


@runtime_checkable
class SignInReader(Protocol):
    def read_sign_in(self, body: bytes, content_type: str) -> SignIn | None:
        """Who signed in, from the body the browser posted to the ACS; None when it cannot be read."""


SourceFactory = Callable[[SourceOptions], "SidSource | SignInReader"]


@dataclass(frozen=True, slots=True)
class AppProfile:
    """Where a SAML stack keeps its session and its sign-in and logout endpoints.

    A cookie name ending in `*` is a prefix (`_shibsession_*`). `sign_in_url` and `logout_url` are paths on the
    app (as the browser sees it) or absolute URLs; `logout_url` is the app's own logout, which the gateway calls
    server-side with the user's app cookies when it ends a session (None: the app has none to call).
    """

    name: str
    session_cookies: tuple[str, ...]
    acs_path: str
    sign_in_url: str
    logout_paths: tuple[str, ...]
    logout_url: str | None = None
    cookie_path: str = "/"


class PluginError(LookupError):
    """No plugin of that kind has that name; the message lists the names there are."""


def source_factory(name: str) -> SourceFactory:
    found = _all_sources().get(name)
    if found is None:
        raise PluginError(f"one of {', '.join(sorted(_all_sources()))}")
    return found


def app_profile(name: str) -> AppProfile:
    found = _all_profiles().get(name)
    if found is None:
        raise PluginError(f"one of {', '.join(sorted(_all_profiles()))}")
    return found


@cache
def _all_sources() -> dict[str, SourceFactory]:
    from plugins import SOURCES

    found = dict(SOURCES)
    for name, obj in _entry_points():
        if callable(obj) and not isinstance(obj, AppProfile) and name not in found:
            found[name] = obj
    return found


@cache
def _all_profiles() -> dict[str, AppProfile]:
    from plugins import PROFILES

    found = {p.name: p for p in PROFILES}
    for name, obj in _entry_points():
        if isinstance(obj, AppProfile) and name not in found:
            found[name] = obj
    return found


def _entry_points() -> list[tuple[str, object]]:
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded.append((ep.name, ep.load()))
    return loaded
