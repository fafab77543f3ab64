"""Okta failing in every way it can, through the whole stack: 5xx, 429, a hang and the process killed. Each time a
route answers by its fail mode (`closed`: 503; `grace`: a session last seen ACTIVE is still served) within the
Okta timeout, a sign-in is forwarded but not bound, and a 429 on session reads holds back session reads only: an app
logout's DELETE and a Universal Logout's user lookup still go out (issue 10, finding 3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from okta_sandbox_support import ALICE, BOB
from stack_support import Browser
from yarl import URL

from gateway.sandbox.okta.saml import read_autopost_form
from gateway.sandbox.stack import UNIVERSAL_LOGOUT, AppRoute, Stack
from gateway.server import METRICS

pytestmark = pytest.mark.hostile

OKTA_TIMEOUT = 0.5
OKTA = {"cache_ttl": 5, "revalidate": 0, "negative_ttl": 5, "timeout": OKTA_TIMEOUT, "retries": 2}
BOUND = OKTA_TIMEOUT + 3.0  # the longest any request may wait on a failing Okta: its timeout, retries included
CLOSED, GRACE = AppRoute("hr", prefix="/hr"), AppRoute("wiki", prefix="/wiki", title="Wiki",
                                                       route={"fail_mode": "grace", "grace_seconds": 60})


@pytest.fixture
def stacks(start) -> Callable[..., Awaitable[Stack]]:
    """The whole stack (`start`, tests/conftest.py: the Okta sandbox on OKTA_HOST with Alice and Bob, the gateway)
    with the two apps, one per fail mode, and `okta=` options on top of OKTA."""

    async def make(**okta: Any) -> Stack:
        return await start(CLOSED, GRACE, okta={**OKTA, **okta})

    return make


@pytest.fixture
async def signed_in(stacks) -> AsyncIterator[Callable[..., Awaitable[tuple[Stack, Browser]]]]:
    browsers: list[Browser] = []

    async def make(**okta: Any) -> tuple[Stack, Browser]:
        stack = await stacks(**okta)
        browser = Browser(stack)
        browsers.append(browser)
        for prefix in ("/hr", "/wiki"):
            page = await browser.sign_in(ALICE, prefix=prefix)
            assert page.status == 200 and "Signed in to" in page.text, page.text
        stack.org.clock.advance(6)  # past the cache TTL: the next request asks Okta
        return stack, browser

    yield make
    for browser in browsers:
        await browser.close()


async def timed(browser: Browser, path: str, **kwargs: Any) -> tuple[int, float]:
    started = time.monotonic()
    page = await browser.get(path, **kwargs)
    return page.status, time.monotonic() - started


def session_reads(stack: Stack) -> int:
    return sum(1 for c in stack.org.api_calls if c.method == "GET" and c.path.startswith("/api/v1/sessions/"))


async def kill_okta(stack: Stack) -> None:
    okta = stack.runners.pop(0)  # start_stack starts Okta first
    await okta.cleanup()


async def apply_fault(stack: Stack, fault: str, *, status: int = 503) -> None:
    """Okta fails as named: "5xx" (every call answers `status`), "429", "hang" or "killed" (its process gone)."""
    faults = stack.org.faults
    if fault == "5xx":
        faults.fail_status = status
    elif fault == "429":
        faults.rate_limited = True
    elif fault == "hang":
        faults.hang = True
    else:
        await kill_okta(stack)


@pytest.mark.parametrize("fault", ["5xx", "429", "hang", "killed"])
async def test_a_failing_okta_gets_each_route_its_fail_mode_within_the_timeout(signed_in, fault):
    stack, browser = await signed_in()
    faults = stack.org.faults
    await apply_fault(stack, fault)
    status, took = await timed(browser, "/hr/page/1")
    assert status == 503 and took < BOUND, (fault, status, took)  # closed: "cannot check now", never an end
    status, took = await timed(browser, "/wiki/page/1")
    assert status == 200 and took < BOUND, (fault, status, took)  # grace: last seen ACTIVE, still served
    assert browser.cookie("JSESSIONID") is not None  # nobody was signed out for Okta's trouble
    faults.reset()
    if fault != "killed":
        if fault == "429":
            stack.org.clock.advance(61)  # the reset the 429 named
        assert (await browser.get("/hr/page/1")).status == 200  # Okta back: served as before


@pytest.mark.parametrize("fault", ["5xx", "429", "hang", "killed"])
async def test_a_sign_in_while_okta_fails_is_forwarded_but_not_bound(stacks, fault):
    stack = await stacks()
    browser = Browser(stack)
    try:
        page = await browser.follow(await browser.get("/hr/login?return=/hr/page/1"))
        login = {"username": ALICE[0], "password": ALICE[1], "fromURI": URL(page.url).query.get("fromURI", "")}
        page = await browser.follow(await browser.request("POST", stack.org.issuer + "/login/login.htm", data=login))
        action, fields = read_autopost_form(page.text)
        faults = stack.org.faults
        await apply_fault(stack, fault, status=500)
        started = time.monotonic()
        answer = await browser.request("POST", action, data=fields)
        took = time.monotonic() - started
        assert answer.status == 303 and took < BOUND, (answer.status, took)  # the app's answer, held back no longer
        assert browser.cookie("JSESSIONID") and browser.cookie("gateway_binding_hr") is None
        metrics = stack.gateway[METRICS]
        assert metrics.value("session_gateway_sign_ins_total", route="hr", outcome="okta_unavailable") == 1
        faults.reset()
    finally:
        await browser.close()


async def test_a_429_on_session_reads_still_lets_logouts_and_user_lookups_through(signed_in):
    """The 429 that a flood of session reads brings holds back session reads only: Alice's app logout still ends
    her Okta session, and Universal Logout still asks Okta who the user is (404 for one it does not know)."""
    stack, alice = await signed_in(universal_logout={})
    bob = Browser(stack)
    try:
        assert (await bob.sign_in(BOB, prefix="/hr")).status == 200
        stack.org.faults.rate_limited = True
        assert (await alice.get("/hr/page/1")).status == 503
        stack.org.faults.rate_limited = False  # Okta would answer again; the gateway holds session reads back
        reads = session_reads(stack)
        assert (await alice.get("/hr/page/1")).status == 503
        assert session_reads(stack) == reads
        alice_user = stack.org.user(ALICE[0])
        assert alice_user is not None
        alice_session = stack.org.sessions_of(alice_user.id)[0]

        logout = await alice.get("/hr/logout")
        assert logout.status == 302
        deletes = [c for c in stack.org.api_calls if c.method == "DELETE"]
        assert [(c.path, c.status) for c in deletes] == [(f"/api/v1/sessions/{alice_session.id}", 204)]
        assert stack.org.session(alice_session.id) is None

        headers, body = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), BOB[0])
        unknown = body.replace(BOB[0].encode(), b"nobody@example.com")
        async with aiohttp.ClientSession() as http:
            async with http.post(stack.url(UNIVERSAL_LOGOUT), headers=headers, data=unknown) as answer:
                assert answer.status == 404  # Okta was asked, and does not know the user
        assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), BOB[0], "email") == 204
        assert any(c.method == "GET" and c.path.startswith("/api/v1/users/") for c in stack.org.api_calls)
        page = await bob.get("/hr/page/1")
        assert page.status == 302 and page.location == "/hr/login"  # revoked without a session read
    finally:
        await bob.close()
