"""Logout interception under attack and under Okta's failures, through the whole stack: the Okta sandbox on
OKTA_HOST, the legacy app and the gateway on 127.0.0.1; raw sockets where aiohttp's client would tidy the request."""

from __future__ import annotations

import asyncio

import pytest
from okta_sandbox_support import ALICE
from raw_http import send_raw, statuses
from stack_support import SLOW_CACHE, signed_in
from yarl import URL

from gateway.revocation import logout
from gateway.routing import servlet_path
from gateway.sandbox.stack import AppRoute, free_port
from gateway.server import BUS

pytestmark = pytest.mark.hostile


def live_sessions(stack):
    return stack.org.sessions_of(stack.org.user(ALICE[0]).id)


def deletes(stack):
    return [c for c in stack.org.api_calls if c.method == "DELETE"]


async def served(browser) -> bool:
    page = await browser.get("/page/1")
    return page.status == 200 and ALICE[0] in page.text


async def eventually(check, seconds: float = 8.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


# --- finding 5: an Okta DELETE that failed must not leave a tombstone on a live session ---------------------------

@pytest.mark.parametrize(("fault", "scope"), [("5xx", "session"), ("429", "session"), ("5xx", "user")])
async def test_a_failed_okta_end_at_logout_leaves_no_sign_in_loop(start, browsers, fault, scope):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"logout_scope": scope}))
    before = [s.id for s in live_sessions(stack)]
    if fault == "5xx":
        stack.org.faults.fail_status = 503  # every API call, the gateway's retries included
    else:
        stack.org.faults.rate_limited = True
    page = await browser.get("/logout")  # the browser does not go on to Okta's sign-out (closed tab, XHR logout)
    assert page.status == 302 and "/login/signout" in page.location
    assert stack.apps["hr"].sessions == {}  # the app session ended all the same: the user asked to log out
    assert deletes(stack) and [s.id for s in live_sessions(stack)] == before  # Okta did not end it
    # SSO issues the same, still live, Okta session again (its validation is cached): the new app session is
    # served, not ended at once, while Okta still fails
    page = await browser.sign_in(ALICE)
    assert await served(browser), "signed in again but not served: a tombstone on a session Okta did not end"
    assert await served(browser)
    assert [s.id for s in live_sessions(stack)] == before
    assert [a.revocation.source for a in stack.gateway[BUS].recent] == []


async def test_the_failed_okta_end_is_retried_and_then_the_next_sign_in_is_a_fresh_one(start, browsers,
                                                                                        monkeypatch):
    monkeypatch.setattr(logout, "RETRY_DELAYS", (0.05, 0.1, 0.2))  # the production delays, only shorter
    stack, browser = await signed_in(start, browsers)
    session = live_sessions(stack)[0]
    stack.org.faults.fail_status, stack.org.faults.fail_count = 503, 3
    await browser.get("/logout")
    failed = len(deletes(stack))
    assert stack.org.session(session.id) is not None
    assert await eventually(lambda: stack.org.session(session.id) is None, 3)  # the gateway retried; Okta ended it
    assert len(deletes(stack)) == failed + 1
    page = await browser.sign_in(ALICE)  # a password again (the old session is gone), a new session, served
    assert page.status == 200 and await served(browser)
    assert [s.id for s in live_sessions(stack)] != [session.id]


async def test_an_okta_end_confirmed_as_already_gone_is_a_revocation(start, browsers):
    stack, browser = await signed_in(start, browsers)
    old = {name: browser.cookie(name) for name in ("JSESSIONID", "gateway_binding_hr")}
    stack.org.end_session(live_sessions(stack)[0])  # ended in Okta meanwhile: the DELETE answers 404
    await browser.get("/logout")
    assert [a.revocation.source for a in stack.gateway[BUS].recent] == ["app_logout"]
    for name, value in old.items():
        browser.set_cookie(name, value or "")
    page = await browser.get("/page/1")
    assert page.status == 302 and page.location == "/login"


# --- finding 7: the after-logout URL is never built from a Host header that is more than host[:port] --------------

def cookie_header(browser) -> str:
    return "; ".join(f"{name}={browser.cookie(name)}" for name in ("JSESSIONID", "gateway_binding_hr")
                     if browser.cookie(name))


async def raw_get(stack, browser, target: str, host: str | None = None, method: str = "GET") -> bytes:
    authority = URL(stack.gateway_url).raw_authority
    head = (f"{method} {target} HTTP/1.1\r\nHost: {host or authority}\r\nCookie: {cookie_header(browser)}\r\n"
            "Connection: close\r\n\r\n")
    return await send_raw("127.0.0.1", URL(stack.gateway_url).port or 80, head.encode("latin-1"), idle=5)


def location(raw: bytes) -> str:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"location":
            return value.strip().decode("latin-1")
    return ""


async def test_a_host_header_with_more_than_host_and_port_never_picks_the_after_logout_origin(start, browsers):
    stack, browser = await signed_in(start, browsers)
    authority = URL(stack.gateway_url).raw_authority
    for host in (f"{authority}@evil.example", f"evil.example/{authority}", f"{authority} evil", f"{authority}:",
                 "[::1", f"user:pw@{authority}"):
        raw = await raw_get(stack, browser, "/logout", host)
        assert statuses(raw) == [400], (host, raw[:300])
        assert b"evil" not in raw and "evil" not in location(raw)
        assert await served(browser)  # nothing was ended for it


async def test_a_plain_host_header_makes_the_after_logout_url_of_this_origin(start, browsers):
    stack, browser = await signed_in(start, browsers)
    raw = await raw_get(stack, browser, "/logout", URL(stack.gateway_url).raw_authority.upper())
    assert statuses(raw) == [302]
    assert URL(location(raw)).query["fromURI"] == stack.gateway_url + "/"
    assert live_sessions(stack) == []


# --- finding 7: the logout path as a servlet container reads it ------------------------------------------------

def container_path(raw_path: str) -> str:
    """How Tomcat (with Spring's trailing-slash match) maps a path: the gateway's servlet reading
    (`gateway.routing.servlet_path`: `;params` stripped from each raw segment, decoded once, `//` merged, dot
    segments resolved), a trailing slash ignored; case-sensitive, `\\` not a separator."""
    return servlet_path(raw_path).rstrip("/") or "/"


async def servlet_container(target: dict[str, str]):
    """A stand-in for the servlet container the legacy app runs in: it maps the path as Tomcat does and hands
    the request to the app (at target["url"], known once the stack runs), cookies and Set-Cookie passed through."""
    from aiohttp import ClientSession, DummyCookieJar, web

    from gateway.sandbox.run import start_app

    async def handle(request: web.Request) -> web.Response:
        raw, _, query = request.raw_path.partition("?")
        url = URL(target["url"] + container_path(raw) + (f"?{query}" if query else ""), encoded=True)
        method = "GET" if request.method == "HEAD" else request.method  # HttpServlet.doHead runs doGet
        async with ClientSession(cookie_jar=DummyCookieJar()) as http, http.request(
                method, url, headers={k: v for k, v in request.headers.items()
                                              if k.lower() in ("cookie", "content-type", "accept")},
                data=await request.read(), allow_redirects=False) as answer:
            response = web.Response(status=answer.status, body=await answer.read())
            for name in ("Location", "Content-Type"):
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            for value in answer.headers.getall("Set-Cookie", []):
                response.headers.add("Set-Cookie", value)
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    port = free_port()
    return await start_app(app, "127.0.0.1", port), f"http://127.0.0.1:{port}"


@pytest.fixture
async def behind_a_servlet_container(start, browsers):
    """A stack whose app reads paths as a servlet container; signed in as Alice, on the prefix /hr."""
    target: dict[str, str] = {}
    runner, url = await servlet_container(target)
    stack = await start(AppRoute("hr", prefix="/hr", route={"upstream": url}), okta=SLOW_CACHE)
    app_runner = stack.runners[1]  # the legacy app (the Okta sandbox is first)
    host, port = app_runner.addresses[0][:2]
    target["url"] = f"http://{host}:{port}"
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE, prefix="/hr", start="/hr/page/1")).status == 200
    yield stack, browser
    await runner.cleanup()


async def test_a_logout_spelled_as_the_container_still_reads_it_ends_the_okta_session(behind_a_servlet_container):
    stack, browser = behind_a_servlet_container
    for logouts, target in enumerate(["/hr/logout/", "/hr//logout", "/hr/logout;jsessionid=X", "/hr/%6cogout",
                                      "/hr/logout;x/"], start=1):
        if logouts > 1:
            assert (await browser.sign_in(ALICE, prefix="/hr", start="/hr/page/1")).status == 200
        assert (await browser.get("/hr/page/1")).status == 200
        raw = await raw_get(stack, browser, target)
        assert stack.apps["hr"].logouts == logouts, target  # the app logged out: its container read the path so
        assert statuses(raw) == [302] and "/login/signout" in location(raw), (target, raw[:400])
        assert live_sessions(stack) == [], target  # and so did the gateway: no Okta session for the next user


async def test_a_head_of_the_logout_is_the_logout_as_servlets_run_it(behind_a_servlet_container):
    stack, browser = behind_a_servlet_container
    raw = await raw_get(stack, browser, "/hr/logout", method="HEAD")
    assert stack.apps["hr"].logouts == 1  # the container ran the GET handler
    assert statuses(raw) == [302] and "/login/signout" in location(raw), raw[:400]
    assert live_sessions(stack) == []


async def test_a_path_the_container_does_not_read_as_the_logout_ends_nothing(behind_a_servlet_container):
    stack, browser = behind_a_servlet_container
    raw = await raw_get(stack, browser, "/hr/Logout")  # Tomcat maps case-sensitively: the app answers 404
    assert statuses(raw) == [404] and stack.apps["hr"].logouts == 0
    assert live_sessions(stack) and (await browser.get("/hr/page/1")).status == 200


async def test_a_gateway_answered_logout_matches_the_path_in_any_case(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"logout_answer": "gateway"}))
    page = await browser.get("/LogOut/")  # IIS and ASP.NET map paths case-insensitively
    assert page.status == 302 and "/login/signout" in page.location
    assert live_sessions(stack) == [] and stack.apps["hr"].sessions == {}


async def test_a_logout_posted_with_expect_100_continue_gets_the_go_ahead(start):
    """The gateway reads the logout's body itself (to pass it to the app), so it must send `100 Continue` first, or
    a client that waits for it (curl, .NET, Java) waits the body timeout out."""
    stack = await start()
    url = URL(stack.gateway_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"POST /logout HTTP/1.1\r\nHost: {url.raw_authority}\r\nContent-Length: 3\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n"
                     "Connection: close\r\n\r\n".encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.write(b"a=b")
        final = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert statuses(final) and statuses(final)[0] < 500
