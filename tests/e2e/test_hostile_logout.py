"""Logout interception under attack and under Okta's failures, through the whole stack: the Okta sandbox on
127.0.0.2, the legacy app and the gateway on 127.0.0.1; raw sockets where aiohttp's client would tidy the request."""

from __future__ import annotations

import asyncio

import pytest
from stack_support import ALICE, SLOW_CACHE

from gateway.sandbox.stack import AppRoute
from gateway.server import BUS

pytestmark = pytest.mark.hostile


async def signed_in(start, browsers, *apps, **kwargs):
    kwargs.setdefault("okta", SLOW_CACHE)
    stack = await start(*apps, **kwargs)
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE)).status == 200
    return stack, browser


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


async def test_the_failed_okta_end_is_retried_and_then_the_next_sign_in_is_a_fresh_one(start, browsers):
    stack, browser = await signed_in(start, browsers)
    session = live_sessions(stack)[0]
    stack.org.faults.fail_status, stack.org.faults.fail_count = 503, 3
    await browser.get("/logout")
    failed = len(deletes(stack))
    assert stack.org.session(session.id) is not None
    assert await eventually(lambda: stack.org.session(session.id) is None)  # the gateway tried again, and Okta ended it
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
