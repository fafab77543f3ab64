"""Attacks on the sign-in at the ACS, through the whole stack: the gateway must read the POST as the app reads it
or bind nothing (issue 10, finding 2), and an unsigned POST must cost no Okta call, or, against an app that
answers a refused assertion with a new session all the same, at most the budget of unknown ids (finding 3)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from okta_sandbox_support import ALICE, BOB
from raw_http import send_raw, statuses
from stack_support import FAST_CACHE, Browser
from yarl import URL

from gateway.enforcement import sign_in
from gateway.sandbox.okta.saml import read_autopost_form
from gateway.sandbox.stack import AppRoute, Stack
from gateway.server import METRICS

pytestmark = pytest.mark.hostile

FORM = "application/x-www-form-urlencoded"


def forged_response(login: str, session_id: str) -> str:
    """An unsigned SAML Response naming `login` and `session_id`: what the gateway reads, never what an app
    that checks signatures accepts."""
    xml = ('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="f1" Version="2.0">'
           '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
           f'<saml:Assertion ID="f2" Version="2.0"><saml:Subject><saml:NameID>{login}</saml:NameID></saml:Subject>'
           '<saml:AttributeStatement><saml:Attribute Name="okta_session_id">'
           f"<saml:AttributeValue>{session_id}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"
           "</saml:Assertion></samlp:Response>")
    return base64.b64encode(xml.encode()).decode()


async def signed_response_not_posted(browser: Browser, who: tuple[str, str]) -> tuple[str, dict[str, str]]:
    """Sign in at Okta and stop at the auto-post form: (ACS URL, fields), a real signed Response nobody used."""
    page = await browser.follow(await browser.get("/login?return=/page/1"))
    from_uri = URL(page.url).query.get("fromURI", "")
    page = await browser.follow(await browser.request(
        "POST", browser.stack.org.issuer + "/login/login.htm",
        data={"username": who[0], "password": who[1], "fromURI": from_uri}))
    assert page.status == 200, page.text
    return read_autopost_form(page.text)


def utf16_polyglot(app_fields: dict[str, str], forged_b64: str) -> bytes:
    """One body, two forms. Read as UTF-16 (the charset the POST declares) it is app_fields and a junk field `x`;
    read as ASCII, the UTF-16 half is junk (every other byte a NUL) and the tail is SAMLResponse=<forged>."""

    def escaped(value: str) -> str:  # every character as the %XX of its UTF-16LE bytes, which is how the app
        return "".join(f"%{b:02X}" for b in value.encode("utf-16-le"))  # percent-decodes in that charset

    head = ("&".join(f"{name}={escaped(value)}" for name, value in app_fields.items()) + "&x=").encode("utf-16-le")
    tail = f"&SAMLResponse={quote(forged_b64, safe='')}&z=".encode("ascii")
    if len(tail) % 2:
        tail += b"1"
    return head + tail


def raw_post(path: str, host: str, body: bytes, content_type: str, cookie: str = "") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def set_cookies(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "set-cookie":
            cookie = value.strip().split(";", 1)[0]
            found[cookie.split("=", 1)[0]] = cookie.split("=", 1)[1]
    return found


def api_gets(stack: Stack, session_id: str = "") -> int:
    """Session reads of the org's API about ids starting with `session_id`."""
    prefix = "/api/v1/sessions/" + session_id
    return sum(1 for c in stack.org.api_calls if c.method == "GET" and c.path.startswith(prefix))


def sign_ins(stack: Stack, outcome: str, route: str = "hr") -> float:
    return stack.gateway[METRICS].value("session_gateway_sign_ins_total", route=route, outcome=outcome)


async def test_a_utf16_polyglot_does_not_bind_bobs_app_session_to_alices_okta_session(start, browsers):
    """Bob posts his own real signed Response for the app and, in the same bytes, a forged one naming Alice's
    session for a gateway that reads ASCII. The gateway must not bind: Bob signed out and suspended must no
    longer be served."""
    stack = await start()
    alice, bob = browsers(stack), browsers(stack)
    assert (await alice.sign_in(ALICE)).status == 200
    alice_user = stack.org.user(ALICE[0])
    assert alice_user is not None
    alice_session = stack.org.sessions_of(alice_user.id)[0]
    action, fields = await signed_response_not_posted(bob, BOB)
    body = utf16_polyglot(fields, forged_response(ALICE[0], alice_session.id))
    assert body.decode("utf-16").startswith("SAMLResponse=") and b"&SAMLResponse=" in body
    gateway = URL(stack.gateway_url)
    raw = await send_raw(gateway.host or "", gateway.port or 0,
                         raw_post(URL(action).path, f"{gateway.host}:{gateway.port}", body,
                                  f"{FORM}; charset=utf-16"))
    assert statuses(raw) == [303], raw[-300:]  # the app verified Bob's signature and signed Bob in
    cookies = set_cookies(raw)
    assert "JSESSIONID" in cookies
    assert [s.login for s in stack.apps["hr"].sessions.values()] == [ALICE[0], BOB[0]]
    assert "gateway_binding_hr" not in cookies  # nothing bound: the gateway could not read the body as the app did
    assert sign_ins(stack, "ambiguous_content_type") == 1

    bob_user = stack.org.user(BOB[0])
    assert bob_user is not None
    await bob.okta_sign_out()
    stack.org.suspend_user(bob_user.id)
    stack.org.clock.advance(5)  # the cache TTL
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(stack.url("/page/1"), headers={"Cookie": jar}, allow_redirects=False) as page:
            assert page.status == 302 and page.headers["Location"] == "/login", await page.text()
    assert (await alice.get("/page/1")).status == 200  # Alice's own sign-in is untouched


async def test_a_second_saml_response_spelled_otherwise_does_not_bind(start, browsers):
    """The rule in one charset: a real Response under a name the app reads as SAMLResponse (aiohttp decodes
    `SAML%52esponse`, and takes the first of two), a forged one for the gateway under the plain name."""
    stack = await start()
    alice, bob = browsers(stack), browsers(stack)
    assert (await alice.sign_in(ALICE)).status == 200
    alice_user = stack.org.user(ALICE[0])
    assert alice_user is not None
    forged = forged_response(ALICE[0], stack.org.sessions_of(alice_user.id)[0].id)
    action, fields = await signed_response_not_posted(bob, BOB)
    body = (urlencode(fields).replace("SAMLResponse=", "SAML%52esponse=") + "&SAMLResponse=" + quote(forged, safe="")
            ).encode()
    page = await bob.request("POST", action, data=body, headers={"Content-Type": FORM})
    assert page.status == 303 and bob.cookie("JSESSIONID")  # the app read Bob's, the first of the two
    assert bob.cookie("gateway_binding_hr") is None
    assert sign_ins(stack, "ambiguous_second_saml_response") == 1


async def test_a_flood_of_forged_unsigned_acs_posts_makes_no_okta_call(start, browsers):
    """Each forged POST names a well-formed session id; none is signed, so the app refuses every one, and Okta
    must not be asked about any (the flood that used to exhaust the org's rate limit)."""
    stack = await start()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def forge(i: int) -> int:
            body = urlencode({"SAMLResponse": forged_response(ALICE[0], f"102forged{i:016d}"), "RelayState": "/"})
            async with http.post(stack.url("/saml/acs"), data=body, headers={"Content-Type": FORM},
                                 allow_redirects=False) as answer:
                return answer.status

        answers = await asyncio.gather(*(forge(i) for i in range(300)))
    assert set(answers) == {403}
    assert api_gets(stack, "102forged") == 0  # not one Okta call
    assert sign_ins(stack, "refused_by_app") == 300
    browser = browsers(stack)  # and a real sign-in still binds, with the one call it needs
    assert (await browser.sign_in(ALICE)).status == 200 and browser.cookie("gateway_binding_hr")
    alice = stack.org.user(ALICE[0])
    assert alice is not None
    assert api_gets(stack, stack.org.sessions_of(alice.id)[0].id) == 1
    assert sign_ins(stack, "bound") == 1


async def test_a_flood_of_made_up_okta_cookie_ids_costs_no_okta_call(start, browsers):
    """The `cookie` source's id is a claim: it is only compared with the bound session, never bound nor looked
    up. 1,000 requests with a made-up `sid` each (and a made-up app cookie) cost Okta nothing, none reaches the
    app, and the signed-in user is served throughout."""
    stack = await start(AppRoute("hr", route={"sid_sources": ["saml", "cookie"]}), okta=FAST_CACHE)
    alice = browsers(stack)
    assert (await alice.sign_in(ALICE)).status == 200
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def flood(i: int) -> int:
            cookie = f"JSESSIONID=x{i}; sid=102flood{i:017d}"
            async with http.get(stack.url("/page/1"), headers={"Cookie": cookie}, allow_redirects=False) as answer:
                return answer.status

        async def served() -> int:
            return (await alice.get("/page/1")).status

        answers, during = await asyncio.gather(asyncio.gather(*(flood(i) for i in range(1000))), served())
        assert (await alice.get("/page/1")).status == 200
    assert api_gets(stack, "102flood") == 0  # not one Okta call for a claimed id
    assert during == 200
    assert set(answers) == {302}, sorted(set(answers))  # an app session no binding vouches for: back to sign-in


async def test_an_app_that_sets_a_cookie_on_its_refusal_page_costs_no_okta_call(okta_sandbox, start_upstream,
                                                                               start_gateway, http):
    """Some stacks (PHP's session_start) set a fresh session cookie on every answer, their error page included:
    only an answer that is no error counts as the app accepting the assertion."""
    sandbox = okta_sandbox

    async def refusing_app(request: web.Request) -> web.Response:
        await request.read()
        response = web.Response(status=403, text="Sign-in refused")
        response.set_cookie("JSESSIONID", f"anonymous{len(sandbox.org.api_calls)}")
        return response

    upstream = await start_upstream(refusing_app)
    gateway = await start_gateway(
        {"name": "hr", "host": "*", "path": "/", "upstream": f"http://{upstream.host}:{upstream.port}",
         "policy": "enforce", "app_profile": "servlet"},
        okta={"org_url": sandbox.issuer, "api_token": "${OKTA_API_TOKEN}"}, binding={"keys": "${GATEWAY_BINDING_KEYS}"})
    for i in range(20):
        body = urlencode({"SAMLResponse": forged_response(ALICE[0], f"102forged{i:016d}")})
        async with http.post(f"http://{gateway.host}:{gateway.port}/saml/acs", data=body,
                             headers={"Content-Type": FORM}) as answer:
            assert answer.status == 403
            assert not any(c.startswith("gateway_binding") for c in answer.headers.getall("Set-Cookie", ()))
    assert not any("102forged" in c.path for c in sandbox.org.api_calls)


# --- an app that answers every ACS POST with a new session (finding 3, second half) ---------------------------

async def servlet_app_that_starts_a_session_on_every_answer(start_upstream) -> str:
    """A servlet app's ACS as many are: a refused assertion is a 302 to the error page, with a fresh JSESSIONID."""
    sessions = itertools.count()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        response = web.Response(status=302, headers={"Location": "/error"})
        response.set_cookie("JSESSIONID", f"anonymous-{next(sessions)}", path="/svc")
        return response

    upstream = await start_upstream(answer)
    return f"http://{upstream.host}:{upstream.port}"


async def stack_with_the_servlet_app(start, start_upstream, **kwargs):
    """hr: the legacy app (real sign-ins); svc: the app above, under /svc, with the saml source."""
    servlet = await servlet_app_that_starts_a_session_on_every_answer(start_upstream)
    return await start(AppRoute("hr"), AppRoute("svc", prefix="/svc", route={"upstream": servlet}), **kwargs)


@pytest.fixture
def short_budget_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forged POSTs over the budget each wait for a token that never comes back before they give up: a shorter
    wait than production's keeps a flood of them quick; what it bounds is the same."""
    monkeypatch.setattr(sign_in, "_BUDGET_WAIT", 0.1)


async def forge_from(stack: Stack, count: int, local_address: str = "127.0.0.1",
                     forwarded_for: list[str] | None = None) -> list[tuple[int, str]]:
    """`count` forged ACS POSTs at once with made-up well-formed session ids, from `local_address` (or through it
    as a trusted proxy, for the X-Forwarded-For given for each): each answer's status and Set-Cookie names."""
    connector = aiohttp.TCPConnector(local_addr=(local_address, 0), limit=50)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), connector=connector) as http:

        async def forge(i: int) -> tuple[int, str]:
            body = urlencode({"SAMLResponse": forged_response(ALICE[0], f"102forged{i:016d}"), "RelayState": "/"})
            headers = {"Content-Type": FORM}
            if forwarded_for is not None:
                headers["X-Forwarded-For"] = forwarded_for[i]
            async with http.post(stack.url("/svc/saml/acs"), data=body, headers=headers,
                                 allow_redirects=False) as answer:
                names = sorted(c.split("=", 1)[0] for c in answer.headers.getall("Set-Cookie", ()))
                return answer.status, ",".join(names)

        return await asyncio.gather(*(forge(i) for i in range(count)))


async def test_forged_posts_the_app_answers_with_a_new_session_cost_at_most_the_clients_budget(
        start, browsers, start_upstream, short_budget_wait):
    """300 forged, unsigned POSTs from one client, each with a made-up id, to an app that answers each with a
    302 and a fresh JSESSIONID: Okta is asked about at most the client's budget of them (two at once, then one a
    second), every answer reaches the client as the app gave it, and a real sign-in right after still binds."""
    stack = await stack_with_the_servlet_app(start, start_upstream)
    began = time.monotonic()
    answers = await forge_from(stack, 300, local_address="127.0.0.3")
    took = time.monotonic() - began
    assert set(answers) == {(302, "JSESSIONID")}  # the app's answer, and no binding
    asked = api_gets(stack, "102forged")
    assert 1 <= asked <= 2 + took + 1, (asked, took)  # before the budget: 300
    assert sign_ins(stack, "over_budget", "svc") == 300 - asked
    assert sign_ins(stack, "okta_session_not_signed_in", "svc") == asked

    browser = browsers(stack)  # another client, right after: the shared budget was not spent by the one
    assert (await browser.sign_in(ALICE)).status == 200 and browser.cookie("gateway_binding_hr")
    assert sign_ins(stack, "bound") == 1


@pytest.mark.parametrize("clients", [
    [f"10.{i // 250}.{i % 250}.1" for i in range(300)],  # 300 clients: the shared budget, 10 at once then 5 a second
    [f"2001:db8:0:7::{i:x}" for i in range(300)],  # 300 addresses of one /64: one client, 2 at once then 1 a second
], ids=["300 clients", "one IPv6 /64"])
async def test_forged_posts_through_a_trusted_proxy_cost_at_most_the_budget(start, start_upstream, clients,
                                                                           short_budget_wait):
    """The client is the last X-Forwarded-For hop that is not a trusted proxy (what the client wrote before it
    is not read); however many clients, Okta is asked at most the shared budget."""
    stack = await stack_with_the_servlet_app(start, start_upstream, server={"trusted_proxies": ["127.0.0.1/32"]})
    burst = 10 if clients[0].startswith("10.") else 2
    began = time.monotonic()
    answers = await forge_from(stack, 300, forwarded_for=[f"6.6.6.6, {client}" for client in clients])
    took = time.monotonic() - began
    assert set(answers) == {(302, "JSESSIONID")}
    asked = api_gets(stack, "102forged")
    assert burst <= asked <= burst + burst / 2 * took + 1, (asked, took)


async def test_many_real_sign_ins_from_one_address_are_all_bound(start, browsers, start_upstream):
    """An office behind one NAT address signing in at 9:00: Okta knows each session, so each sign-in gives its
    reservation back and none is held back, two at a time (the client's burst) and one after the other."""
    stack = await stack_with_the_servlet_app(start, start_upstream)
    at_once = asyncio.Semaphore(2)

    async def sign_in() -> bool:
        browser = browsers(stack)
        async with at_once:
            page = await browser.sign_in(ALICE)
        return page.status == 200 and browser.cookie("gateway_binding_hr") is not None

    began = time.monotonic()
    bound = await asyncio.gather(*(sign_in() for _ in range(12)))
    assert time.monotonic() - began < 4  # well inside what the client's bucket would refill without refunds
    assert all(bound), bound
    assert sign_ins(stack, "bound") == 12 and sign_ins(stack, "over_budget") == 0


async def test_a_burst_of_real_sign_ins_from_one_address_all_at_once_is_all_bound(start, browsers, start_upstream):
    """Twelve at once, more than the client's burst of two (the soak bench's sixteen browsers on 127.0.0.1 found
    it): a sign-in that finds the budget spent waits for the tokens real sign-ins give back."""
    stack = await stack_with_the_servlet_app(start, start_upstream)

    async def sign_in() -> bool:
        browser = browsers(stack)
        page = await browser.sign_in(ALICE)
        return page.status == 200 and browser.cookie("gateway_binding_hr") is not None

    bound = await asyncio.gather(*(sign_in() for _ in range(12)))
    assert all(bound), bound
    assert sign_ins(stack, "bound") == 12 and sign_ins(stack, "over_budget") == 0


async def test_the_acs_answers_expect_100_continue_before_it_reads_the_body(start):
    """curl, .NET and Java send the head of a larger POST with `Expect: 100-continue` and wait for the go-ahead:
    the gateway reads the ACS body itself, so it must send `100 Continue` first, or the client waits it out."""
    stack = await start()
    url = URL(stack.url("/saml/acs"))
    body = urlencode({"SAMLResponse": forged_response(ALICE[0], "102continue0000000000"), "RelayState": "/"}).encode()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"POST /saml/acs HTTP/1.1\r\nHost: {url.raw_authority}\r\nContent-Type: {FORM}\r\n"
                     f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        final = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert statuses(final) == [403]  # the app refused the forged assertion, as without Expect
