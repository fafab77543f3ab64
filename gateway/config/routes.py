"""The schema of a [[route]]: where it matches and where it goes (its sessions are sessions.py's), and the checks
across routes (unique names, no route hidden by another or by the gateway's own prefix)."""

from __future__ import annotations

import re
from typing import Any

from ..routing import Route, normalize_prefix
from .reader import ConfigError, Section, clean_path, origin_url, seconds, size
from .sessions import read_route_sessions
from .tables import RouteDefaults

_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def read_route(source: str, index: int, table: Any, defaults: RouteDefaults,
               okta: bool) -> tuple[Route, frozenset[str]]:
    """The route, and which of its keys took their value from the environment (never to be shown)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: route[{index}]: expected a table [[route]], got {table!r}")
    label = f"route[{index}]"
    if isinstance(table.get("name"), str):
        label = f"route[{index}] ({table['name']})"
    s = Section(source, label, table)
    name = s.get("name", str, "a route name", None)
    if name is None:
        raise s.error("name", "a route name (letters, digits, '_', '.', '-')", show_value=False)
    s.check("name", name, lambda n: _ROUTE_NAME.fullmatch(n) is not None,
            "a route name (letters, digits, '_', '.', '-')")
    host = s.get("host", str, 'a host name, "*.domain" or "*"', "*").lower()
    s.check("host", host, lambda h: _HOST_PATTERN.fullmatch(h) is not None,
            'a host name without port, a wildcard "*.example.com", or "*"')
    path = s.get("path", str, 'a path prefix such as "/" or "/app"', "/")
    s.check("path", path, clean_path, 'an absolute path prefix without "." or ".." segments, query or fragment')
    upstream = origin_url(s, "upstream", s.get("upstream", str, 'an upstream URL such as "http://127.0.0.1:9000"',
                                               None),
                          'an upstream URL "http://host:port" or "https://host:port" (no path: use rewrite)')
    rewrite = s.get("rewrite", str, 'a path such as "/" (replaces the matched prefix)', None)
    if rewrite is not None:
        s.check("rewrite", rewrite, clean_path, 'an absolute path without "." or ".." segments, query or fragment')
    route = Route(
        name=name,
        host=host,
        path=normalize_prefix(path),
        upstream=upstream,
        rewrite=rewrite,
        preserve_host=s.get("preserve_host", bool, "true or false", False),
        connect_timeout=seconds(s, "connect_timeout", defaults.connect_timeout),
        read_timeout=seconds(s, "read_timeout", defaults.read_timeout),
        max_request_body=size(s, "max_request_body", defaults.max_request_body),
        grace=_fail_mode(s),
        sessions=read_route_sessions(s, okta),
        required_for_ready=s.get("required_for_ready", bool, "true or false", True),
    )
    s.finish()
    return route, frozenset(s.from_env)


def _fail_mode(s: Section) -> float | None:
    """A route's answer while Okta cannot validate: None for `closed`, else the grace period in seconds."""
    mode = s.check("fail_mode", s.get("fail_mode", str, '"closed" or "grace"', "closed"),
                   lambda m: m in ("closed", "grace"), '"closed" (refuse with 503) or "grace"')
    if mode == "closed":
        if "grace_seconds" in s.table:
            raise s.error("grace_seconds", 'fail_mode = "grace" to go with it', show_value=False)
        s.known.append("grace_seconds")
        return None
    return seconds(s, "grace_seconds", 300.0)


def check_routes(source: str, routes: list[Route], from_env: list[frozenset[str]], prefix: str) -> None:
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
