"""The schema of a route's sessions: its binding policy, its app profile and the overrides of it, its session-id
sources and their options, its binding cookie and its logout rules. Plugins are looked up through gateway/plugin.py,
which loads one only when a route names it."""

from __future__ import annotations

import re
from types import MappingProxyType

from ..plugin import (
    AppProfile,
    PluginError,
    PluginOptionError,
    SourceOptions,
    UnusablePlugin,
    app_profile,
    options_hook,
    source_factory,
)
from ..settings import CookieSettings, LogoutRules, Mode, RouteSessions, SessionRules, Unbound
from .reader import Section, network, optional_seconds, path_or_url, shown_key, subsection, url_prefix

_MODES = tuple(m.value for m in Mode)
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def read_route_sessions(s: Section, okta: bool) -> RouteSessions | None:
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
    idle = optional_seconds(s, "idle_timeout")
    rules = SessionRules(
        unbound=Unbound(s.check("unbound", s.get("unbound", str, '"relogin" or "allow"', "relogin"),
                                lambda u: u in ("relogin", "allow"), '"relogin" or "allow"')),
        idle_timeout=idle,
        extend_okta_every=optional_seconds(s, "extend_okta_on_activity"),
        touch_every=60.0 if idle is None else min(60.0, idle / 10),
    )
    cookie = _binding_cookie(subsection(s, "binding_cookie"), s.path)
    domain = s.get("app_cookie_domain", str, "the Domain the app sets its cookies with", None)
    if mode is Mode.OFF and not okta:
        return None
    logout = _logout_rules(s)
    return RouteSessions(mode, profile, sources, options, rules, cookie, domain, logout)


def _profile(s: Section) -> AppProfile:
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
    sign_in = s.check("sign_in_url", s.get("sign_in_url", str, "a path or URL", base.sign_in_url), path_or_url,
                      "a path starting with / or an http(s) URL")
    logout = s.get("app_logout_url", str, "a path on the app", base.logout_url)
    if logout is not None:
        s.check("app_logout_url", logout, lambda v: v.startswith("/") and not v.startswith("//"),
                "a path on the app starting with / (the gateway calls it on the app's upstream)")
    cookie_path = s.check("app_cookie_path", s.get("app_cookie_path", str, "a path", base.cookie_path),
                          lambda v: v.startswith("/"), "a path starting with /")
    return AppProfile(base.name, cookies, acs, sign_in, paths, logout, cookie_path)


def _source_options(s: Section, sources: tuple[str, ...]) -> SourceOptions:
    attribute = s.get("saml_session_attribute", str, "a SAML attribute name", "okta_session_id")
    okta_cookie = s.get("okta_cookie", str, 'Okta\'s cookie name, "sid"', "sid")
    header = s.get("session_id_header", str, "a header name", "X-Okta-Session-Id")
    trusted = s.get("session_id_header_from", list, "a list of addresses or networks", [])
    for value in trusted:
        network(s, "session_id_header_from", value)
    if "header" in sources and not trusted:
        raise s.error("session_id_header_from", "the addresses of the component that sets "
                      f"{header} (the header source trusts no one else)", show_value=False)
    return SourceOptions(attribute, okta_cookie, header, tuple(trusted), plugins=_plugin_options(s, sources))


def _plugin_options(s: Section, sources: tuple[str, ...]) -> dict[str, object]:
    """What each source's options hook makes of its table [route.plugin.<name>] (of {} when the route has none),
    by name. The keys of a table are the plugin's to check; a table for a plugin the route does not use is refused
    without loading that plugin."""
    tables = Section(s.source, f"{s.path}.plugin",
                     s.get("plugin", dict, "a table of plugin options, [route.plugin.<name>] for each", {}))
    for name, table in tables.table.items():
        if name not in sources:
            named = ", ".join(sources) or "none"
            raise tables.error(name, f"a table only for a plugin in this route's sid_sources ({named})",
                               show_value=False)
        if not isinstance(table, dict):
            raise tables.error(name, f"a table [route.plugin.{shown_key(name)}] of the plugin's options",
                               show_value=False)
    found: dict[str, object] = {}
    for name in dict.fromkeys(sources):
        try:
            hook = options_hook(name)
        except PluginError as exc:
            raise tables.error(name, str(exc), show_value=False) from None
        if hook is None:
            if name in tables.table:
                raise tables.error(name, f'a table only for a plugin with options of its own; plugin "{name}" has '
                                   "none", show_value=False)
            continue
        own = Section(s.source, f"{tables.path}.{shown_key(name)}", tables.table.get(name, {}))
        values = MappingProxyType({key: own.value(key) for key in own.table})
        try:
            found[name] = hook(values)
        except PluginOptionError as exc:
            raise own.error(str(exc.key), str(exc.expected), show_value=False) from None
        except PluginError as exc:
            raise tables.error(name, str(exc), show_value=False) from None
    return found


def _logout_rules(s: Section) -> LogoutRules:
    listed = s.get("logout_methods", list, 'a list of methods such as ["GET", "POST"]', ["GET", "POST"])
    for m in listed:
        s.check("logout_methods", m, lambda v: isinstance(v, str) and v.upper() in ("GET", "POST"),
                'a list of "GET" and "POST"')
    methods = s.check("logout_methods", tuple(m.upper() for m in listed), bool, 'a list of "GET" and "POST"')
    scope = s.check("logout_scope", s.get("logout_scope", str, '"session" or "user"', "session"),
                    lambda v: v in ("session", "user"), '"session" (this Okta session) or "user" (all of the user\'s)')
    answer = s.check("logout_answer", s.get("logout_answer", str, '"app" or "gateway"', "app"),
                     lambda v: v in ("app", "gateway"), '"app" (the app runs its logout) or "gateway"')
    after = s.check("after_logout_url", s.get("after_logout_url", str, "a path or URL", "/"), path_or_url,
                    "a path starting with / or an http(s) URL (a trusted origin in Okta)")
    allowed = tuple(s.get("after_logout_allowed", list, "a list of URL prefixes", []))
    for prefix in allowed:
        if not (isinstance(prefix, str) and url_prefix(prefix)):
            raise s.error("after_logout_allowed", 'URL prefixes with a scheme, host and path ending in "/", such as '
                          '"https://app.example.com/" (no credentials, query or fragment)', prefix,
                          show_value=not (isinstance(prefix, str) and "@" in prefix))
    param = s.check("after_logout_param", s.get("after_logout_param", str, "a query parameter name", "return"),
                    lambda v: re.fullmatch(r"[A-Za-z0-9_.~-]{1,64}", v) is not None,
                    "a query parameter name (letters, digits, _ . ~ -)")
    return LogoutRules(methods, scope, answer, after, allowed, param)


def _binding_cookie(s: Section, route_label: str) -> CookieSettings:
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
