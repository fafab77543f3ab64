"""TOML configuration → frozen, validated settings.

Rules of this module:
- Pure: reads one file, touches no network, imports no aiohttp.
- Every error is one `ConfigError` whose message names the file, the key and what was expected. The first error
  stops the load; the CLI prints it and exits with status 2.
- Unknown keys are errors (with a did-you-mean); so are wrong types, bad URLs, duplicate route names and routes
  that another route hides.
- A string value may reference the environment as `${NAME}`; a missing variable is an error. The value itself
  never appears in a message, since such values are usually secrets.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from yarl import URL

from .plugin import AppProfile, PluginError, SourceOptions, UnusablePlugin, app_profile, source_factory
from .routing import Route, RouteTable, normalize_prefix
from .sessions.binding import BindingCodec, BindingKeyError
from .settings import (
    CachePolicy,
    CookieSettings,
    EventHookSettings,
    IPNetwork,
    LogoutRules,
    Mode,
    OktaSettings,
    ProxySettings,
    RouteSessions,
    ServerSettings,
    SessionRules,
    Unbound,
    UniversalLogoutSettings,
)

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration that cannot be used; the message is meant for the operator as it is."""


@dataclass(frozen=True, slots=True)
class Settings:
    source: str
    server: ServerSettings
    proxy: ProxySettings
    routes: RouteTable
    okta: OktaSettings | None = None
    binding_keys: tuple[str, ...] = field(default=(), repr=False)  # Fernet keys: the first seals, all open
    admin_token: str | None = field(default=None, repr=False)  # the operator's: status page and admin API


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_LOG_LEVELS = ("debug", "info", "warning", "error")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Section:
    """One table of the file, read key by key; whatever is not read is an unknown key."""

    def __init__(self, source: str, path: str, table: Mapping[str, Any]) -> None:
        self.source, self.path, self.table = source, path, table
        self.known: list[str] = []
        self.from_env: set[str] = set()

    def error(self, key: str, expected: str, value: Any = None, show_value: bool = True) -> ConfigError:
        key = key if _BARE_KEY.fullmatch(key) else repr(key)  # "", "a.b", "x y": a key the reader can find
        where = f"{self.path}.{key}" if self.path else key
        if key in self.from_env:
            got = ", got a value from the environment (not shown)"
        else:
            got = f", got {value!r}" if show_value and value is not None else ""
        return ConfigError(f"{self.source}: {where}: expected {expected}{got}")

    def get(self, key: str, kind: type[T] | tuple[type, ...], expected: str, default: Any = None) -> Any:
        self.known.append(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, str) and "${" in value:
            self.from_env.add(key)
            value = self._expand(key, value)
        elif isinstance(value, list) and any(isinstance(v, str) and "${" in v for v in value):
            self.from_env.add(key)
            value = [self._expand(key, v) if isinstance(v, str) else v for v in value]
        accepts_bool = kind is bool or (isinstance(kind, tuple) and bool in kind)
        if isinstance(value, bool) and not accepts_bool:  # TOML's true is a Python int too
            raise self.error(key, expected, value)
        if not isinstance(value, kind):
            raise self.error(key, expected, value)
        return value

    def check(self, key: str, value: T, ok: Callable[[T], bool], expected: str) -> T:
        if not ok(value):
            raise self.error(key, expected, value)
        return value

    def finish(self) -> None:
        for key in self.table:
            if key not in self.known:
                hint = difflib.get_close_matches(key, self.known, n=1)
                mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.error(key, f"one of {', '.join(self.known)}{mean}; this key is unknown", show_value=False)

    def _expand(self, key: str, value: str) -> str:
        def variable(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise self.error(key, f"environment variable {name} to be set", show_value=False)
            return os.environ[name]

        return _ENV_REF.sub(variable, value)


def load(path: str | os.PathLike[str]) -> Settings:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: expected a readable file; cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: expected UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: expected valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(f"{source}: expected valid TOML: arrays or inline tables nested too deeply") from None
    return parse(data, source)


def parse(data: Mapping[str, Any], source: str = "<config>") -> Settings:
    top = _Section(source, "", data)
    server = _server(_table(top, "server"))
    proxy_section = _table(top, "proxy")
    proxy = _proxy(proxy_section)
    defaults = _RouteDefaults.read(proxy_section)
    proxy_section.finish()
    routes_value = top.get("route", list, "an array of tables [[route]] (at least one)", [])
    if not routes_value:
        raise top.error("route", "at least one [[route]] table", show_value=False)
    okta = _okta(_table(top, "okta")) if "okta" in data else None
    read = [_route(source, i, table, defaults, okta is not None) for i, table in enumerate(routes_value)]
    routes = [route for route, _ in read]
    keys = _binding_keys(_table(top, "binding"), any(r.sessions is not None for r in routes))
    admin = _optional_table(top, "admin", _admin_token)
    top.finish()
    _check_routes(source, routes, [from_env for _, from_env in read], server.prefix)
    return Settings(source=source, server=server, proxy=proxy, routes=RouteTable(routes), okta=okta,
                    binding_keys=keys, admin_token=admin)


def _secret(s: _Section, key: str, variable: str, why: str, *, min_length: int = 0) -> str:
    """A secret: only ever a reference to the environment, never written into the file, never shown."""
    raw = s.table.get(key)
    if not isinstance(raw, str) or not _ENV_REF.fullmatch(raw):
        raise s.error(key, f'a reference to the environment such as "${{{variable}}}" ({why})', show_value=False)
    value = str(s.get(key, str, "an environment reference", ""))
    if min_length:
        s.check(key, value, lambda v: len(v) >= min_length, f"a value of at least {min_length} characters")
    return value


def _admin_token(s: _Section) -> str:
    token = _secret(s, "token", "GATEWAY_ADMIN_TOKEN", "the operator token opens the status page and the admin "
                    "API", min_length=16)
    s.finish()
    return token


def _binding_keys(s: _Section, needed: bool) -> tuple[str, ...]:
    """The Fernet keys that seal bindings: `keys` from the environment, or `keys_file`, one key a line."""
    text = None
    if "keys" in s.table:
        text = _secret(s, "keys", "GATEWAY_BINDING_KEYS", "keys written into the file would travel with it")
    else:
        s.known.append("keys")
    path = s.get("keys_file", str, "a path to a file with one key a line", None)
    s.finish()
    if text is not None and path is not None:
        raise s.error("keys_file", "either keys or keys_file, not both", show_value=False)
    if path is not None:
        try:
            text = (Path(s.source).parent / path).read_text(encoding="ascii")  # relative to the configuration
        except (OSError, UnicodeDecodeError):
            raise s.error("keys_file", "a readable file with one Fernet key a line", path) from None
    if text is None:
        if needed:
            raise s.error("keys", "keys (or keys_file) for the binding cookie, since a route binds sessions "
                          '(make one with: session-gateway keygen)', show_value=False)
        return ()
    keys = tuple(k for k in re.split(r"[\s,]+", text) if k)
    try:
        BindingCodec(keys)
    except BindingKeyError as exc:
        raise s.error("keys_file" if path else "keys", f"Fernet keys: {exc}", show_value=False) from None
    return keys


def _okta(s: _Section) -> OktaSettings:
    api_token = _secret(s, "api_token", "OKTA_API_TOKEN", "a token written into the file would travel with it")
    org = s.get("org_url", str, 'the org URL, such as "https://example.okta.com"', None)
    org_url = _origin_url(s, "org_url", org, 'the org URL, "https://host" (no path)')
    cache = CachePolicy(
        ttl=_seconds(s, "cache_ttl", 60.0),
        negative_ttl=_seconds(s, "negative_ttl", 30.0),
        revalidate=float(s.check("revalidate", s.get("revalidate", (int, float), "a number of seconds", 10.0),
                                 lambda v: 0 <= v <= 3600, "a number of seconds from 0 to 3600")),
        max_entries=s.check("max_entries", s.get("max_entries", int, "a whole number of entries", 100_000),
                            lambda n: 1 <= n <= 10_000_000, "a number of entries from 1 to 10000000"),
    )
    settings = OktaSettings(
        org_url=org_url,
        api_token=api_token,
        timeout=_seconds(s, "timeout", 5.0),
        retries=s.check("retries", s.get("retries", int, "a whole number of retries", 2), lambda n: 0 <= n <= 5,
                        "a number of retries from 0 to 5"),
        cache=cache,
        low_headroom=_fraction(s, "rate_limit_low_headroom", 0.2),
        stretch=float(s.check("rate_limit_stretch", s.get("rate_limit_stretch", (int, float), "a factor", 4.0),
                              lambda v: 1 <= v <= 100, "a factor from 1 to 100")),
        max_background_refreshes=s.check(
            "max_background_refreshes", s.get("max_background_refreshes", int, "a whole number", 16),
            lambda n: 0 <= n <= 1000, "a number from 0 to 1000"),
        unknown_ids_per_second=_per_second(s, "unknown_ids_per_second", 5.0),
        unknown_ids_per_client=_per_second(s, "unknown_ids_per_client", 1.0),
        event_hook=_optional_table(s, "event_hook", _event_hook),
        universal_logout=_optional_table(s, "universal_logout", _universal_logout),
    )
    s.finish()
    return settings


def _optional_table(s: _Section, key: str, read: Callable[[_Section], T]) -> T | None:
    if key not in s.table:
        s.known.append(key)
        return None
    return read(_table(s, key))


def _event_hook(s: _Section) -> EventHookSettings:
    s.path = "okta.event_hook"
    secret = _secret(s, "secret", "OKTA_HOOK_SECRET", "the value Okta sends in the hook's authorization header",
                     min_length=16)
    header = s.check("header", s.get("header", str, "a header name", "Authorization"),
                     lambda v: re.fullmatch(r"[A-Za-z0-9-]{1,64}", v) is not None, "a header name")
    s.finish()
    return EventHookSettings(secret, header)


def _universal_logout(s: _Section) -> UniversalLogoutSettings:
    s.path = "okta.universal_logout"
    endpoint = s.get("endpoint_url", str, "the endpoint URL registered in Okta", None)
    url = None
    try:
        url = URL(endpoint) if endpoint else None
    except ValueError:
        pass
    if url is not None and (url.user is not None or url.password is not None):
        raise s.error("endpoint_url", "the endpoint's public URL as registered in Okta; credentials in it are "
                      "refused and not shown", show_value=False)
    # "?" or "#" even with nothing after: Okta's audience is the URL without a query, and must match it exactly
    if (url is None or url.scheme not in ("http", "https") or not url.host or "?" in str(endpoint)
            or "#" in str(endpoint)):
        raise s.error("endpoint_url", 'the endpoint\'s public URL as registered in Okta, such as '
                      '"https://app.example.com/.gateway/okta/universal-logout" (no query)', endpoint)
    leeway = s.check("leeway", float(s.get("leeway", (int, float), "seconds", 60.0)), lambda v: 0 <= v <= 600,
                     "seconds from 0 to 600")
    s.finish()
    return UniversalLogoutSettings(str(endpoint), leeway)


def _per_second(s: _Section, key: str, default: float) -> float:
    expected = "a number per second above 0 and at most 1000"
    return float(s.check(key, s.get(key, (int, float), expected, default), lambda v: 0 < v <= 1000, expected))


def _fraction(s: _Section, key: str, default: float) -> float:
    value = s.get(key, (int, float), "a fraction from 0 to 1", default)
    return float(s.check(key, value, lambda v: 0 <= v <= 1, "a fraction from 0 to 1"))


def _table(parent: _Section, key: str) -> _Section:
    value = parent.get(key, dict, f"a table [{key}]", {})
    return _Section(parent.source, key, value)


def _server(s: _Section) -> ServerSettings:
    listen = s.get("listen", str, 'an address "host:port"', "127.0.0.1:8080")
    host, port = _listen_address(s, listen)
    workers = s.check("workers", s.get("workers", int, "a whole number of processes", 1), lambda n: 1 <= n <= 64,
                      "a whole number of processes from 1 to 64")
    prefix = s.get("prefix", str, 'a path such as "/.gateway/"', "/.gateway/")
    s.check("prefix", prefix, lambda p: re.fullmatch(r"/[A-Za-z0-9._~-]+/", p) is not None,
            'a path of one segment with a slash at both ends, such as "/.gateway/"')
    proxies = s.get("trusted_proxies", list, "a list of addresses or networks", [])
    trusted = tuple(_network(s, "trusted_proxies", p) for p in proxies)
    access_log = s.get("access_log", bool, "true or false", False)
    level = s.check("log_level", s.get("log_level", str, "a log level", "info").lower(),
                    lambda v: v in _LOG_LEVELS, f"one of {', '.join(_LOG_LEVELS)}")
    shutdown = _seconds(s, "shutdown_timeout", 10.0)
    header_timeout = _seconds(s, "header_timeout", 10.0)
    body_timeout = _seconds(s, "body_timeout", 30.0)
    body_min_rate = _size(s, "body_min_rate", 500)
    s.finish()
    return ServerSettings(host, port, workers, prefix, trusted, access_log, level, shutdown, header_timeout,
                          body_timeout, body_min_rate)


def _proxy(s: _Section) -> ProxySettings:
    pool = s.check("pool_size", s.get("pool_size", int, "a whole number of connections", 256),
                   lambda n: 1 <= n <= 100_000, "a number of connections from 1 to 100000")
    keepalive = _seconds(s, "keepalive_timeout", 4.0)
    ws_max = _size(s, "websocket_max_message", 16 * 2**20)
    return ProxySettings(pool, keepalive, ws_max or 0)


@dataclass(frozen=True, slots=True)
class _RouteDefaults:
    connect_timeout: float
    read_timeout: float
    max_request_body: int | None

    @classmethod
    def read(cls, s: _Section) -> _RouteDefaults:
        return cls(_seconds(s, "connect_timeout", 5.0), _seconds(s, "read_timeout", 60.0),
                   _size(s, "max_request_body", 1 * 2**30))


def _route(source: str, index: int, table: Any, defaults: _RouteDefaults,
           okta: bool) -> tuple[Route, frozenset[str]]:
    """The route, and which of its keys took their value from the environment (never to be shown)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: route[{index}]: expected a table [[route]], got {table!r}")
    label = f"route[{index}]"
    if isinstance(table.get("name"), str):
        label = f"route[{index}] ({table['name']})"
    s = _Section(source, label, table)
    name = s.get("name", str, "a route name", None)
    if name is None:
        raise s.error("name", "a route name (letters, digits, '_', '.', '-')", show_value=False)
    s.check("name", name, lambda n: _ROUTE_NAME.fullmatch(n) is not None,
            "a route name (letters, digits, '_', '.', '-')")
    host = s.get("host", str, 'a host name, "*.domain" or "*"', "*").lower()
    s.check("host", host, lambda h: _HOST_PATTERN.fullmatch(h) is not None,
            'a host name without port, a wildcard "*.example.com", or "*"')
    path = s.get("path", str, 'a path prefix such as "/" or "/app"', "/")
    s.check("path", path, _clean_path, 'an absolute path prefix without "." or ".." segments, query or fragment')
    upstream = _origin_url(s, "upstream", s.get("upstream", str, 'an upstream URL such as "http://127.0.0.1:9000"',
                                                None),
                           'an upstream URL "http://host:port" or "https://host:port" (no path: use rewrite)')
    rewrite = s.get("rewrite", str, 'a path such as "/" (replaces the matched prefix)', None)
    if rewrite is not None:
        s.check("rewrite", rewrite, _clean_path, 'an absolute path without "." or ".." segments, query or fragment')
    route = Route(
        name=name,
        host=host,
        path=normalize_prefix(path),
        upstream=upstream,
        rewrite=rewrite,
        preserve_host=s.get("preserve_host", bool, "true or false", False),
        connect_timeout=_seconds(s, "connect_timeout", defaults.connect_timeout),
        read_timeout=_seconds(s, "read_timeout", defaults.read_timeout),
        max_request_body=_size(s, "max_request_body", defaults.max_request_body),
        grace=_fail_mode(s),
        sessions=_route_sessions(s, okta),
    )
    s.finish()
    return route, frozenset(s.from_env)


_MODES = tuple(m.value for m in Mode)
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def _route_sessions(s: _Section, okta: bool) -> RouteSessions | None:
    """The route's binding settings, or None when its policy is off and stays off (no [okta])."""
    default = Mode.ENFORCE.value if okta else Mode.OFF.value
    mode = Mode(s.check("policy", s.get("policy", str, "a binding policy", default), lambda m: m in _MODES,
                        f"one of {', '.join(_MODES)}"))
    if mode is not Mode.OFF and not okta:
        raise s.error("policy", '"off" while there is no [okta] table to validate sessions with', mode.value)
    profile = _profile(s)
    sources = tuple(s.get("sid_sources", list, 'a list of session-id sources such as ["saml"]', ["saml"]))
    for name in sources:
        try:
            source_factory(name) if isinstance(name, str) else None
        except PluginError as exc:
            raise s.error("sid_sources", str(exc), name, show_value=not isinstance(exc, UnusablePlugin)) from None
        if not isinstance(name, str):
            raise s.error("sid_sources", "a list of source names", name)
    options = _source_options(s, sources)
    idle = _optional_seconds(s, "idle_timeout")
    rules = SessionRules(
        unbound=Unbound(s.check("unbound", s.get("unbound", str, '"relogin" or "allow"', "relogin"),
                                lambda u: u in ("relogin", "allow"), '"relogin" or "allow"')),
        idle_timeout=idle,
        extend_okta_every=_optional_seconds(s, "extend_okta_on_activity"),
        touch_every=60.0 if idle is None else min(60.0, idle / 10),
    )
    cookie = _binding_cookie(_table(s, "binding_cookie"), s.path)
    domain = s.get("app_cookie_domain", str, "the Domain the app sets its cookies with", None)
    if mode is Mode.OFF and not okta:
        return None
    logout = _logout_rules(s)
    return RouteSessions(mode, profile, sources, options, rules, cookie, domain, logout)


def _logout_rules(s: _Section) -> LogoutRules:
    listed = s.get("logout_methods", list, 'a list of methods such as ["GET", "POST"]', ["GET", "POST"])
    for m in listed:
        s.check("logout_methods", m, lambda v: isinstance(v, str) and v.upper() in ("GET", "POST"),
                'a list of "GET" and "POST"')
    methods = s.check("logout_methods", tuple(m.upper() for m in listed), bool, 'a list of "GET" and "POST"')
    scope = s.check("logout_scope", s.get("logout_scope", str, '"session" or "user"', "session"),
                    lambda v: v in ("session", "user"), '"session" (this Okta session) or "user" (all of the user\'s)')
    answer = s.check("logout_answer", s.get("logout_answer", str, '"app" or "gateway"', "app"),
                     lambda v: v in ("app", "gateway"), '"app" (the app runs its logout) or "gateway"')
    after = s.check("after_logout_url", s.get("after_logout_url", str, "a path or URL", "/"), _path_or_url,
                    "a path starting with / or an http(s) URL (a trusted origin in Okta)")
    allowed = tuple(s.get("after_logout_allowed", list, "a list of URL prefixes", []))
    for prefix in allowed:
        if not (isinstance(prefix, str) and _url_prefix(prefix)):
            raise s.error("after_logout_allowed", 'URL prefixes with a scheme, host and path ending in "/", such as '
                          '"https://app.example.com/" (no credentials, query or fragment)', prefix,
                          show_value=not (isinstance(prefix, str) and "@" in prefix))
    param = s.check("after_logout_param", s.get("after_logout_param", str, "a query parameter name", "return"),
                    lambda v: re.fullmatch(r"[A-Za-z0-9_.~-]{1,64}", v) is not None,
                    "a query parameter name (letters, digits, _ . ~ -)")
    return LogoutRules(methods, scope, answer, after, allowed, param)


def _url_prefix(value: str) -> bool:
    try:
        url = URL(value)
    except ValueError:
        return False
    return (url.scheme in ("http", "https") and bool(url.host) and value.endswith("/") and url.user is None
            and "?" not in value and "#" not in value and "\\" not in value)


def _optional_seconds(s: _Section, key: str) -> float | None:
    if key not in s.table:
        s.known.append(key)
        return None
    return _seconds(s, key, 0.0)


def _profile(s: _Section) -> AppProfile:
    name = s.get("app_profile", str, "an app profile name", "generic")
    try:
        base = app_profile(name)
    except PluginError as exc:
        raise s.error("app_profile", str(exc), name, show_value=not isinstance(exc, UnusablePlugin)) from None
    cookies = tuple(s.get("app_cookies", list, "a list of cookie names", list(base.session_cookies)))
    for c in cookies:
        s.check("app_cookies", c, lambda v: isinstance(v, str) and _COOKIE_NAME.fullmatch(v) is not None
                and v != "*", "cookie names (a trailing * makes a prefix of at least one character)")
    if not cookies:
        raise s.error("app_cookies", "at least one cookie name", show_value=False)
    paths = tuple(s.get("logout_paths", list, "a list of paths", list(base.logout_paths)))
    for p in paths:
        s.check("logout_paths", p, lambda v: isinstance(v, str) and v.startswith("/"), "paths starting with /")
    acs = s.check("acs_path", s.get("acs_path", str, "a path", base.acs_path), lambda v: v.startswith("/"),
                  "a path starting with /")
    sign_in = s.check("sign_in_url", s.get("sign_in_url", str, "a path or URL", base.sign_in_url), _path_or_url,
                      "a path starting with / or an http(s) URL")
    logout = s.get("app_logout_url", str, "a path on the app", base.logout_url)
    if logout is not None:
        s.check("app_logout_url", logout, lambda v: v.startswith("/") and not v.startswith("//"),
                "a path on the app starting with / (the gateway calls it on the app's upstream)")
    cookie_path = s.check("app_cookie_path", s.get("app_cookie_path", str, "a path", base.cookie_path),
                          lambda v: v.startswith("/"), "a path starting with /")
    return AppProfile(base.name, cookies, acs, sign_in, paths, logout, cookie_path)


def _path_or_url(value: str) -> bool:
    if value.startswith("/") and not value.startswith("//"):
        return True
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _source_options(s: _Section, sources: tuple[str, ...]) -> SourceOptions:
    attribute = s.get("saml_session_attribute", str, "a SAML attribute name", "okta_session_id")
    okta_cookie = s.get("okta_cookie", str, 'Okta\'s cookie name, "sid"', "sid")
    header = s.get("session_id_header", str, "a header name", "X-Okta-Session-Id")
    trusted = s.get("session_id_header_from", list, "a list of addresses or networks", [])
    for value in trusted:
        _network(s, "session_id_header_from", value)
    if "header" in sources and not trusted:
        raise s.error("session_id_header_from", "the addresses of the component that sets "
                      f"{header} (the header source trusts no one else)", show_value=False)
    return SourceOptions(attribute, okta_cookie, header, tuple(trusted))


def _binding_cookie(s: _Section, route_label: str) -> CookieSettings:
    s.path = f"{route_label}.binding_cookie"
    default = CookieSettings()
    name = s.check("name", s.get("name", str, "a cookie name", default.name),
                   lambda v: _COOKIE_NAME.fullmatch(v) is not None, "a cookie name (letters, digits, - _ .)")
    path = s.check("path", s.get("path", str, "a path", default.path), lambda v: v.startswith("/"),
                   "a path starting with /")
    domain = s.get("domain", str, "a domain", None)
    secure_value = s.get("secure", (bool, str), 'true, false or "auto"', "auto")
    if isinstance(secure_value, str) and secure_value != "auto":
        raise s.error("secure", 'true, false or "auto" (Secure when the request came by https)', secure_value)
    httponly = s.get("httponly", bool, "true or false", True)
    samesite = s.check("samesite", s.get("samesite", str, '"Lax", "Strict" or "None"', default.samesite),
                       lambda v: v in ("Lax", "Strict", "None"), '"Lax", "Strict" or "None"')
    if samesite == "None" and secure_value is not True:
        raise s.error("samesite", '"Lax" or "Strict" unless secure = true (browsers drop SameSite=None cookies '
                      "that are not Secure)", samesite)
    s.finish()
    return CookieSettings(name, path, domain, None if secure_value == "auto" else bool(secure_value), httponly,
                          samesite)


def _fail_mode(s: _Section) -> float | None:
    """A route's answer while Okta cannot validate: None for `closed`, else the grace period in seconds."""
    mode = s.check("fail_mode", s.get("fail_mode", str, '"closed" or "grace"', "closed"),
                   lambda m: m in ("closed", "grace"), '"closed" (refuse with 503) or "grace"')
    if mode == "closed":
        if "grace_seconds" in s.table:
            raise s.error("grace_seconds", 'fail_mode = "grace" to go with it', show_value=False)
        s.known.append("grace_seconds")
        return None
    return _seconds(s, "grace_seconds", 300.0)


def _check_routes(source: str, routes: list[Route], from_env: list[frozenset[str]], prefix: str) -> None:
    def shown(i: int, key: str) -> str:
        return "${…} from the environment" if key in from_env[i] else repr(getattr(routes[i], key))

    def label(i: int) -> str:
        return f"route[{i}]" if "name" in from_env[i] else f"route[{i}] ({routes[i].name})"

    seen_names: dict[str, int] = {}
    seen_keys: dict[tuple[str, str], int] = {}
    reserved = prefix.rstrip("/")
    for i, route in enumerate(routes):
        if route.name in seen_names:
            raise ConfigError(f"{source}: route[{i}].name: expected a unique route name, "
                              f"got {shown(i, 'name')} again (route[{seen_names[route.name]}] has it)")
        seen_names[route.name] = i
        key = (route.host, route.path)
        if key in seen_keys:
            j = seen_keys[key]
            raise ConfigError(f"{source}: {label(i)}: expected a host and path no other route has; "
                              f"{label(j)} hides it (both match host {shown(i, 'host')} path {shown(i, 'path')})")
        seen_keys[key] = i
        if route.path == reserved or route.path.startswith(reserved + "/"):
            raise ConfigError(f"{source}: {label(i)}.path: expected a path outside the gateway's "
                              f"own prefix {prefix!r}, which hides it, got {shown(i, 'path')}")


def _clean_path(path: str) -> bool:
    if not path.startswith("/") or any(c in path for c in "?#\\ \t\r\n"):
        return False
    return not any(seg in (".", "..") for seg in path.split("/"))


def _origin_url(s: _Section, key: str, value: str | None, expected: str) -> URL:
    """An http(s) origin: scheme, host and port, nothing else (no credentials, path, query or fragment)."""
    if value is None:
        raise s.error(key, expected, show_value=False)
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise s.error(key, expected, value) from None
    if url.user is not None or url.password is not None:
        raise s.error(key, expected + "; credentials in it are refused and not shown", show_value=False)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise s.error(key, expected, value)
    if url.path not in ("", "/"):
        raise s.error(key, expected, value)
    try:
        port = url.port
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise s.error(key, expected + " with a port from 1 to 65535", value)
    return url.origin()


def _listen_address(s: _Section, listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 <= int(port) <= 65535:
        raise s.error("listen", 'an address "host:port" with a port from 0 to 65535', listen)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise s.error("listen", 'an IP address (or "localhost") and a port, "host:port"', listen) from None
    return host, int(port)


def _network(s: _Section, key: str, value: Any) -> IPNetwork:
    try:
        if not isinstance(value, str):
            raise ValueError
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise s.error(key, 'IP addresses or networks such as "10.0.0.0/8"', value) from None


def _seconds(s: _Section, key: str, default: float) -> float:
    value = s.get(key, (int, float), "a number of seconds", default)
    return float(s.check(key, value, lambda v: 0 < v <= 86400, "a number of seconds above 0 and at most 86400"))


def _size(s: _Section, key: str, default: int | None) -> int | None:
    """A size in bytes, as a number or a string such as "512MiB"; 0 means no limit (None)."""
    expected = 'a size in bytes: a whole number or a string such as "512MiB" (0 for no limit)'
    value = s.get(key, (int, str), expected, default)
    if value is None:
        return None
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise s.error(key, expected, value)
        value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value < 0:
        raise s.error(key, expected, value)
    return value or None
