"""Logout from the app's side: the Okta session ends too, and the browser goes through Okta's own sign-out, so the
next person on that browser signs in as themselves (seed 004)."""

from __future__ import annotations

from okta_sandbox_support import ALICE, BOB, OKTA_HOST
from stack_support import signed_in
from yarl import URL

from gateway.sandbox.stack import AppRoute


def alice_sessions(stack):
    return stack.org.sessions_of(stack.org.user(ALICE[0]).id)


async def test_app_logout_ends_the_okta_session_and_sends_the_browser_through_okta_sign_out(start, browsers):
    stack, browser = await signed_in(start, browsers)
    assert alice_sessions(stack)
    page = await browser.get("/logout")
    assert page.status == 302
    location = URL(page.location)
    assert str(location.with_query(None)) == stack.org.issuer + "/login/signout"
    assert location.query["fromURI"] == stack.gateway_url + "/"
    assert alice_sessions(stack) == []  # ended with the API token, no CORS, no third-party cookie
    assert stack.apps["hr"].sessions == {} and stack.apps["hr"].logouts == 1  # the app ran its own logout
    assert any(c.startswith("gateway_binding_hr=") for c in page.set_cookies())
    back = await browser.follow(page)
    assert back.url == stack.gateway_url + "/" and back.status == 200
    assert stack.org.cookie_name not in {m.key for m in browser.http.cookie_jar if m["domain"] == OKTA_HOST}


async def test_seed_004_the_next_user_on_the_browser_is_themselves(start, browsers):
    stack, browser = await signed_in(start, browsers)
    await browser.follow(await browser.get("/logout"))
    page = await browser.sign_in(BOB)  # Okta asks for a password again: no silent sign-in as Alice
    assert page.status == 200
    me = await browser.get("/api/me", headers={"Accept": "application/json"})
    assert me.json["login"] == BOB[0]


async def test_replaying_the_old_cookies_after_logout_is_refused(start, browsers):
    stack, browser = await signed_in(start, browsers)
    old = {name: browser.cookie(name) for name in ("JSESSIONID", "gateway_binding_hr")}
    await browser.get("/logout")
    for name, value in old.items():
        browser.set_cookie(name, value or "")
    page = await browser.get("/page/1")
    assert page.status == 302 and page.location == "/login"


async def test_logout_scope_user_ends_every_session_of_the_user(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"logout_scope": "user"}))
    other = stack.org.sign_in(ALICE[0])  # Alice is also signed in elsewhere
    await browser.get("/logout")
    assert stack.org.session(other.id) is None


async def test_the_gateway_can_answer_the_logout_itself(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"logout_answer": "gateway"}))
    page = await browser.get("/logout")
    assert page.status == 302 and "/login/signout" in page.location
    assert stack.apps["hr"].sessions == {}  # the app's logout URL was called server-side


async def test_the_after_logout_url_comes_from_the_allowlist_only(start, browsers):
    allowed = "http://127.0.0.1:1/goodbye/"
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"after_logout_allowed": [allowed]}))
    page = await browser.get("/logout?return=" + allowed + "page")
    assert URL(page.location).query["fromURI"] == allowed + "page"
    await browser.sign_in(ALICE)
    for evil in ("https://evil.example/", "//evil.example/", "http://127.0.0.1:1/goodbyeX", "javascript:alert(1)"):
        page = await browser.get("/logout", params={"return": evil})
        assert URL(page.location).query["fromURI"] == stack.gateway_url + "/", evil


async def test_a_logout_the_app_refuses_ends_nothing(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"logout_paths": ["/api/rotate"],
                                                                            "logout_methods": ["POST"]}))
    browser.drop_cookie("JSESSIONID")  # the app answers 401: not signed in
    page = await browser.request("POST", "/api/rotate")
    assert page.status == 401
    assert alice_sessions(stack)
