"""Cookie rules of enforcement (gateway/sessions/cookies.py): the browser's Cookie header, the app's Set-Cookie."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.sessions.cookies import (
    AMBIGUOUS,
    AppCookieReader,
    SetCookie,
    app_cookie_names,
    app_session_cookie,
    cookie_header_for_app,
    matches,
    only,
    parse_cookie_header,
    read_set_cookie,
)

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
OWN = "gateway_binding"


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


# --- parse_cookie_header --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "cookies"),
    [
        (None, {}),
        ("", {}),
        ("   ", {}),
        (";;", {}),
        ("a=1", {"a": "1"}),
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ("  a  =  1  ;   b=2  ", {"a": "1", "b": "2"}),
        ("a=1; a=2", {"a": "1"}),  # the first value counts
        ("a=; a=2", {"a": ""}),  # even when it is empty
        ('a="x y"', {"a": "x y"}),
        ('a=""', {"a": ""}),
        ('a="', {"a": '"'}),  # a lone quote is a value, not a quoted one
        ('a="x', {"a": '"x'}),
        ('a=x"', {"a": 'x"'}),
        ("a=b=c", {"a": "b=c"}),  # base64 padding and the like stay in the value
        ("a=1; junk; b=2", {"a": "1", "b": "2"}),  # a part without '=' is skipped
        ("=1; b=2", {"b": "2"}),  # a part without a name too
        ("a=1;  =  ; b", {"a": "1"}),
        ("JSESSIONID=ABC.node1; _shibsession_64656661756c74=_x9", {"JSESSIONID": "ABC.node1",
                                                                   "_shibsession_64656661756c74": "_x9"}),
        ("café=crème", {"café": "crème"}),
    ],
)
def test_parse_cookie_header(header, cookies):
    assert parse_cookie_header(header) == cookies


def test_parse_cookie_header_keeps_the_browsers_order():
    assert list(parse_cookie_header("z=1; a=2; m=3")) == ["z", "a", "m"]


def test_parse_cookie_header_names_are_case_sensitive():
    assert parse_cookie_header("sid=1; SID=2") == {"sid": "1", "SID": "2"}


# --- patterns -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("JSESSIONID", ("JSESSIONID",), True),
        ("JSESSIONIDX", ("JSESSIONID",), False),
        ("jsessionid", ("JSESSIONID",), False),
        ("_shibsession_64656661756c74", ("_shibsession_*",), True),
        ("_shibsession_", ("_shibsession_*",), True),
        ("_shibsession", ("_shibsession_*",), False),
        ("x_shibsession_1", ("_shibsession_*",), False),
        ("PHPSESSID", ("JSESSIONID", "PHPSESSID"), True),
        ("other", ("JSESSIONID", "_shibsession_*"), False),
        ("anything", (), False),
        (".AspNetCore.Cookies", (".AspNetCore.Cookies*",), True),
        (".AspNetCore.CookiesC1", (".AspNetCore.Cookies*",), True),
    ],
)
def test_matches(name, patterns, expected):
    assert matches(name, patterns) is expected


def test_matches_takes_any_iterable():
    assert matches("b", iter(["a", "b"])) and matches("pre_1", (p for p in ["pre_*"]))


# --- app_session_cookie ---------------------------------------------------------------------------------------------


def test_the_app_session_cookie_is_found_among_others():
    cookies = {"theme": "dark", "JSESSIONID": "abc", OWN: "sealed"}
    assert app_session_cookie(cookies, ("JSESSIONID",)) == ("JSESSIONID", "abc")


def test_no_app_session_cookie():
    assert app_session_cookie({"theme": "dark"}, ("JSESSIONID", "_shibsession_*")) is None
    assert app_session_cookie({}, ("JSESSIONID",)) is None
    assert app_session_cookie({"JSESSIONID": "abc"}, ()) is None


def test_the_first_pattern_wins_whatever_the_order_of_the_cookies():
    cookies = {"PHPSESSID": "php", "SimpleSAMLAuthToken": "tok", "SimpleSAMLSessionID": "sess"}
    patterns = ("SimpleSAMLSessionID", "SimpleSAMLAuthToken", "PHPSESSID")
    assert app_session_cookie(cookies, patterns) == ("SimpleSAMLSessionID", "sess")
    assert app_session_cookie(cookies, patterns[1:]) == ("SimpleSAMLAuthToken", "tok")


def test_a_prefix_pattern_takes_the_first_matching_cookie_the_browser_sent():
    cookies = {"_shibsession_b": "2", "_shibsession_a": "1"}
    assert app_session_cookie(cookies, ("_shibsession_*",)) == ("_shibsession_b", "2")


def test_a_prefix_before_an_exact_name():
    cookies = {"JSESSIONID": "j", "_shibsession_x": "s"}
    assert app_session_cookie(cookies, ("_shibsession_*", "JSESSIONID")) == ("_shibsession_x", "s")
    assert app_session_cookie(cookies, ("JSESSIONID", "_shibsession_*")) == ("JSESSIONID", "j")


def test_empty_values_are_no_session():
    assert app_session_cookie({"JSESSIONID": ""}, ("JSESSIONID",)) is None
    assert app_session_cookie({"JSESSIONID": "", "PHPSESSID": "p"}, ("JSESSIONID", "PHPSESSID")) == ("PHPSESSID",
                                                                                                     "p")
    assert app_session_cookie({"_shibsession_a": "", "_shibsession_b": "v"}, ("_shibsession_*",)) == (
        "_shibsession_b", "v")
    assert app_session_cookie({"_shibsession_a": ""}, ("_shibsession_*",)) is None


# --- app_cookie_names, cookie_header_for_app, only ------------------------------------------------------------------


def test_app_cookie_names_are_every_cookie_that_matches_in_the_browsers_order():
    cookies = {"_shibsession_b": "2", "theme": "x", "JSESSIONID": "", "_shibsession_a": "1", OWN: "s"}
    assert app_cookie_names(cookies, ("JSESSIONID", "_shibsession_*")) == ["_shibsession_b", "JSESSIONID",
                                                                           "_shibsession_a"]
    assert app_cookie_names(cookies, ()) == []
    assert app_cookie_names({}, ("JSESSIONID",)) == []


def test_the_app_gets_every_cookie_but_the_gateways_own():
    header = f"a=1; {OWN}=sealed; JSESSIONID=abc; sid=okta"
    assert cookie_header_for_app(header, OWN) == "a=1; JSESSIONID=abc; sid=okta"
    assert cookie_header_for_app('q="x=1"; a=b', OWN) == 'q="x=1"; a=b'  # untouched: quotes kept, as sent


def test_the_app_gets_cookies_that_only_look_like_the_gateways():
    assert cookie_header_for_app(f"{OWN}_hr=x; x{OWN}=y; {OWN}=z", OWN) == f"{OWN}_hr=x; x{OWN}=y"


def test_the_app_gets_an_empty_cookie_header_when_only_the_gateways_was_sent():
    assert cookie_header_for_app(f"{OWN}=sealed", OWN) == ""
    assert cookie_header_for_app("", OWN) == ""


def test_the_app_gets_empty_values_as_sent():
    assert cookie_header_for_app(f"a=; b=2; {OWN}=s", OWN) == "a=; b=2"


def test_only_names_the_cookies_asked_for_in_the_order_asked():
    cookies = {"a": "1", "JSESSIONID": "j", "PHPSESSID": "p"}
    assert only(cookies, ["PHPSESSID", "JSESSIONID"]) == "PHPSESSID=p; JSESSIONID=j"
    assert only(cookies, ["missing", "a"]) == "a=1"
    assert only(cookies, []) == ""
    assert only({}, ["a"]) == ""


# --- read_set_cookie ------------------------------------------------------------------------------------------------


def test_a_plain_set_cookie():
    assert read_set_cookie("JSESSIONID=abc", NOW) == SetCookie("JSESSIONID", "abc", None, None, False)


def test_path_and_domain_are_read():
    header = "JSESSIONID=abc; Path=/app; Domain=.example.com; HttpOnly; Secure; SameSite=Lax"
    assert read_set_cookie(header, NOW) == SetCookie("JSESSIONID", "abc", "/app", ".example.com", False)


@pytest.mark.parametrize("header", ["a=1; path=/p; DOMAIN=d.example", "a=1;PATH=/p;domain=d.example",
                                    "a=1 ;  Path = /p ;  Domain = d.example "])
def test_attribute_names_are_case_insensitive_and_spaces_do_not_matter(header):
    assert read_set_cookie(header, NOW) == SetCookie("a", "1", "/p", "d.example", False)


def test_empty_path_and_domain_are_none():
    assert read_set_cookie("a=1; Path=; Domain=", NOW) == SetCookie("a", "1", None, None, False)


@pytest.mark.parametrize(
    ("attributes", "expired"),
    [
        ("Max-Age=0", True),
        ("max-age=0", True),
        ("Max-Age=-1", True),
        ("Max-Age=-86400", True),
        ("Max-Age=1", False),
        ("Max-Age=3600", False),
        ("Max-Age=soon", False),  # not a number: ignored
        ("Max-Age=", False),
        (f"Expires={http_date(NOW - 1)}", True),
        (f"Expires={http_date(NOW)}", True),  # at now: already gone
        (f"Expires={http_date(NOW + 1)}", False),
        (f"Expires={http_date(NOW + 86400)}", False),
        ("Expires=Thu, 01 Jan 1970 00:00:00 GMT", True),
        ("expires=Thu, 01-Jan-1970 00:00:01 GMT", True),  # the Netscape form
        ("Expires=Fri, 31 Dec 9999 23:59:59 GMT", False),
        ("Expires=not a date", False),  # unreadable: ignored
        ("Expires=", False),
        ("HttpOnly", False),
        # Max-Age wins over Expires, as browsers do (RFC 6265 5.3 step 3)
        (f"Max-Age=3600; Expires={http_date(NOW - 60)}", False),
        (f"Expires={http_date(NOW - 60)}; Max-Age=3600", False),
        (f"Max-Age=0; Expires={http_date(NOW + 3600)}", True),
        (f"Max-Age=soon; Expires={http_date(NOW - 60)}", True),  # an unreadable Max-Age leaves it to Expires
        ("Max-Age=0; Max-Age=soon", True),  # an unreadable attribute is ignored: the one before it stands
        (f"Expires={http_date(NOW - 60)}; Expires=never", True),
        ("Max-Age=0; Max-Age=60", False),  # the last one counts
        (f"Expires={http_date(NOW - 60)}; Expires={http_date(NOW + 60)}", False),
    ],
)
def test_expiry(attributes, expired):
    cookie = read_set_cookie(f"JSESSIONID=abc; Path=/; {attributes}", NOW)
    assert cookie is not None and cookie.expired is expired


def test_expiry_is_relative_to_now():
    header = f"JSESSIONID=abc; Expires={http_date(NOW + 100)}"
    assert read_set_cookie(header, NOW).expired is False  # type: ignore[union-attr]
    assert read_set_cookie(header, NOW + 100).expired is True  # type: ignore[union-attr]
    assert read_set_cookie(header, NOW + 101).expired is True  # type: ignore[union-attr]


@pytest.mark.parametrize("header", ["JSESSIONID=", "JSESSIONID=; Path=/", 'JSESSIONID=""; Path=/',
                                    "JSESSIONID=   ; Max-Age=3600"])
def test_an_empty_value_is_an_expiry(header):
    cookie = read_set_cookie(header, NOW)
    assert cookie is not None and cookie.name == "JSESSIONID" and cookie.value == "" and cookie.expired


def test_a_quoted_value_reads_as_the_browser_will_send_it_back():
    # aiohttp and Python's http.cookies quote values with '=' (base64 padding); the browser sends the quotes back,
    # and the binding's fingerprint is taken from one and checked against the other
    set_cookie = read_set_cookie('session="abc=="; Path=/; HttpOnly', NOW)
    assert set_cookie is not None and not set_cookie.expired
    assert set_cookie.value == parse_cookie_header('session="abc=="')["session"] == "abc=="


def test_the_value_keeps_what_follows_its_first_equals_sign():
    assert read_set_cookie("a=b=c; Path=/", NOW) == SetCookie("a", "b=c", "/", None, False)


def test_the_last_path_counts():
    assert read_set_cookie("a=1; Path=/one; Path=/two", NOW).path == "/two"  # type: ignore[union-attr]


@pytest.mark.parametrize("header", ["", "   ", "noequals", "noequals; Path=/", "=value", " =value; Path=/",
                                    "; a=1", ";"])
def test_a_malformed_set_cookie_is_none(header):
    assert read_set_cookie(header, NOW) is None


def test_name_and_value_are_stripped():
    assert read_set_cookie("  a  =  1  ; Path=/", NOW) == SetCookie("a", "1", "/", None, False)


# --- AppCookieReader: the app session cookie only where every reader reads it alike --------------------------------

SERVLET = AppCookieReader(("JSESSIONID",))
SHIB = AppCookieReader(("_shibsession_*",))


@pytest.mark.parametrize(
    ("header", "app"),
    [
        ("", None),
        ("a=1; b=2", None),
        ("JSESSIONID=abc", ("JSESSIONID", "abc")),
        ("a=1;JSESSIONID=abc ; b=2", ("JSESSIONID", "abc")),
        ("JSESSIONID = abc", ("JSESSIONID", "abc")),
        ('JSESSIONID="abc"', ("JSESSIONID", "abc")),
        ("JSESSIONID=abc; JSESSIONID=abc", ("JSESSIONID", "abc")),  # the same value twice reads alike
        ("JSESSIONID=", None),
        ("x=JSESSIONID=1", None),  # inside a value, after '=': no reader begins a cookie there
        ("JSESSIONIDX=1; XJSESSIONID=2", None),
        ("JSESSIONID=abc.node1~-_!#$%&'()*+/:<=>?@[]^`{|}", ("JSESSIONID", "abc.node1~-_!#$%&'()*+/:<=>?@[]^`{|}")),
    ],
)
def test_an_app_session_cookie_every_reader_reads_alike(header, app):
    assert SERVLET.read(header) == app


@pytest.mark.parametrize(
    "header",
    [
        "JSESSIONID=a; JSESSIONID=b",  # aiohttp and Django read the last, PHP and Express the first
        "JSESSIONID=; JSESSIONID=b",
        'JSESSIONID=a; JSESSIONID="a"',
        "x=1 JSESSIONID=b",  # aiohttp begins a new cookie after whitespace
        "x=1\tJSESSIONID=b",
        "JSESSIONID=a b",
        "a=1, JSESSIONID=2",  # old PHP splits cookies on commas
        "JSESSIONID=a,b",
        'x="1;JSESSIONID=2"',  # inside quotes for aiohttp, a cookie for us
        'x="y"JSESSIONID=2',
        'JSESSIONID="a',
        'JSESSIONID=a"b',
        'JSESSIONID="a\\"b"',  # aiohttp undoes the escape, we would not
        "JSESSIONID=caf\u00e9",
        "jsessionid=a",  # ASP.NET reads names in any case
        "JSESSIONID=a; jSessionId=a",
        "JSESSIONID =a;JSESSIONID= b",
    ],
)
def test_an_app_session_cookie_readers_could_read_differently_is_ambiguous(header):
    assert SERVLET.read(header) is AMBIGUOUS


def test_a_prefix_pattern_reads_alike_or_is_ambiguous():
    assert SHIB.read("_shibsession_abc=v; x=1") == ("_shibsession_abc", "v")
    assert SHIB.read("_shibsession_a=v; _shibsession_b=w") == ("_shibsession_a", "v")  # two sessions, as before
    assert SHIB.read("x=1 _shibsession_a=v") is AMBIGUOUS
    assert SHIB.read("_shibsession_a b=v") is AMBIGUOUS
    assert SHIB.read("_SHIBSESSION_a=v") is AMBIGUOUS


def test_the_app_gets_no_part_where_a_reader_could_find_the_gateways_cookie():
    assert cookie_header_for_app(f"a=1; x=2 {OWN}=s; b=2", OWN) == "a=1; b=2"
    assert cookie_header_for_app(f"a=1; {OWN.upper()}=s", OWN) == "a=1"
    assert cookie_header_for_app(f'a="1;{OWN}=s"', OWN) == 'a="1'
