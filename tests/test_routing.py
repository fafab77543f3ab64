"""The route table: host first, then the longest whole-segment prefix; plain values only."""

from __future__ import annotations

import pytest

from gateway.config import parse
from gateway.routing import RouteTable, host_of, normalize_prefix, resolve_path


def table(*routes: tuple[str, str, str]) -> RouteTable:
    return parse({"route": [{"name": n, "host": h, "path": p, "upstream": "http://127.0.0.1:1"}
                            for n, h, p in routes]}).routes


def matched(t: RouteTable, host: str, path: str) -> str | None:
    route = t.match(host, path)
    return route.name if route else None


ROUTES = table(
    ("any-root", "*", "/"),
    ("any-app", "*", "/app"),
    ("wild", "*.example.com", "/"),
    ("wild-deep", "*.eu.example.com", "/"),
    ("exact-app", "hr.example.com", "/app"),
)


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("hr.example.com", "/app/x", "exact-app"),
        ("hr.example.com", "/other", "wild"),  # the exact host has no matching prefix: the wildcard serves it
        ("crm.example.com", "/app/x", "wild"),  # a more specific host beats a longer prefix
        ("crm.eu.example.com", "/", "wild-deep"),
        ("example.com", "/app", "any-app"),  # a wildcard never matches its bare domain
        ("other.test", "/apple", "any-root"),
        ("other.test", "/app", "any-app"),
        ("other.test", "/app/", "any-app"),
        ("HR.Example.com:8443", "/app", "exact-app"),
        ("", "/app/x", "any-app"),
        ("[::1]:8080", "/", "any-root"),
        ("other.test", "/x/../app/y", "any-app"),
        ("hr.example.com", "/app/../other", "wild"),
    ],
)
def test_match_precedence(host, path, expected):
    assert matched(ROUTES, host, path) == expected


def test_no_match_is_none():
    t = table(("only", "app.example.com", "/app"))
    assert matched(t, "app.example.com", "/other") is None
    assert matched(t, "else.example.com", "/app") is None


def test_many_distinct_hosts_do_not_grow_the_cache_without_bound():
    t = table(("r", "*", "/"))
    for i in range(5000):
        assert matched(t, f"h{i}.test", "/") == "r"
    assert len(t._cache) <= 1024


@pytest.mark.parametrize(
    ("prefix", "rewrite", "raw", "target"),
    [
        ("/api", "/v2", "/api/x?y=1", "/v2/x?y=1"),
        ("/api", "/v2", "/api", "/v2"),
        ("/api", "/v2", "/api?q", "/v2?q"),
        ("/api", "/", "/api/x", "/x"),
        ("/api", "/", "/api", "/"),
        ("/api", "/v2/", "/api/x", "/v2/x"),
        ("/", "/base", "/x%20y?z", "/base/x%20y?z"),
        ("/api", "/v2", "/%61pi/x", None),
        ("/api", None, "/api/x%2Fy?q=%7E", "/api/x%2Fy?q=%7E"),
    ],
)
def test_upstream_target(prefix, rewrite, raw, target):
    data = {"name": "r", "path": prefix, "upstream": "http://127.0.0.1:1"}
    if rewrite is not None:
        data["rewrite"] = rewrite
    route = parse({"route": [data]}).routes.routes[0]
    assert route.upstream_target(raw) == target


@pytest.mark.parametrize(("given", "normal"), [("/", "/"), ("/app/", "/app"), ("app", "/app"), ("//a//", "/a")])
def test_normalize_prefix(given, normal):
    assert normalize_prefix(given) == normal


@pytest.mark.parametrize(
    ("path", "resolved"),
    [("/a/b", "/a/b"), ("/a/../b", "/b"), ("/..", "/"), ("/../../x", "/x"), ("/a/./b/.", "/a/b/"), ("/a/b/..", "/a/")],
)
def test_resolve_path(path, resolved):
    assert resolve_path(path) == resolved


@pytest.mark.parametrize(("header", "host"), [("App.Test:80", "app.test"), ("[::1]:8080", "[::1]"), (" x ", "x")])
def test_host_of(header, host):
    assert host_of(header) == host
