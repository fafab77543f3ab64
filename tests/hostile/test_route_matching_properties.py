"""Properties of route matching (gateway/routing.py): over paths spelled with escapes, dot segments, `;params`
and empty segments, no exception escapes, and the route matched is the one a reference reading of the path (as
a servlet container reads it: `;params` dropped from each raw segment, decoded, `//` merged, dot segments
resolved) picks, or the gateway refuses. What goes upstream is origin-form, and never climbs out of a route's
rewrite."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gateway.config import parse
from gateway.routing import Route, RouteTable, resolve_path

pytestmark = pytest.mark.hostile

PREFIXES = ["/", "/hr", "/hr/admin", "/app", "/a.b"]
SETTINGS = parse({"route": [{"name": f"r{i}", "host": "*", "path": p, "upstream": "http://127.0.0.1:9",
                             **({"rewrite": "/base/"} if p == "/app" else {})} for i, p in enumerate(PREFIXES)]},
                 "test.toml")
TABLE: RouteTable = SETTINGS.routes
SEGMENTS = ["hr", "HR", "admin", "app", "a.b", "x", "", ".", "..", "%2e", "%2E%2e", ".%2e", "..;x", "hr;j=1",
            "%68r", "%2F", "adm%69n", "app;", "%3B", "a%2eb"]
raw_path = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=7).map(lambda s: "/" + "/".join(s))
query = st.sampled_from(["", "?q=1", "?x=/../admin", "?"])


def reference_reading(raw: str) -> str:
    """Tomcat's: `;params` stripped from each raw segment, then decoded once (an escaped `%3B` is no parameter)."""
    stripped = "/".join(s.partition(";")[0] for s in raw.split("/"))
    segments = urllib.parse.unquote(stripped).split("/")
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    return "/" + "/".join(out)


def reference_route(path: str) -> Route | None:
    best = None
    for route in TABLE.routes:
        p = route.path
        if p == "/" or path == p or path.startswith(p + "/"):
            if best is None or len(p) > len(best.path):
                best = route
    return best


def aiohttp_path(raw: str) -> str:
    """The decoded path aiohttp hands the gateway (request.path)."""
    return URL.build(path=raw, encoded=True).path


@given(raw_path)
def test_the_route_matched_is_the_one_the_upstream_reads_or_none(raw):
    matched = TABLE.match("app.example", aiohttp_path(raw), raw)
    assert matched is None or matched is reference_route(reference_reading(raw))
    if ";" not in urllib.parse.unquote(raw) and "//" not in urllib.parse.unquote(raw):
        assert matched is reference_route(reference_reading(raw))  # plain paths are never refused


@given(raw_path, query)
def test_the_upstream_target_is_origin_form_and_stays_under_the_rewrite(raw, q):
    for route in TABLE.routes:
        target = route.upstream_target(raw + q)
        if target is None:
            continue
        assert target.startswith("/")
        if route.rewrite is not None:
            path = urllib.parse.unquote(target.partition("?")[0])
            assert resolve_path(path).startswith("/base"), (raw, target)
            assert target.endswith(q)


@given(st.sampled_from(["http://evil", "https://evil.example/app", "*", "evil:443", "//evil/x", ""]), raw_path)
def test_targets_that_are_not_origin_form_never_go_upstream(authority, raw):
    for route in TABLE.routes:
        target = route.upstream_target(authority + raw if authority not in ("*", "") else authority)
        assert target is None or target.startswith("/")
