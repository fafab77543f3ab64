"""Properties of the cookie rules (gateway/sessions/cookies.py) under hostile headers: nothing raises, and what the
gateway reads as the app session cookie is what the app reads from the header it is sent, or the gateway calls it
AMBIGUOUS (and binds nothing to it). The app is a real aiohttp server reading `request.cookies` in a real request;
http.cookies is the second reference where it parses the header at all."""

from __future__ import annotations

import re
from http.cookies import CookieError, SimpleCookie
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.sessions.cookies import (
    AMBIGUOUS,
    AppCookieReader,
    cookie_header_for_app,
    parse_cookie_header,
    read_set_cookie,
)

pytestmark = pytest.mark.hostile

OWN = "gateway_binding"
APP = "JSESSIONID"
SHIB = "_shibsession_"
READERS = {"servlet": AppCookieReader((APP,)), "shibboleth": AppCookieReader((SHIB + "*",))}
NOW = 1_700_000_000.0
OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')
with_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.one_of(
    st.sampled_from([APP, APP.lower(), "JSessionId", APP + "X", "X" + APP, OWN, OWN.upper(), OWN + "_hr",
                     "_shibsession_64656661756c74", "_SHIBSESSION_x", "$Version", "path", "a", "a b", ""]),
    st.text(alphabet=OCTETS + " \t", max_size=8),
)
values = st.one_of(
    st.text(alphabet=OCTETS, max_size=12),
    st.text(alphabet=OCTETS + ' \t",;\\=\u00e9\u20ac', max_size=12),
    st.sampled_from(["", '""', '"x"', '"a;b"', '"a\\"b"', f"1 {APP}=evil", f"1,{APP}=evil", f'"{APP}=x"',
                     f"x {OWN}=s", "\\012"]),
)
separators = st.sampled_from([";", "; ", ";;", " ; ", ",", ", ", " ", "\t", ";\t"])
equals = st.sampled_from(["=", " =", "= ", " = ", "=="])


@st.composite
def cookie_headers(draw: st.DrawFn) -> str:
    """A Cookie header of pieces that readers are known to read differently, or of any printable text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet=OCTETS + ' \t",;\\\u00e9', max_size=60))
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 2)):  # mostly what browsers send, so that hostile pieces meet real app cookies
            parts.append(draw(st.sampled_from([APP, "theme", OWN, "_shibsession_ab"])) + "="
                         + draw(st.text(alphabet=OCTETS, max_size=8)))
            parts.append("; ")
        else:
            parts.append(draw(names) + draw(equals) + draw(values))
            parts.append(draw(separators))
    return "".join(parts[:-1])


def app_reads_as_app_session(profile: str, cookies: dict[str, str]) -> tuple[str, str] | None:
    """The app session cookie an app finds among the cookies it read (JSESSIONID, or the first Shibboleth session),
    also where a server that reads names in any case would find one."""
    found = [(name, value) for name, value in cookies.items() if value and (
        name.lower() == APP.lower() if profile == "servlet" else name.lower().startswith(SHIB))]
    return found[0] if found else None


@pytest.fixture
async def app(aiohttp_server: Any) -> Any:
    """A real aiohttp app that answers with the Cookie header it got and what request.cookies reads of it."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"header": request.headers.get("Cookie", ""), "cookies": dict(request.cookies)})

    server = web.Application()
    server.router.add_get("/", echo)
    return await aiohttp_server(server)


async def sent(http: Any, app: Any, header: str) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{app.port}/", headers={"Cookie": header}) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


@given(st.text(max_size=400))
def test_the_cookie_header_readers_raise_nothing(header):
    cookies = parse_cookie_header(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in cookies.items())
    for_app = cookie_header_for_app(header, OWN)
    assert isinstance(for_app, str)
    for reader in READERS.values():
        app = reader.read(for_app)
        assert app in (None, AMBIGUOUS) or app == (app[0], parse_cookie_header(for_app)[app[0]])  # type: ignore[index]


@given(st.text(max_size=400))
def test_the_set_cookie_reader_raises_nothing(header):
    read = read_set_cookie(header, NOW)
    assert read is None or (isinstance(read.name, str) and isinstance(read.value, str))


@with_fixtures
@given(header=cookie_headers(), profile=st.sampled_from(sorted(READERS)))
async def test_the_app_reads_the_app_session_cookie_the_gateway_read_or_the_gateway_calls_it_ambiguous(
        app, http, header, profile):
    browser = await sent(http, app, header)
    seen = browser["header"]  # what the gateway gets, after aiohttp's own reading of the request head
    for_app = cookie_header_for_app(seen, OWN)
    gateway = READERS[profile].read(for_app)
    the_app = await sent(http, app, for_app)
    assert not any(name.lower() == OWN for name in the_app["cookies"])  # the binding never reaches the app
    if gateway is AMBIGUOUS:
        return
    assert app_reads_as_app_session(profile, the_app["cookies"]) == gateway, (seen, for_app, the_app["cookies"])
    try:
        simple = SimpleCookie()
        simple.load(for_app)
    except CookieError:
        return
    if simple:
        assert app_reads_as_app_session(profile, {k: m.value for k, m in simple.items()}) in (None, gateway)


@with_fixtures
@given(name=st.text(alphabet=OCTETS.replace("=", ""), min_size=1, max_size=12),
       value=st.text(alphabet=OCTETS, max_size=40), quoted=st.booleans(),
       attributes=st.lists(st.sampled_from(["Path=/", "Path=/hr", "HttpOnly", "Secure", "SameSite=Lax",
                                            "Max-Age=0", "Max-Age=3600", "Max-Age=-1", "Max-Age=x",
                                            "Expires=Thu, 01 Jan 1970 00:00:00 GMT", "Domain=example.com"]),
                           max_size=4))
async def test_a_set_cookie_reads_as_the_browser_reads_it(aiohttp_server, http, name, value, quoted, attributes):
    assume(re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name) and name.lower() not in
           {"path", "domain", "expires", "max-age", "secure", "httponly", "samesite", "version", "comment"})
    header = "; ".join([f'{name}="{value}"' if quoted else f"{name}={value}", *attributes])

    async def answer(request: web.Request) -> web.Response:
        return web.Response(headers={"Set-Cookie": header})

    server = web.Application()
    server.router.add_get("/", answer)
    upstream = await aiohttp_server(server)
    async with http.get(f"http://127.0.0.1:{upstream.port}/") as r:
        browser = {k: m.value for k, m in r.cookies.items()}
    read = read_set_cookie(header, NOW)
    assert read is not None and browser == {read.name: read.value}
    max_ages = [a.split("=")[1] for a in attributes if a.startswith("Max-Age=") and a[8:].lstrip("-").isdigit()]
    if max_ages:
        assert read.expired is (int(max_ages[-1]) <= 0 or value == "")
