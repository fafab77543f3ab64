"""Event hooks against a real receiver on 127.0.0.1: verification, envelopes, who-ended-what, retries, switches."""

from __future__ import annotations

import asyncio
import time

import pytest
from okta_sandbox_support import ALICE, BOB, Okta, Receiver, start_receiver

from gateway.sandbox.okta.timefmt import parse_iso

SECRET = "hook-shared-secret"
SESSION_EVENTS = ["user.session.start", "user.session.end", "user.session.clear", "user.lifecycle.suspend",
                  "user.lifecycle.deactivate"]
ENVELOPE_KEYS = {"eventType", "eventTypeVersion", "cloudEventsVersion", "source", "eventId", "eventTime",
                 "contentType", "data"}


@pytest.fixture
def setup(aiohttp_server, start_okta_sandbox):
    async def setup(event_types=("user.session.end", "user.session.clear", "user.lifecycle.suspend",
                                 "user.lifecycle.deactivate"), verify: bool = True,
                    **receiver_options) -> tuple[Okta, Receiver]:
        okta = await start_okta_sandbox()
        okta.org.add_trusted_origin("http://127.0.0.1:8080")
        receiver = await start_receiver(aiohttp_server, **receiver_options)
        hook = okta.org.add_event_hook(receiver.url, list(event_types), auth_header="Authorization", secret=SECRET)
        if verify:
            assert await okta.org.verify_hook(hook)
        return okta, receiver

    return setup


async def browser_session(okta: Okta, who=ALICE):
    browser = okta.browser()
    await okta.browser_sign_in(browser, *who)
    session_id = (await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)).json["id"]
    return browser, session_id


async def test_verification_echoes_the_challenge_with_the_auth_header(setup):
    okta, receiver = await setup()
    get = receiver.received[0]
    assert get.method == "GET" and get.headers["Authorization"] == SECRET
    assert len(get.headers["x-okta-verification-challenge"]) >= 32
    assert okta.org.hooks[0].verified


async def test_a_wrong_echo_or_no_receiver_fails_verification_and_gets_nothing(setup):
    okta, receiver = await setup(verify=False, echo="not-the-challenge")
    hook = okta.org.hooks[0]
    assert await okta.org.verify_hook(hook) is False and not hook.verified
    nowhere = okta.org.add_event_hook("http://127.0.0.1:9/okta", ["user.session.end"])
    assert await okta.org.verify_hook(nowhere) is False
    session = okta.org.sign_in(ALICE[0])
    okta.org.end_session(session)
    await okta.org.wait_for_hooks()
    assert receiver.posts == [] and okta.org.deliveries == []


async def test_a_user_sign_out_delivers_user_session_end_as_okta_shows_it(setup):
    okta, receiver = await setup()
    browser, session_id = await browser_session(okta)
    async with browser.get(okta.url("/login/signout"), allow_redirects=False):
        pass
    await okta.org.wait_for_hooks()
    [post] = receiver.posts
    assert post.headers["Content-Type"] == "application/json" and post.headers["Authorization"] == SECRET
    body = post.body
    assert set(body) == ENVELOPE_KEYS
    assert (body["eventType"], body["eventTypeVersion"], body["cloudEventsVersion"], body["contentType"]) == (
        "com.okta.event_hook", "1.0", "0.1", "application/json")
    assert body["source"] == okta.url(f"/api/v1/eventHooks/{okta.org.hooks[0].id}")
    [event] = body["data"]["events"]
    alice = okta.org.user(ALICE[0])
    assert event["eventType"] == "user.session.end" and event["displayMessage"] == "User logout from Okta"
    assert event["actor"]["id"] == alice.id and event["actor"]["type"] == "User"
    assert event["actor"]["alternateId"] == ALICE[0] and event["actor"]["displayName"] == "Alice Liddell"
    assert event["outcome"]["result"] == "SUCCESS" and event["target"] == []
    assert event["authenticationContext"]["externalSessionId"] == session_id
    assert event["debugContext"]["debugData"]["EndedSessionId"] == session_id
    assert event["transaction"]["type"] == "WEB" and event["transaction"]["id"]
    assert len(event["uuid"]) == 36 and parse_iso(event["published"]) <= okta.org.clock.now()
    [delivery] = okta.org.deliveries
    assert delivery.delivered and [a.status for a in delivery.attempts] == [200]
    assert delivery.event_uuids == [event["uuid"]]


async def test_delete_me_delivers_user_session_end(setup):
    okta, receiver = await setup()
    browser, session_id = await browser_session(okta)
    assert (await okta.call("DELETE", "/api/v1/sessions/me", client=browser, token=None)).status == 204
    await okta.org.wait_for_hooks()
    [event] = receiver.events()
    assert event["eventType"] == "user.session.end"
    assert event["authenticationContext"]["externalSessionId"] == session_id


async def test_an_api_delete_is_ended_by_the_admin_and_names_the_ended_session(setup):
    okta, receiver = await setup()
    _, session_id = await browser_session(okta)
    assert (await okta.call("DELETE", f"/api/v1/sessions/{session_id}")).status == 204
    await okta.org.wait_for_hooks()
    [event] = receiver.events()
    alice = okta.org.user(ALICE[0])
    assert event["eventType"] == "user.session.end"
    assert event["actor"]["id"] == okta.org.admin.id  # the API token's owner, not alice
    assert [(t["id"], t["type"]) for t in event["target"]] == [(alice.id, "User")]
    assert event["debugContext"]["debugData"]["EndedSessionId"] == session_id
    external = event["authenticationContext"]["externalSessionId"]
    assert external != session_id and external.startswith("trs")  # the admin's, never a browser session


async def test_clearing_a_users_sessions_is_a_clear_then_one_end_each_in_one_transaction(setup):
    okta, receiver = await setup()
    _, s1 = await browser_session(okta)
    _, s2 = await browser_session(okta)
    _, bobs = await browser_session(okta, BOB)
    alice = okta.org.user(ALICE[0])
    assert (await okta.call("DELETE", f"/api/v1/users/{alice.id}/sessions?oauthTokens=true")).status == 204
    await okta.org.wait_for_hooks()
    events = receiver.events()
    assert [e["eventType"] for e in events] == ["user.session.clear", "user.session.end", "user.session.end"]
    assert len({e["transaction"]["id"] for e in events}) == 1
    assert events[0]["target"][0]["id"] == alice.id and events[0]["actor"]["id"] == okta.org.admin.id
    assert {e["debugContext"]["debugData"]["EndedSessionId"] for e in events[1:]} == {s1, s2}
    assert okta.org.session(bobs) is not None


async def test_delivery_never_blocks_the_call_that_caused_it(setup):
    okta, receiver = await setup(delay=1.0)
    session = okta.org.sign_in(ALICE[0])
    started = time.monotonic()
    assert (await okta.call("DELETE", f"/api/v1/sessions/{session.id}")).status == 204
    assert time.monotonic() - started < 0.5
    await okta.org.wait_for_hooks()
    assert len(receiver.posts) == 1 and okta.org.deliveries[0].delivered


async def test_a_5xx_is_retried_once(setup):
    okta, receiver = await setup(statuses=[503])
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    [delivery] = okta.org.deliveries
    assert [a.status for a in delivery.attempts] == [503, 200] and delivery.delivered
    assert receiver.posts[0].body["data"] == receiver.posts[1].body["data"]


async def test_two_5xx_give_up_after_the_one_retry(setup):
    okta, receiver = await setup(statuses=[500, 502, 200])
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    [delivery] = okta.org.deliveries
    assert [a.status for a in delivery.attempts] == [500, 502] and not delivery.delivered
    assert len(receiver.posts) == 2


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_a_4xx_is_never_retried(setup, status):
    okta, receiver = await setup(statuses=[status])
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    assert [a.status for a in okta.org.deliveries[0].attempts] == [status] and len(receiver.posts) == 1


async def test_a_timeout_is_retried_once(setup):
    okta, receiver = await setup(delay=0.5)
    okta.org.hook_timeout = 0.2  # okta-reference.md's 3 s, shortened for the test
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    [delivery] = okta.org.deliveries
    assert [(a.status, a.error) for a in delivery.attempts] == [(None, "timeout"), (None, "timeout")]
    assert len(receiver.posts) == 2


async def test_the_default_timeout_is_three_seconds(setup):
    okta, _ = await setup()
    assert okta.org.hook_timeout == 3.0


async def test_an_unreachable_receiver_is_retried_once(setup):
    okta, _ = await setup()
    okta.org.hooks[0].url = "http://127.0.0.1:9/gone"
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    attempts = okta.org.deliveries[0].attempts
    assert len(attempts) == 2 and all(a.status is None and a.error for a in attempts)


async def test_duplicate_switch_sends_every_event_twice(setup):
    okta, receiver = await setup()
    okta.org.hook_faults.duplicate = True
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    events = receiver.events()
    assert len(events) == 2 and events[0]["uuid"] == events[1]["uuid"]
    assert [d.copy for d in okta.org.deliveries] == [1, 2]


async def test_out_of_order_switch_sends_what_waits_newest_first(setup):
    okta, receiver = await setup()
    okta.org.hook_faults.hold = True
    okta.org.hook_faults.out_of_order = True
    first, second = okta.org.sign_in(ALICE[0]), okta.org.sign_in(BOB[0])
    okta.org.end_session(first)
    okta.org.clock.advance(1)
    okta.org.end_session(second)
    await asyncio.sleep(0.1)
    assert receiver.posts == []  # held back
    okta.org.hook_faults.hold = False
    await okta.org.wait_for_hooks()
    ended = [e["debugContext"]["debugData"]["EndedSessionId"] for e in receiver.events()]
    assert ended == [second.id, first.id]
    published = [parse_iso(e["published"]) for e in receiver.events()]
    assert published[0] > published[1]  # `published` still tells the true order


async def test_out_of_order_puts_the_ends_of_a_clear_before_the_clear(setup):
    okta, receiver = await setup()
    okta.org.hook_faults.out_of_order = True
    okta.org.sign_in(ALICE[0])
    okta.org.clear_user_sessions(okta.org.user(ALICE[0]).id)
    await okta.org.wait_for_hooks()
    assert [e["eventType"] for e in receiver.events()] == ["user.session.end", "user.session.clear"]


async def test_expiry_is_not_delivered(setup):
    okta, receiver = await setup(event_types=SESSION_EVENTS)
    session = okta.org.sign_in(ALICE[0])
    okta.org.clock.advance(121 * 60)
    assert (await okta.call("GET", f"/api/v1/sessions/{session.id}")).status == 404
    await okta.org.wait_for_hooks()
    assert [e["eventType"] for e in receiver.events()] == ["user.session.start"]


async def test_a_hook_gets_only_the_types_it_subscribed_to(setup):
    okta, receiver = await setup(event_types=["user.session.clear"])
    session = okta.org.sign_in(ALICE[0])
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    okta.org.clear_user_sessions(session.user_id)
    await okta.org.wait_for_hooks()
    assert [e["eventType"] for e in receiver.events()] == ["user.session.clear"]


@pytest.mark.parametrize("change,event_type", [("suspend", "user.lifecycle.suspend"),
                                               ("deactivate", "user.lifecycle.deactivate")])
async def test_suspend_and_deactivate_deliver_the_lifecycle_event_then_the_ends(setup, change, event_type):
    okta, receiver = await setup()
    session = okta.org.sign_in(ALICE[0])
    assert (await okta.call("POST", f"/api/v1/users/{session.user_id}/lifecycle/{change}")).status == 200
    await okta.org.wait_for_hooks()
    events = receiver.events()
    assert [e["eventType"] for e in events] == [event_type, "user.session.end"]
    assert events[0]["target"][0]["id"] == session.user_id
    assert events[1]["debugContext"]["debugData"]["EndedSessionId"] == session.id


async def test_ended_session_id_can_be_left_out(setup):
    okta, receiver = await setup()
    okta.org.report_ended_session_id = False  # "reported, unconfirmed": the gateway must cope without it
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    await okta.org.wait_for_hooks()
    assert receiver.events()[0]["debugContext"]["debugData"] == {}


async def test_wait_for_hooks_times_out_while_held(setup):
    okta, _ = await setup()
    okta.org.hook_faults.hold = True
    okta.org.end_session(okta.org.sign_in(ALICE[0]))
    with pytest.raises(TimeoutError):
        await okta.org.wait_for_hooks(0.2)
    okta.org.hook_faults.reset()
    await okta.org.wait_for_hooks()
    assert okta.org.deliveries[0].delivered
