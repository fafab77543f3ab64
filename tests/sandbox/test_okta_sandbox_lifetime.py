"""Session lifetime over HTTP: idle timeout, absolute lifetime, what counts as activity, and expired = 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from okta_sandbox_support import ALICE, BOB, Okta
from yarl import URL

from gateway.sandbox.okta.org import Clock
from gateway.sandbox.okta.timefmt import parse_iso

MINUTE = 60


@pytest.fixture
def start(start_okta_sandbox):
    async def start(**options) -> Okta:
        clock = Clock(datetime.now(UTC).replace(microsecond=0), frozen=True)
        return await start_okta_sandbox(clock=clock, **options)

    return start


async def signed_in_browser(okta: Okta):
    browser = okta.browser()
    session = okta.org.sign_in(ALICE[0])
    name, value = okta.org.cookie_for(session)
    browser.cookie_jar.update_cookies({name: value}, URL(okta.url("/")))
    return browser, session


async def expires_at(okta: Okta, session_id: str) -> datetime:
    return parse_iso((await okta.call("GET", f"/api/v1/sessions/{session_id}")).json["expiresAt"])


async def assert_gone_everywhere(okta: Okta, browser, session_id: str) -> None:
    assert (await okta.call("GET", f"/api/v1/sessions/{session_id}")).status == 404
    assert (await okta.call("POST", f"/api/v1/sessions/{session_id}/lifecycle/refresh")).status == 404
    assert (await okta.call("DELETE", f"/api/v1/sessions/{session_id}")).status == 404
    for method, path in [("GET", "/api/v1/sessions/me"), ("POST", "/api/v1/sessions/me/lifecycle/refresh"),
                         ("DELETE", "/api/v1/sessions/me")]:
        assert (await okta.call(method, path, client=browser, token=None)).status == 404, path
    assert okta.org.session(session_id) is None


async def test_a_session_ends_after_the_idle_timeout(start):
    okta = await start(idle_minutes=10)
    browser, session = await signed_in_browser(okta)
    assert await expires_at(okta, session.id) == session.created_at + timedelta(minutes=10)
    okta.org.clock.advance(10 * MINUTE - 1)
    assert (await okta.call("GET", f"/api/v1/sessions/{session.id}")).status == 200  # not activity
    okta.org.clock.advance(1)
    await assert_gone_everywhere(okta, browser, session.id)


async def test_a_refresh_by_id_restarts_the_idle_window(start):
    okta = await start(idle_minutes=10)
    browser, session = await signed_in_browser(okta)
    okta.org.clock.advance(9 * MINUTE)
    await okta.call("POST", f"/api/v1/sessions/{session.id}/lifecycle/refresh", headers={"Prefer": "return=minimal"})
    okta.org.clock.advance(9 * MINUTE)
    assert await expires_at(okta, session.id) == okta.org.clock.now() + timedelta(minutes=1)
    okta.org.clock.advance(1 * MINUTE)
    await assert_gone_everywhere(okta, browser, session.id)


@pytest.mark.parametrize("path", ["/", "/api/v1/sessions/me", "/login/login.htm"])
async def test_a_browser_request_with_the_cookie_is_activity(start, path):
    okta = await start(idle_minutes=10)
    browser, session = await signed_in_browser(okta)
    okta.org.clock.advance(9 * MINUTE)
    async with browser.get(okta.url(path), allow_redirects=False) as r:
        assert r.status in (200, 302)
    okta.org.clock.advance(9 * MINUTE)
    assert (await okta.call("GET", f"/api/v1/sessions/{session.id}")).status == 200


async def test_the_absolute_lifetime_wins_over_activity(start):
    okta = await start(idle_minutes=10, lifetime_minutes=30)
    browser, session = await signed_in_browser(okta)
    for _ in range(3):
        okta.org.clock.advance(9 * MINUTE)
        assert (await okta.call("POST", "/api/v1/sessions/me/lifecycle/refresh", client=browser,
                                token=None)).status == 200
    assert await expires_at(okta, session.id) == session.created_at + timedelta(minutes=30)
    okta.org.clock.advance(3 * MINUTE - 1)
    assert (await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)).status == 200
    okta.org.clock.advance(1)
    await assert_gone_everywhere(okta, browser, session.id)


async def test_an_expired_session_cookie_no_longer_counts_as_signed_in(start):
    okta = await start(idle_minutes=5)
    browser, _ = await signed_in_browser(okta)
    okta.org.clock.advance(5 * MINUTE)
    async with browser.get(okta.url("/"), allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (302, "/login/login.htm")
    bob_token = await okta.session_token(*BOB)
    async with browser.get(okta.url("/login/sessionCookieRedirect"), allow_redirects=False,
                           params={"token": bob_token, "redirectUrl": "/"}):
        pass  # the dead cookie does not block a new sign-in (seed 004 is about a *live* session)
    me = await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)
    assert me.json["login"] == BOB[0]


async def test_policy_changes_apply_to_existing_sessions(start):
    okta = await start(idle_minutes=120)
    _, session = await signed_in_browser(okta)
    okta.org.policy.idle_minutes = 5
    assert await expires_at(okta, session.id) == session.created_at + timedelta(minutes=5)
