"""gateway/revocation/logout.py, its pure parts: where the browser goes after Okta's sign-out (no open redirect),
and the sign-out URL that carries it."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict
from yarl import URL

from gateway.revocation.logout import LogoutInterceptor, after_logout_target, logout_form, okta_sign_out_url
from gateway.routing import plain_host
from gateway.settings import LogoutRules

ORIGIN = "https://app.example.com"
GOODBYE = "https://app.example.com/goodbye/"
RULES = LogoutRules(after_logout_url="/signed-out", allowed=(GOODBYE, "https://www.example.com/"))
DEFAULT = "https://app.example.com/signed-out"


def target(asked: str | None, rules: LogoutRules = RULES, origin: str = ORIGIN) -> str:
    return after_logout_target(rules, {} if asked is None else {rules.param: asked}, origin)


# --- the route's own after-logout URL -------------------------------------------------------------------------------


def test_the_route_default_path_is_made_absolute_with_the_origin():
    assert target(None) == DEFAULT
    assert target(None, origin="http://127.0.0.1:8080") == "http://127.0.0.1:8080/signed-out"


def test_the_default_after_logout_url_is_the_root_of_the_origin():
    assert after_logout_target(LogoutRules(), {}, ORIGIN) == "https://app.example.com/"


def test_an_absolute_default_is_kept_as_it_is():
    rules = LogoutRules(after_logout_url="https://www.example.com/signed-out?from=hr")
    assert target(None, rules) == "https://www.example.com/signed-out?from=hr"
    assert target(None, rules, origin="http://127.0.0.1:8080") == "https://www.example.com/signed-out?from=hr"


def test_an_empty_request_parameter_is_the_default():
    assert target("") == DEFAULT


# --- a requested URL, only under an allowed prefix ---------------------------------------------------------------


@pytest.mark.parametrize("asked", [GOODBYE, GOODBYE + "hr", GOODBYE + "hr/page?x=1&y=2#top",
                                   "https://www.example.com/", "https://www.example.com/news",
                                   GOODBYE + "@evil.example", GOODBYE + "%40evil", GOODBYE + "caf%C3%A9",
                                   GOODBYE + "..x/", GOODBYE + "x..", GOODBYE + "...", GOODBYE + "?next=/admin"])
def test_a_requested_url_under_an_allowed_prefix_is_used(asked):
    assert target(asked) == asked


def test_a_requested_url_is_read_from_the_route_parameter_only():
    rules = LogoutRules(after_logout_url="/signed-out", allowed=(GOODBYE,), param="next")
    assert after_logout_target(rules, {"next": GOODBYE + "a"}, ORIGIN) == GOODBYE + "a"
    assert after_logout_target(rules, {"return": GOODBYE + "a"}, ORIGIN) == DEFAULT


def test_the_first_of_repeated_parameters_is_the_one_checked():
    query = MultiDict([("return", "https://evil.example/"), ("return", GOODBYE)])
    assert after_logout_target(RULES, query, ORIGIN) == DEFAULT
    query = MultiDict([("return", GOODBYE), ("return", "https://evil.example/")])
    assert after_logout_target(RULES, query, ORIGIN) == GOODBYE


def test_without_allowed_prefixes_nothing_requested_is_used():
    rules = LogoutRules(after_logout_url="/signed-out")
    assert target(GOODBYE, rules) == DEFAULT
    assert target(ORIGIN + "/signed-out", rules) == DEFAULT


REFUSED = [
    # other hosts, however they are written
    "https://evil.example/goodbye/", "http://app.example.com/goodbye/", "//evil.example/goodbye/",
    "///evil.example/goodbye/", "https://app.example.com.evil.example/goodbye/", "https://evil.example/?" + GOODBYE,
    "https://evil.example/#" + GOODBYE, "https://app.example.com:8443/goodbye/",
    # a lookalike of the prefix, a relative or case-changed form of it
    "https://app.example.com/goodbyeX", "https://app.example.com/goodbye", "https://app.example.com/goodbye%2F",
    "https://app.example.com/goodbye%2Fx", "/goodbye/", "goodbye/", "HTTPS://APP.EXAMPLE.COM/goodbye/",
    "https://APP.example.com/goodbye/", " https://app.example.com/goodbye/",
    # userinfo: the host is the one after the @
    "https://app.example.com@evil.example/goodbye/", "https://app.example.com:443@evil.example/goodbye/",
    "https://user:pw@app.example.com/goodbye/",
    # other schemes
    "javascript:alert(1)//" + GOODBYE, "javascript:alert(document.domain)", "data:text/html,<script>x</script>",
    "vbscript:" + GOODBYE, "file:///etc/passwd",
    # backslashes, which browsers read as slashes
    GOODBYE + "\\..\\..\\evil", GOODBYE + "..\\admin", "https:\\\\evil.example\\goodbye\\",
    "https://app.example.com\\@evil.example/goodbye/", "https://app.example.com/goodbye/\\\\evil.example",
    # dot segments that leave the prefix once the browser resolves the path
    GOODBYE + "../admin", GOODBYE + "..", GOODBYE + "./../admin", GOODBYE + "x/../../admin",
    GOODBYE + "%2e%2e/admin", GOODBYE + "%2E%2e/admin", GOODBYE + ".%2e/admin", GOODBYE + "%2e./admin",
    GOODBYE + "%2e/../admin", GOODBYE + "../admin?x=1", GOODBYE + "..#x",
    # control characters and whitespace, which browsers drop from URLs (".\t." is ".." to them)
    GOODBYE + ".\t./admin", GOODBYE + "\t../admin", GOODBYE + "..\n/admin", GOODBYE + "\r\nSet-Cookie: x=1",
    GOODBYE + "\x00", GOODBYE + "a b", GOODBYE + "\u2028", GOODBYE + "\x7f",
]


@pytest.mark.parametrize("asked", REFUSED)
def test_a_requested_url_outside_the_allowed_prefixes_falls_back_to_the_default(asked):
    assert target(asked) == DEFAULT


@pytest.mark.parametrize("asked", REFUSED)
def test_a_refused_url_never_leaks_into_the_sign_out_url(asked):
    url = okta_sign_out_url(URL("https://example.okta.com"), target(asked))
    assert parse_qs(urlsplit(url).query) == {"fromURI": [DEFAULT]}


def test_a_very_long_requested_url_under_the_prefix_is_used_as_it_is():
    asked = GOODBYE + "a" * 10_000
    assert target(asked) == asked


# --- Okta's sign-out URL ------------------------------------------------------------------------------------------


def fields_of(url: str) -> tuple[str, str, dict[str, list[str]]]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path, parse_qs(parts.query, keep_blank_values=True)


def test_the_sign_out_url_is_oktas_login_signout_with_from_uri():
    assert fields_of(okta_sign_out_url(URL("https://example.okta.com"), DEFAULT)) == (
        "https://example.okta.com", "/login/signout", {"fromURI": [DEFAULT]})


@pytest.mark.parametrize("after", [
    "https://app.example.com/goodbye/?a=1&b=2",
    "https://app.example.com/bye?x=1&fromURI=https://evil.example/",
    "https://app.example.com/bye#fragment",
    "https://app.example.com/bye?q=a+b&r=c%20d&s=%2541",
    "https://app.example.com/caf%C3%A9/é?x=ü",
    "https://app.example.com/bye?next=https%3A%2F%2Fevil.example",
])
def test_from_uri_carries_the_whole_target_and_nothing_else(after):
    _, _, query = fields_of(okta_sign_out_url(URL("https://example.okta.com"), after))
    assert query == {"fromURI": [after]}  # one parameter: a '&', '#' or '+' in the target is encoded


def test_the_sign_out_url_has_no_fragment_of_its_own():
    url = okta_sign_out_url(URL("https://example.okta.com"), "https://app.example.com/bye#top")
    assert "#" not in url and urlsplit(url).fragment == ""


def test_the_sign_out_url_keeps_the_orgs_origin_and_port_and_replaces_any_path():
    assert fields_of(okta_sign_out_url(URL("http://127.0.0.2:8443/some/path"), DEFAULT))[:2] == (
        "http://127.0.0.2:8443", "/login/signout")


# --- the logout path as the app reads it, and the Host the after-logout origin is made of ---------------------------


LOGOUT_SPELLINGS = [
    "/hr/logout", "/hr/logout/", "/hr//logout", "//hr///logout//", "/hr/logout;jsessionid=X", "/hr;a=b/logout;c",
    "/HR/LogOut", "/hr/%6Cogout", "/hr/x/../logout", "/hr/x/..;/logout", "/hr/./logout/.", "/hr/%2e%2e/hr/logout",
    "/hr\\logout", "/hr%2Flogout", "/hr/logout?next=/x", "/../hr/logout"]


@pytest.mark.parametrize("raw", LOGOUT_SPELLINGS)
def test_a_logout_path_is_read_as_servlet_containers_read_it(raw):
    assert logout_form(raw) == "/hr/logout"


def interceptor(*paths: str) -> LogoutInterceptor:
    none = cast(Any, None)
    return LogoutInterceptor(LogoutRules(), paths, none, none, none, URL("https://org.example.com"))


@pytest.mark.parametrize("raw", [r for r in LOGOUT_SPELLINGS if not r.startswith("//")])  # a mocked `//x` has a host
def test_no_spelling_of_the_logout_is_one_that_never_wants_it(raw):
    # the enforcer remembers the decoded paths that never_wants() clears, and skips wants() for them
    request = make_mocked_request("GET", raw)
    logout = interceptor("/hr/logout")
    assert logout.wants(request)
    assert not logout.never_wants(request.path)


@pytest.mark.parametrize("path", ["/hr/page", "/", "/hr/log/out", "/hr/logoff"])
def test_a_path_without_the_logout_in_it_never_wants_it(path):
    assert interceptor("/hr/logout").never_wants(path)
    assert not interceptor("/hr/logout").wants(make_mocked_request("POST", path))


@pytest.mark.parametrize("raw", ["/hr/logout%3Bx", "/hr/logout.jsp", "/hr/logoutx", "/hr/x/logout", "/hr/%256Cogout",
                                 "/hr/logout/..", "/logout"])
def test_other_paths_are_not_the_logout(raw):
    assert logout_form(raw) != "/hr/logout"


@pytest.mark.parametrize(("value", "plain"), [
    ("127.0.0.1:8080", "127.0.0.1:8080"), ("App.Example.COM", "app.example.com"), ("[::1]:443", "[::1]:443"),
    ("example.com.", "example.com."), ("my_app:65535", "my_app:65535")])
def test_a_plain_host_is_kept_lower_cased(value, plain):
    assert plain_host(value) == plain


@pytest.mark.parametrize("value", [None, "", "127.0.0.1:8080@evil.com", "user@app.example.com", "evil.com/x",
                                   "a b", "app:", "app:0", "app:65536", "app:08080x", "[::1", "[zz]:1", "a..b",
                                   "app.example.com\\evil", "app\r\nx", "a" * 301, "app.example.com#x",
                                   "app.example.com?x", "\u0430pp.example.com"])
def test_anything_more_than_host_and_port_is_refused(value):
    assert plain_host(value) is None
