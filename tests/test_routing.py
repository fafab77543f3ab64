"""gateway/routing.py: which route serves a request (host first, then the longest whole-segment prefix), and the
request target sent upstream. Plain values only."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given as examples
from hypothesis import strategies as st
from yarl import URL

from gateway.config import parse
from gateway.routing import (
    Route,
    RouteTable,
    _has_dot_segment,
    host_of,
    normalize_prefix,
    resolve_path,
    servlet_path,
)


def route(name: str = "r", host: str = "*", path: str = "/", rewrite: str | None = None) -> Route:
    return Route(name=name, host=host, path=path, upstream=URL("http://127.0.0.1:9000"), rewrite=rewrite,
                 preserve_host=False, connect_timeout=5.0, read_timeout=60.0, max_request_body=None)


def table(*specs: tuple[str, str, str]) -> RouteTable:
    """A table built the way the gateway builds it: through config.parse."""
    data: dict[str, Any] = {"route": [{"name": n, "host": h, "path": p, "upstream": "http://127.0.0.1:9000"}
                                      for n, h, p in specs]}
    return parse(data).routes


def name_of(t: RouteTable, host: str, path: str) -> str | None:
    found = t.match(host, path, path)
    return found.name if found else None


# --- host precedence ------------------------------------------------------------------------------------------


def test_exact_host_beats_wildcard_and_star():
    t = table(("star", "*", "/"), ("wild", "*.example.com", "/"), ("exact", "app.example.com", "/"))
    assert name_of(t, "app.example.com", "/") == "exact"


def test_wildcard_beats_star():
    t = table(("star", "*", "/"), ("wild", "*.example.com", "/"))
    assert name_of(t, "other.example.com", "/x") == "wild"


def test_star_serves_other_hosts():
    t = table(("star", "*", "/"), ("wild", "*.example.com", "/"), ("exact", "app.example.com", "/"))
    assert name_of(t, "elsewhere.test", "/") == "star"


def test_longer_wildcard_beats_shorter():
    t = table(("short", "*.example.com", "/"), ("long", "*.eu.example.com", "/"))
    assert name_of(t, "app.eu.example.com", "/") == "long"
    assert name_of(t, "app.us.example.com", "/") == "short"


def test_a_more_specific_host_beats_a_longer_prefix():
    t = table(("star-app", "*", "/app/deep"), ("wild-root", "*.example.com", "/"))
    assert name_of(t, "x.example.com", "/app/deep/x") == "wild-root"


def test_wildcard_does_not_match_the_bare_domain():
    t = table(("wild", "*.example.com", "/"))
    assert name_of(t, "example.com", "/") is None


def test_wildcard_matches_several_labels_deep():
    t = table(("wild", "*.example.com", "/"))
    assert name_of(t, "a.b.example.com", "/") == "wild"


def test_wildcard_needs_a_dot_boundary():
    t = table(("wild", "*.example.com", "/"))
    assert name_of(t, "badexample.com", "/") is None


# --- path precedence ------------------------------------------------------------------------------------------


def test_longest_prefix_wins_within_a_host():
    t = table(("root", "*", "/"), ("app", "*", "/app"), ("deep", "*", "/app/admin"))
    assert name_of(t, "h", "/app/admin/x") == "deep"
    assert name_of(t, "h", "/app/other") == "app"
    assert name_of(t, "h", "/other") == "root"


def test_order_in_the_file_does_not_matter():
    t = table(("deep", "*", "/app/admin"), ("root", "*", "/"), ("app", "*", "/app"))
    assert name_of(t, "h", "/app/admin/x") == "deep"
    assert name_of(t, "h", "/app/x") == "app"


def test_exact_host_without_a_matching_prefix_falls_back_to_wildcard():
    t = table(("exact", "app.example.com", "/app"), ("wild", "*.example.com", "/"), ("star", "*", "/"))
    assert name_of(t, "app.example.com", "/other") == "wild"


def test_exact_host_without_a_matching_prefix_falls_back_to_star():
    t = table(("exact", "app.example.com", "/app"), ("star", "*", "/"))
    assert name_of(t, "app.example.com", "/other") == "star"


def test_wildcard_without_a_matching_prefix_falls_back_to_star():
    t = table(("wild", "*.example.com", "/app"), ("star", "*", "/"))
    assert name_of(t, "x.example.com", "/other") == "star"


def test_longer_wildcard_without_a_matching_prefix_falls_back_to_shorter():
    t = table(("long", "*.eu.example.com", "/app"), ("short", "*.example.com", "/"))
    assert name_of(t, "x.eu.example.com", "/other") == "short"


@pytest.mark.parametrize(("path", "expected"), [("/app", "app"), ("/app/", "app"), ("/app/x", "app"),
                                                ("/apple", None), ("/ap", None), ("/", None), ("/APP", None)])
def test_prefixes_match_whole_segments(path, expected):
    assert name_of(table(("app", "*", "/app")), "h", path) == expected


def test_root_prefix_matches_everything():
    t = table(("root", "*", "/"))
    assert [name_of(t, "h", p) for p in ("/", "/x", "/x/y/z")] == ["root"] * 3


def test_no_match_is_none():
    t = table(("only", "app.example.com", "/app"))
    assert name_of(t, "app.example.com", "/other") is None
    assert name_of(t, "else.example.com", "/app") is None


def test_table_keeps_routes_in_file_order():
    t = table(("b", "*", "/b"), ("a", "*", "/a"))
    assert [r.name for r in t.routes] == ["b", "a"]


# --- the Host header ------------------------------------------------------------------------------------------


def test_host_header_port_is_ignored():
    t = table(("exact", "app.example.com", "/"))
    assert name_of(t, "app.example.com:8443", "/") == "exact"


def test_host_header_case_is_ignored():
    t = table(("exact", "app.example.com", "/"), ("wild", "*.example.com", "/x"))
    assert name_of(t, "APP.Example.COM", "/") == "exact"
    assert name_of(t, "OTHER.EXAMPLE.COM:80", "/x") == "wild"


def test_ipv6_host_header_matches_an_ipv6_route():
    t = RouteTable([route("v6", host="[::1]"), route("star", host="*", path="/x")])
    assert t.match("[::1]:8080", "/", "/").name == "v6"
    assert t.match("[::1]", "/", "/").name == "v6"


def test_ipv6_host_header_falls_to_star():
    t = table(("star", "*", "/"))
    assert name_of(t, "[::1]:8080", "/") == "star"


def test_empty_host_header_only_matches_star():
    t = table(("exact", "app.example.com", "/"), ("star", "*", "/x"))
    assert name_of(t, "", "/x") == "star"
    assert name_of(t, "", "/") is None


def test_same_host_header_gives_same_answer_twice():
    t = table(("exact", "app.example.com", "/app"), ("star", "*", "/"))
    assert [name_of(t, "app.example.com", "/app") for _ in range(2)] == ["exact", "exact"]
    assert [name_of(t, "app.example.com", "/x") for _ in range(2)] == ["star", "star"]


def test_many_distinct_hosts_still_match():
    t = table(("wild", "*.example.com", "/"), ("star", "*", "/"))
    assert all(name_of(t, f"h{i}.example.com", "/") == "wild" for i in range(2000))
    assert name_of(t, "late.test", "/") == "star"


# --- dot segments ---------------------------------------------------------------------------------------------


def test_dot_dot_is_resolved_before_matching():
    t = table(("app", "*", "/app"), ("admin", "*", "/admin"))
    assert name_of(t, "h", "/app/../admin") == "admin"


def test_dot_dot_cannot_climb_into_a_prefix_from_outside():
    t = table(("app", "*", "/app"), ("root", "*", "/"))
    assert name_of(t, "h", "/app/../x") == "root"
    assert name_of(t, "h", "/x/../app/y") == "app"


def test_dot_dot_at_the_root_stays_at_the_root():
    t = table(("app", "*", "/app"), ("root", "*", "/"))
    assert name_of(t, "h", "/..") == "root"
    assert name_of(t, "h", "/../../app") == "app"


def test_single_dot_is_resolved_before_matching():
    assert name_of(table(("app", "*", "/app")), "h", "/./app/./x") == "app"


# --- upstream_target ------------------------------------------------------------------------------------------


def test_without_rewrite_the_raw_path_goes_as_is():
    assert route(path="/api").upstream_target("/api/x%2Fy?q=%7E") == "/api/x%2Fy?q=%7E"


@pytest.mark.parametrize(
    ("raw", "target"),
    [("/api/x?y=1", "/v2/x?y=1"), ("/api", "/v2"), ("/api?q", "/v2?q"), ("/api/", "/v2/"), ("/api/a/b", "/v2/a/b")],
)
def test_rewrite_replaces_the_prefix(raw, target):
    assert route(path="/api", rewrite="/v2").upstream_target(raw) == target


@pytest.mark.parametrize(("raw", "target"), [("/api/x", "/x"), ("/api", "/"), ("/api?q", "/?q"), ("/api/", "/")])
def test_rewrite_to_root(raw, target):
    assert route(path="/api", rewrite="/").upstream_target(raw) == target


@pytest.mark.parametrize(("raw", "target"), [("/api/x", "/v2/x"), ("/api", "/v2/"), ("/api?q", "/v2/?q")])
def test_rewrite_with_a_trailing_slash(raw, target):
    assert route(path="/api", rewrite="/v2/").upstream_target(raw) == target


@pytest.mark.parametrize(("raw", "target"), [("/x%20y?z", "/base/x%20y?z"), ("/", "/base/"), ("/?q", "/base/?q")])
def test_root_route_with_rewrite(raw, target):
    assert route(path="/", rewrite="/base").upstream_target(raw) == target


def test_root_route_with_root_rewrite_is_unchanged():
    assert route(path="/", rewrite="/").upstream_target("/x?y") == "/x?y"


def test_percent_encoded_prefix_cannot_be_rewritten():
    assert route(path="/api", rewrite="/v2").upstream_target("/%61pi/x") is None


def test_raw_path_that_only_starts_like_the_prefix_cannot_be_rewritten():
    assert route(path="/api", rewrite="/v2").upstream_target("/apix") is None


def test_rewrite_from_parse_uses_the_normalized_prefix():
    r = parse({"route": [{"name": "api", "path": "/api/", "rewrite": "/v2", "upstream": "http://h:1"}]}).routes.routes[0]
    assert r.upstream_target("/api/orders?id=1") == "/v2/orders?id=1"


def test_rewrite_keeps_dot_segments_from_climbing_out_of_the_rewrite():
    # "/api/../api/x" is matched as "/api/x"; the upstream must not get a path that resolves outside "/v2".
    target = route(path="/api", rewrite="/v2").upstream_target("/api/../api/x")
    assert target is None or resolve_path(target).startswith("/v2/")


# --- normalize_prefix, resolve_path, host_of -----------------------------------------------------------------


@pytest.mark.parametrize(("given", "normal"), [("/", "/"), ("", "/"), ("//", "/"), ("/app", "/app"), ("/app/", "/app"),
                                               ("/a/b/", "/a/b"), ("app", "/app")])
def test_normalize_prefix(given, normal):
    assert normalize_prefix(given) == normal


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/a/b", "/a/b"),
        ("/app/../admin", "/admin"),
        ("/..", "/"),
        ("/../..", "/"),
        ("/../x", "/x"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/b/../../c", "/c"),
        ("/a/.hidden", "/a/.hidden"),
        ("/a/..b", "/a/..b"),
        ("/", "/"),
    ],
)
def test_resolve_path(path, resolved):
    assert resolve_path(path) == resolved


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        (" example.com ", "example.com"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("", ""),
    ],
)
def test_host_of(header, host):
    assert host_of(header) == host


def test_servlet_path_parameters_do_not_hide_a_dot_segment():
    assert resolve_path("/app/..;jsessionid=1/admin") == "/admin"
    assert resolve_path("/app/.;x/y") == "/app/y"
    assert resolve_path("/app/a;b/c") == "/app/a;b/c"


def test_a_fully_qualified_host_matches_its_route():
    t = table(("exact", "app.example.com", "/"), ("other", "*", "/"))
    assert t.match("app.example.com.", "/", "/").name == "exact"  # type: ignore[union-attr]


# --- the readings of issue 10 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "read"), [("/a;x/b", "/a/b"), ("//hr/x", "/hr/x"), ("/hr/..;/admin", "/admin"),
                                            ("/a/b/", "/a/b/"), ("//", "/"), ("/a/./b/../c;p", "/a/c")])
def test_servlet_path_reads_as_a_servlet_container_does(path, read):
    assert servlet_path(path) == read


@pytest.mark.parametrize(("raw", "read"), [
    ("/a%3Bx/b", "/a;x/b"), ("/hr/..%3Bx/admin", "/hr/..;x/admin"), ("/hr;x%2F../admin", "/hr/admin"),
    ("/hr/%2e%2e/admin", "/admin"), ("/hr/x;%2F/../y", "/hr/y"), ("/hr/x?q=/../y", "/hr/x"), ("/a\\b", "/a\\b")])
def test_servlet_path_strips_params_from_the_raw_segments_before_decoding(raw, read):
    """As Tomcat: an escaped `;` is part of its segment, an escape inside `;params` is dropped with them."""
    assert servlet_path(raw) == read


def test_a_backslash_is_a_separator_only_when_asked():
    assert servlet_path("/hr\\x\\..\\logout", backslash_is_slash=True) == "/hr/logout"
    assert servlet_path("/hr%5Clogout", backslash_is_slash=True) == "/hr/logout"


def test_an_escaped_semicolon_reads_the_same_both_ways_and_is_served():
    t = table(("hr", "*", "/hr"), ("root", "*", "/"))
    assert name_of(t, "*", "/hr;x/admin") is None  # the servlet reading is /hr/admin: two routes, refused
    assert t.match("*", "/hr;x/admin", "/hr%3Bx/admin").name == "root"  # type: ignore[union-attr]


@pytest.mark.parametrize("target", ["http://evil/x", "https://evil.example/app/x", "*", "evil:443", ""])
def test_only_origin_form_targets_have_an_upstream_target(target):
    for rewrite in (None, "/base/"):
        assert route(path="/", rewrite=rewrite).upstream_target(target) is None


def _has_dot_segment_by_walking(raw_path: str) -> bool:
    """The rule spelled as a walk over every segment (what `_has_dot_segment` does when its quick test fails)."""
    return any(segment.partition(";")[0].lower().replace("%2e", ".") in (".", "..")
               for segment in raw_path.partition("?")[0].split("/"))


@examples(st.lists(st.sampled_from(["/", ".", "..", "%2e", "%2E", ";", "x", "1k.bin", "?", "%", "e"]), max_size=8))
def test_the_quick_test_for_dot_segments_misses_none(parts):
    raw_path = "".join(parts)
    assert _has_dot_segment(raw_path) == _has_dot_segment_by_walking(raw_path)
