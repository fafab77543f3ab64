"""The small interfaces plugins implement, and how they are found by name.

Two kinds, each a Protocol of one method or a plain value:
- a session-id source (`SidSource`) reads the Okta session id a request carries (Okta's own cookie, a trusted
  header); that id is only compared with the bound session (a different one ends the app session), it never binds
  and is never looked up in Okta. A sign-in reader (`SignInReader`) reads who signed in, and with which Okta
  session, from what the browser posts to the app's ACS; only it binds. A source plugin is a factory
  `(SourceOptions) -> SidSource | SignInReader`, called once per route (by `make_source`).
- an app profile (`AppProfile`) is a preset of an app's session cookies, ACS path, sign-in URL and logout paths.

Every plugin, built-in or not, is an entry point of the group `session_gateway.plugins`: the entry point's name is
the plugin's name (one name, one plugin, of either kind), and it loads either an `AppProfile` or a source factory.
The built-ins are the entry points of the gateway's own distribution (session-gateway, see pyproject.toml); this
module imports nothing of them. A built-in name cannot be taken over: the gateway's own entry point of a name wins
over any other distribution's; between two third-party ones, the first distribution on sys.path wins.

Loading is lazy and by name: an entry point is loaded (its module imported) the first time a configuration uses
its name, and never otherwise, so that a third-party plugin that fails to import spoils only a configuration that
names it. For that one the failure is a `PluginError` naming the plugin and its entry point, which the
configuration reports as its one-line error, as it does an entry point that loads something that is neither an
`AppProfile` nor a callable. The list of names given for an unknown name loads only the gateway's own entry points
(to tell sources from profiles) and names the third-party ones without loading them.

A source may have options of its own, in the route's table `[route.plugin.<name>]`. They are the plugin's to check:
its factory has an `options` hook, a callable attribute (a classmethod, say) that takes the table as a read-only
`Mapping[str, object]` (a `${NAME}` in a string value or a list's strings already expanded; `{}` when the route
has no table, so that a missing required option is refused too) and returns any value, or raises `PluginOptionError(key,
expected)`; the configuration reports that as `<file>: route[i] (name).plugin.<name>.<key>: expected <expected>`
(never showing the value: the gateway cannot tell which of a plugin's options are secrets). Unknown keys are the
hook's to refuse. The factory then finds what the hook returned as `SourceOptions.own`:

    class Acme:
        @classmethod
        def options(cls, table: Mapping[str, object]) -> AcmeOptions:
            unknown = sorted(table.keys() - {"realm"})
            if unknown:
                raise PluginOptionError(unknown[0], "one of realm; this key is unknown")
            realm = table.get("realm")
            if not isinstance(realm, str):
                raise PluginOptionError("realm", "a realm name")
            return AcmeOptions(realm)

        def __init__(self, options: SourceOptions) -> None:
            assert isinstance(options.own, AcmeOptions)
            self._realm = options.own.realm

A factory without the hook takes no table (the built-ins read route keys: `saml_session_attribute`, `okta_cookie`,
`session_id_header`, `session_id_header_from`), and its `own` is None. A table for a plugin that the route's
`sid_sources` do not name is refused (and that plugin not loaded). A hook that raises anything else is the
plugin's failure, reported like a failure to load.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Protocol, cast, runtime_checkable

ENTRY_POINT_GROUP = "session_gateway.plugins"
DISTRIBUTION = "session-gateway"  # the gateway's own distribution: its entry points are the built-in plugins


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
    """A route's settings that sources read; each source uses the ones it needs.

    `plugins` holds what each source's `options` hook returned for the route, by plugin name; `make_source` hands a
    source its own as `own` (None for a source without the hook).
    """

    saml_attribute: str = "okta_session_id"
    okta_cookie: str = "sid"
    session_header: str = "X-Okta-Session-Id"
    session_header_from: tuple[str, ...] = ()  # addresses or networks whose header is trusted
    plugins: Mapping[str, object] = field(default_factory=dict, hash=False)
    own: object = field(default=None, hash=False)


@runtime_checkable
class SidSource(Protocol):
    def identify(self, request: RequestInfo) -> str | None:
        """The Okta session id this request carries, or None: compared with the bound one, never bound."""


@runtime_checkable
class SignInReader(Protocol):
    def read_sign_in(self, body: bytes, content_type: str) -> SignIn | None:
        """Who signed in, from the body the browser posted to the ACS; None when it cannot be read."""


SourceFactory = Callable[[SourceOptions], "SidSource | SignInReader"]
OptionsHook = Callable[[Mapping[str, object]], object]


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
    """No plugin of that kind has that name; the message says what was expected (the names there are)."""


class UnusablePlugin(PluginError):
    """A plugin of that name is installed but cannot serve: it fails to load, loads something that is no plugin or
    a plugin of the other kind, or its options hook fails. The message names the plugin and its entry point."""


class PluginOptionError(ValueError):
    """Raised by a plugin's `options` hook: the key of its table that is wrong (or missing), and what it expects."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(f"{key}: expected {expected}")
        self.key, self.expected = key, expected


_SOURCE, _PROFILE = "a session-id source", "an app profile"


def source_factory(name: str) -> SourceFactory:
    return cast(SourceFactory, _plugin(name, _SOURCE))


def app_profile(name: str) -> AppProfile:
    return cast(AppProfile, _plugin(name, _PROFILE))


def options_hook(name: str) -> OptionsHook | None:
    """The source's `options` hook, or None when it has none; a hook that fails but with PluginOptionError raises
    UnusablePlugin."""
    factory = source_factory(name)
    try:
        hook = getattr(factory, "options", None)
    except Exception as exc:
        raise UnusablePlugin(f"a loadable plugin; {_named(name)} fails on its options hook: {_said(exc)}") from None
    if hook is None:
        return None
    if not callable(hook):
        raise UnusablePlugin(f"a loadable plugin; {_named(name)} has an options hook that is not callable")

    def guarded(table: Mapping[str, object]) -> object:
        try:
            return hook(table)
        except PluginOptionError:
            raise
        except Exception as exc:
            raise UnusablePlugin(f"options {_named(name)} can read; its options hook failed: {_said(exc)}") from None

    return guarded


def make_source(name: str, options: SourceOptions) -> SidSource | SignInReader:
    """The route's source `name`, made by its factory with the route's options and, as `own`, its own ones."""
    return source_factory(name)(replace(options, own=options.plugins.get(name)))


def _plugin(name: str, kind: str) -> object:
    if name not in _installed():
        raise PluginError(_known(kind))
    found = _load(name)
    if _kind(found) != kind:
        raise UnusablePlugin(f"{_known(kind)}; {_named(name)} is {_kind(found)}")
    return found


def _kind(found: object) -> str:
    if isinstance(found, AppProfile):
        return _PROFILE
    return _SOURCE if callable(found) else "no plugin"


@cache
def _installed() -> dict[str, importlib.metadata.EntryPoint]:
    """Every plugin name and the entry point that provides it, read from the distributions' metadata: none loaded."""
    chosen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in chosen or (_built_in(ep) and not _built_in(chosen[ep.name])):
            chosen[ep.name] = ep
    return chosen


@cache
def _load(name: str) -> object:
    """The object the entry point of that name loads, once (a failure is not remembered: it is tried again)."""
    try:
        found = _installed()[name].load()
    except Exception as exc:
        raise UnusablePlugin(f"a loadable plugin; {_named(name)} failed to load: {_said(exc)}") from None
    if _kind(found) == "no plugin":
        raise UnusablePlugin(f"a loadable plugin; {_named(name)} loads a value of type {type(found).__name__}, "
                             "neither an app profile nor a source factory")
    return found


def _known(kind: str) -> str:
    """The names a plugin of that kind may have: the built-ins of that kind (the only ones loaded to tell), then
    every third-party name."""
    ours, theirs = [], []
    for name, ep in sorted(_installed().items()):
        if not _built_in(ep):
            theirs.append(name)
            continue
        try:
            if _kind(_load(name)) == kind:
                ours.append(name)
        except UnusablePlugin:
            pass  # a broken installation: said by name to a configuration that uses it, not in every list
    listed = f"one of {', '.join(ours)}" if ours else ""
    if theirs:
        listed += f"{', or ' if ours else ''}an installed plugin ({', '.join(theirs)})"
    return listed or (f"{kind}, and no plugin is installed (the built-in ones are the entry points of the "
                      f"{DISTRIBUTION} distribution: install it)")


def _built_in(ep: importlib.metadata.EntryPoint) -> bool:
    name = ep.dist.name if ep.dist is not None else None
    return isinstance(name, str) and re.sub(r"[-_.]+", "-", name).lower() == DISTRIBUTION


def _named(name: str) -> str:
    return f'plugin "{name}" (entry point {_installed()[name].value})'


def _said(exc: Exception) -> str:
    """An exception as one short line: its type and its message."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:299] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
