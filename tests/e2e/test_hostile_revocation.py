"""Attacks on revocation, through the whole stack (found by the attacker review of the issue-10 fixes):
- a user ended user-wide (suspended, sessions cleared, Universal Logout) posts a signed SAML Response held back from
  before the end: nothing is bound, since the user's cached sessions were evicted and a session Okta created before
  the user's watermark binds nothing;
- one signed-in user replays the app's logout: Okta is asked to end the session once, not once per replay, and
  the other users are still served."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from okta_sandbox_support import ALICE, BOB
from stack_support import HOOK_SECRET, SLOW_CACHE, Browser

from gateway.revocation.bus import Revocation
from gateway.sandbox.okta.saml import read_autopost_form
from gateway.sandbox.stack import UNIVERSAL_LOGOUT, AppRoute, Stack
from gateway.server import BUS, METRICS

pytestmark = pytest.mark.hostile

USER_WIDE_EVENTS = ["user.session.clear", "user.lifecycle.suspend", "user.lifecycle.deactivate"]
ALL_EVENTS = ["user.session.end", *USER_WIDE_EVENTS]


def refused(page) -> bool:
    return page.status == 302 and page.location == "/login"


def okta_calls(stack: Stack, method: str, prefix: str) -> int:
    return sum(1 for c in stack.org.api_calls if c.method == method and c.path.startswith(prefix))


async def held_sign_in(browser: Browser) -> tuple[str, dict[str, str]]:
    """The signed-in browser starts another sign-in and keeps Okta's auto-post form instead of posting it."""
    page = await browser.follow(await browser.get("/login?return=/page/1"))
    return read_autopost_form(page.text)


async def hooked(start, events: list[str], *, ended_id: bool) -> Stack:
    stack = await start(AppRoute("hr"), okta={**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}})
    stack.org.report_ended_session_id = ended_id
    hook = stack.org.add_event_hook(stack.url("/.gateway/okta/events"), events, secret=HOOK_SECRET)
    assert await stack.org.verify_hook(hook)
    return stack


async def replayed_after(browser: Browser, form: tuple[str, dict[str, str]]) -> None:
    action, fields = form
    await browser.request("POST", action, data=fields)
    assert refused(await browser.get("/api/me"))  # the app session it began is unbound: ended
    assert (await browser.get("/api/me")).status == 401  # and the app knows nobody any more


@pytest.mark.parametrize(("end", "events"), [("suspend", ALL_EVENTS), ("clear", ALL_EVENTS),
                                              ("clear", USER_WIDE_EVENTS)])
async def test_a_held_assertion_binds_nothing_after_the_user_was_ended(start, browsers, end, events):
    """Okta's user.session.end carries no EndedSessionId (or the hook takes only the user-wide events): only the
    user's watermark is set, and the cache still held Bob's session as active from his first sign-in."""
    stack = await hooked(start, events, ended_id=False)
    bob, alice = browsers(stack), browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200 and (await alice.sign_in(ALICE)).status == 200
    held = await held_sign_in(bob)
    bob_id = stack.org.user(BOB[0]).id
    if end == "suspend":
        stack.org.suspend_user(bob_id)
    else:
        stack.org.clear_user_sessions(bob_id)
    await stack.org.wait_for_hooks()
    assert refused(await bob.get("/api/me"))
    asked = okta_calls(stack, "GET", "/api/v1/sessions/")
    await replayed_after(bob, held)
    assert okta_calls(stack, "GET", "/api/v1/sessions/") == asked + 1  # the cache no longer vouched for it
    assert (await alice.get("/api/me")).status == 200  # another user's sessions live on


async def test_a_held_assertion_binds_nothing_after_a_universal_logout(start, browsers):
    """Okta ends Bob's sessions and calls Universal Logout (no event hook: the gateway learns it only from the
    call, which names Bob, never a session). The cache held his session as active until then."""
    stack = await start(AppRoute("hr"), okta={**SLOW_CACHE, "universal_logout": {}})
    bob, alice = browsers(stack), browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200 and (await alice.sign_in(ALICE)).status == 200
    held = await held_sign_in(bob)
    stack.org.clear_user_sessions(stack.org.user(BOB[0]).id)
    assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), BOB[0], "email") == 204
    assert refused(await bob.get("/api/me"))
    await replayed_after(bob, held)
    assert (await alice.get("/api/me")).status == 200


async def test_after_a_universal_logout_alone_a_live_okta_session_signs_in_again(start, browsers):
    """Universal Logout does not say that Okta ended the user's sessions: one still alive is bound again by SSO
    (a held assertion for it is no more than that), not refused in a sign-in loop."""
    stack = await start(AppRoute("hr"), okta={**SLOW_CACHE, "universal_logout": {}})
    bob = browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200
    held = await held_sign_in(bob)
    assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), BOB[0], "email") == 204
    assert refused(await bob.get("/api/me"))
    action, fields = held
    await bob.request("POST", action, data=fields)
    page = await bob.get("/api/me")
    assert page.status == 200 and BOB[0] in page.text


async def test_a_session_created_before_okta_ended_the_users_sessions_binds_nothing_whatever_a_lookup_says(
        start, browsers):
    """The revocation store says Okta ended every session of Bob's (an Okta event, a confirmed user-wide logout),
    yet a lookup still answers that his old session is active (a lookup from before, or an Okta cell that has not
    caught up: here the sandbox never ended it). Its createdAt is before the end: nothing is bound."""
    stack = await start(AppRoute("hr"), okta=SLOW_CACHE)
    bob = browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200
    held = await held_sign_in(bob)
    await asyncio.sleep(0.05)  # createdAt has milliseconds: the end lies clearly after it
    user = stack.org.user(BOB[0])
    stack.gateway[BUS].publish(Revocation("event_hook", "user_suspended", None, user.id, user.login))
    assert stack.org.sessions_of(user.id)  # Okta still answers for it
    await replayed_after(bob, held)
    assert stack.gateway[METRICS].value("session_gateway_sign_ins_total", route="hr", outcome="revoked") == 1


# --- replaying one's own app logout ------------------------------------------------------------------------------

REPLAYS = 300


async def flood_logout(stack: Stack, cookie: str, count: int = REPLAYS, at_once: int = 20) -> dict[int, int]:
    """`count` replays of GET /logout with the same app cookie and binding, `at_once` at a time; their statuses."""
    gate, answers = asyncio.Semaphore(at_once), dict[int, int]()
    async with aiohttp.ClientSession() as http:
        async def one() -> None:
            async with gate, http.get(stack.url("/logout"), headers={"Cookie": cookie}, allow_redirects=False) as r:
                answers[r.status] = answers.get(r.status, 0) + 1
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 30)
    return answers


def cookie_of(browser: Browser) -> str:
    return f"JSESSIONID={browser.cookie('JSESSIONID')}; gateway_binding_hr={browser.cookie('gateway_binding_hr')}"


@pytest.mark.parametrize(("scope", "deletes"), [("session", "/api/v1/sessions/"), ("user", "/api/v1/users/")])
async def test_a_flood_of_replays_of_one_logout_costs_one_okta_end_and_no_other_user(start, browsers, scope, deletes):
    stack = await start(AppRoute("hr", route={"logout_scope": scope}),
                        okta={"cache_ttl": 1, "revalidate": 0, "negative_ttl": 1})
    alice, bob = browsers(stack), browsers(stack)
    assert (await alice.sign_in(ALICE)).status == 200 and (await bob.sign_in(BOB)).status == 200
    answers = await flood_logout(stack, cookie_of(bob))
    assert answers == {302: REPLAYS}  # every replay is answered as a logout: the cookies expired, off to Okta
    assert okta_calls(stack, "DELETE", deletes) == 1
    assert await flood_logout(stack, cookie_of(bob), 20, 1) == {302: 20}  # one by one, after it was revoked
    assert okta_calls(stack, "DELETE", "/api/v1/") == 1
    assert stack.org.sessions_of(stack.org.user(BOB[0]).id) == []
    await asyncio.sleep(1.1)  # Alice's cached lookup is over: she needs Okta's sessions bucket again
    page = await alice.get("/api/me")
    assert page.status == 200 and ALICE[0] in page.text


async def test_replays_while_okta_fails_the_end_add_no_okta_call_to_its_retry(start, browsers):
    """An end Okta did not confirm is no revocation (nothing is tombstoned), so only the end in flight, then the
    retry waiting for its turn, keep the replays from each asking Okta again."""
    stack = await start(AppRoute("hr"), okta=SLOW_CACHE)
    bob = browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200
    stack.org.faults.fail_status = 503
    assert await flood_logout(stack, cookie_of(bob), 1, 1) == {302: 1}
    one_logout = okta_calls(stack, "DELETE", "/api/v1/")
    assert await flood_logout(stack, cookie_of(bob), 100) == {302: 100}
    assert okta_calls(stack, "DELETE", "/api/v1/") <= 2 * one_logout  # at most its first retry (a second on)


async def test_a_logout_after_a_universal_logout_still_ends_the_live_okta_session(start, browsers):
    """Universal Logout revokes the user's bindings but leaves Okta's session alive: the user's own logout with
    the revoked binding must still end it, or the next person on that browser is signed in as them (seed 004).
    (The soak bench found it: a replay guard that took any revocation for an end at Okta.)"""
    stack = await start(AppRoute("hr"), okta={**SLOW_CACHE, "universal_logout": {}})
    bob = browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200
    cookie = cookie_of(bob)
    assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), BOB[0], "email") == 204
    assert stack.org.sessions_of(stack.org.user(BOB[0]).id) != []  # Okta's session lives on
    assert await flood_logout(stack, cookie, 5, 1) == {302: 5}
    assert stack.org.sessions_of(stack.org.user(BOB[0]).id) == []
    assert okta_calls(stack, "DELETE", "/api/v1/sessions/") == 1  # and its replays still cost one end
