"""Which route serves a request: host first, then the longest path prefix.

Rules of this module:
- Pure: no aiohttp, no I/O. The table is compiled once at start-up; `match()` is on the hot path.
- Host patterns are an exact name (`app.example.com`), a wildcard (`*.example.com`, which matches any name
  that ends in `.example.com` but not `example.com` itself) or `*` (any host). Names compare lower-case,
  without the port. A Host header the gateway builds a URL from must be a plain `host[:port]` (`plain_host`).
- Path prefixes match whole segments: `/app` matches `/app` and `/app/x`, never `/apple`.
- Among the routes whose host and prefix both match, the most specific host wins (exact, then the longest
  wildcard, then `*`); among those, the longest prefix.
- The path matched is the decoded path with dot segments resolved, so that `/app/../admin` is matched as
  `/admin`, the way the upstream will read it. A path that a servlet container reads otherwise (`servlet_path`:
  it drops `;params` from every raw segment before decoding and merges `//`: `/app;x/y` and `//app/y` are `/app/y`
  there) is matched both ways, and refused (no route) when the two readings pick different routes: the gateway
  never decides on one reading while the upstream acts on another.
- Only origin-form targets (`/path?query`) go upstream: absolute-form (`http://host/path`), authority-form and
  `*` have no upstream target, as the route was chosen by the Host header, not by the target's authority.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from .settings import RouteSessions


@dataclass(frozen=True, slots=True)
class Route:
    """One app behind the gateway."""

    name: str
    host: str
    path: str
    upstream: URL
    rewrite: str | None
    preserve_host: bool
    connect_timeout: float
    read_timeout: float
    max_request_body: int | None
    grace: float | None = None  # Okta unavailable: None refuses (fail mode closed), else serve last-known for N s
    sessions: RouteSessions | None = None  # how its app's sessions are bound to Okta's; None: not at all
    required_for_ready: bool = True  # its upstream unreachable fails readyz (false: shown, never failing)

    @property
    def upstream_origin(self) -> str:
        return str(self.upstream.origin())

    def upstream_target(self, raw_path: str) -> str | None:
        """The request target to send upstream, byte for byte, or None when the raw path does not carry the
        route's prefix literally (a prefix spelled with percent-escapes cannot be rewritten safely) or is not in
        origin form."""
        if raw_path[:1] != "/":
            return None
        if self.rewrite is None:
            return raw_path
        if self.path == "/":
            return None if _has_dot_segment(raw_path) else _join(self.rewrite, raw_path)
        if not raw_path.startswith(self.path):
            return None
        rest = raw_path[len(self.path) :]
        if rest and rest[0] not in "/?":
            return None
        if _has_dot_segment(rest):
            return None  # "/api/../x" would climb out of the rewrite once the upstream resolves it
        return _join(self.rewrite, rest)


def _has_dot_segment(raw_path: str) -> bool:
    """True when the path part has a `.` or `..` segment, spelled plainly, percent-encoded or with `;params`."""
    path = raw_path.partition("?")[0]
    if "%" not in path and "/." not in path and path[:1] != ".":
        return False  # a plain dot segment starts the path or follows a slash: `/1k.bin` has none
    for segment in path.split("/"):
        segment = segment.partition(";")[0].lower().replace("%2e", ".")
        if segment in (".", ".."):
            return True
    return False


def _join(base: str, rest: str) -> str:
    if not rest or rest[0] == "?":
        return base + rest
    if base.endswith("/"):
        return base + rest[1:] if rest.startswith("/") else base + rest
    return base + rest


def normalize_prefix(path: str) -> str:
    """The canonical form of a configured prefix: one leading slash, no trailing slash (but `/` itself)."""
    return "/" + path.strip("/") if path.strip("/") else "/"


def resolve_path(path: str) -> str:
    """Resolve `.` and `..` segments the way RFC 3986 section 5.2.4 does (never above the root).

    A segment such as `..;jsessionid=x` counts as `..`: Java servlet containers strip path parameters before
    resolving, so `/app/..;/admin` reaches the app as `/admin` and must be matched so.
    """
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    last = ""
    for segment in segments:
        last = segment.partition(";")[0]
        if last == "..":
            if out:
                out.pop()
        elif last != ".":
            out.append(segment)
    if last in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def servlet_path(raw_path: str, *, backslash_is_slash: bool = False) -> str:
    """A raw request path (a query or fragment is ignored) as a servlet container maps it, the way Tomcat does:
    `;params` stripped from each raw segment (so an escaped `%3B` is part of its segment), percent-decoded once,
    `//` merged, `.` and `..` segments resolved (never above the root); a trailing slash kept.

    `backslash_is_slash` also reads `\\` (spelled plainly or as `%5C`) as `/`, as IIS does; Tomcat does not by
    default."""
    path = raw_path.partition("?")[0].partition("#")[0]
    if ";" in path:
        path = "/".join(segment.partition(";")[0] for segment in path.split("/"))
    if "%" in path:
        path = unquote(path)
    if backslash_is_slash:
        path = path.replace("\\", "/")
    out: list[str] = []
    segment = ""
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    trailing = "/" if out and segment in ("", ".", "..") else ""
    return "/" + "/".join(out) + trailing


def host_of(host_header: str) -> str:
    """The host name of a Host header value: lower-case, without the port, IPv6 brackets kept."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.partition(":")[0].rstrip(".")  # "example.com." is the same name, fully qualified


_HOST = re.compile(r"(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?")  # linear: no ReDoS
_MAX_HOST = 300


def plain_host(value: str | None) -> str | None:
    """A Host header that is only `host[:port]` (a DNS name, an IPv4 address or a bracketed IPv6 one, a port
    from 1 to 65535), lower-cased; None for anything else (`a@evil.com`, a path, a space, an empty port)."""
    host = (value or "").lower()
    m = _HOST.fullmatch(host) if len(host) <= _MAX_HOST else None
    if m is None or (m.group(1) is not None and not 0 < int(m.group(1)) < 65536):
        return None
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:host.index("]")])
        except ValueError:
            return None
    return host


def host_specificity(pattern: str) -> tuple[int, int]:
    """A sort key: exact names beat wildcards, longer wildcards beat shorter, `*` comes last."""
    if pattern == "*":
        return (0, 0)
    if pattern.startswith("*."):
        return (1, len(pattern))
    return (2, len(pattern))


def prefix_matches(prefix: str, path: str) -> bool:
    if prefix == "/":
        return True
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def _longest_first(routes: Iterable[Route]) -> tuple[Route, ...]:
    return tuple(sorted(routes, key=lambda r: len(r.path), reverse=True))


class RouteTable:
    """Routes compiled for matching. Build it once; `match()` is cheap and allocation-free on a hit."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._exact: dict[str, tuple[Route, ...]] = {}
        wildcards: dict[str, list[Route]] = {}
        anywhere: list[Route] = []
        for route in self.routes:
            if route.host == "*":
                anywhere.append(route)
            elif route.host.startswith("*."):
                wildcards.setdefault(route.host[1:], []).append(route)
            else:
                self._exact.setdefault(route.host, ())
                self._exact[route.host] += (route,)
        self._exact = {host: _longest_first(rs) for host, rs in self._exact.items()}
        self._wildcards = tuple(
            (suffix, _longest_first(rs)) for suffix, rs in sorted(wildcards.items(), key=lambda kv: -len(kv[0]))
        )
        self._anywhere = _longest_first(anywhere)
        self._cache: dict[str, tuple[tuple[Route, ...], ...]] = {}

    def match(self, host_header: str, path: str, raw_path: str) -> Route | None:
        """The route for a request: `path` is its decoded path (aiohttp's `request.path`), `raw_path` its target
        as sent (`request.raw_path`), read a second time only when the decoded path has a `;` or a `//`."""
        groups = self._cache.get(host_header)
        if groups is None:
            groups = self._groups_for(host_of(host_header))
            if len(self._cache) < 1024:
                self._cache[host_header] = groups
        route = _first_match(groups, resolve_path(path))
        if ";" in path or "//" in path:
            if _first_match(groups, servlet_path(raw_path)) is not route:
                return None  # the upstream may read it as the other route's path
        return route

    def _groups_for(self, host: str) -> tuple[tuple[Route, ...], ...]:
        groups: list[tuple[Route, ...]] = []
        if host in self._exact:
            groups.append(self._exact[host])
        groups.extend(rs for suffix, rs in self._wildcards if host.endswith(suffix) and len(host) > len(suffix))
        if self._anywhere:
            groups.append(self._anywhere)
        return tuple(groups)


def _first_match(groups: tuple[tuple[Route, ...], ...], path: str) -> Route | None:
    for group in groups:
        for route in group:
            if prefix_matches(route.path, path):
                return route
    return None
