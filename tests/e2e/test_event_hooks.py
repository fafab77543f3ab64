"""Revocations pushed by Okta's event hooks: verified, authenticated, deduplicated, order-proof, and acted on at
once (the cache TTL here is an hour: only the push can end these sessions in time)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from okta_sandbox_support import ALICE, BOB
from raw_http import send_raw, statuses
from stack_support import HOOK_SECRET, SLOW_CACHE
from yarl import URL

from gateway.sandbox.stack import AppRoute
from gateway.server import METRICS

HOOK_TYPES = ["user.session.end", "user.session.clear", "user.lifecycle.suspend", "user.lifecycle.deactivate"]
HOOKED = {**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}}


async def hooked(start, browsers, *apps, secret: str = HOOK_SECRET, **org_faults):
    stack = await start(*apps, okta=HOOKED)
    for name, value in org_faults.items():
        setattr(stack.org.hook_faults, name, value)
    hook = stack.org.add_event_hook(stack.url("/.gateway/okta/events"), HOOK_TYPES, secret=secret)
    assert await stack.org.verify_hook(hook)
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE)).status == 200
    return stack, browser


def refused(page) -> bool:
    return page.status == 302 and page.location == "/login"


async def test_verification_echoes_the_challenge(start):
    stack = await start(okta=HOOKED)
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url("/.gateway/okta/events"),
                            headers={"x-okta-verification-challenge": "abc123"}) as r:
            assert r.status == 200 and await r.json() == {"verification": "abc123"}


async def test_a_sign_out_in_okta_ends_the_app_session_at_once(start, browsers):
    stack, browser = await hooked(start, browsers)
    await browser.okta_sign_out()
    await stack.org.wait_for_hooks()
    assert refused(await browser.get("/page/1"))
    assert stack.apps["hr"].sessions == {}


async def test_an_admin_clear_ends_every_binding_of_the_user_and_later_ones_live(start, browsers):
    stack, browser = await hooked(start, browsers)
    other = browsers(stack)
    await other.sign_in(ALICE)
    stack.org.clear_user_sessions(stack.org.user(ALICE[0]).id)
    await stack.org.wait_for_hooks()
    assert refused(await browser.get("/page/1")) and refused(await other.get("/page/1"))
    assert (await browser.sign_in(ALICE)).status == 200  # a binding made after the clear lives
    assert (await browser.get("/page/1")).status == 200


async def test_suspending_the_user_ends_the_app_session(start, browsers):
    stack, browser = await hooked(start, browsers)
    stack.org.suspend_user(stack.org.user(ALICE[0]).id)
    await stack.org.wait_for_hooks()
    assert refused(await browser.get("/page/1"))


async def test_a_delivery_with_the_wrong_secret_is_refused_and_revokes_nothing(start, browsers):
    stack, browser = await hooked(start, browsers, secret="not-the-configured-secret-0000000")
    await browser.okta_sign_out()
    await stack.org.wait_for_hooks()
    assert [a.status for d in stack.org.deliveries for a in d.attempts] == [401]  # 4xx: Okta does not retry
    assert (await browser.get("/page/1")).status == 200  # nothing revoked (the cache still vouches)


async def test_duplicate_and_reordered_deliveries_are_acted_on_once_and_right(start, browsers):
    stack, browser = await hooked(start, browsers, duplicate=True, out_of_order=True, hold=True)
    bob = browsers(stack)
    await bob.sign_in(BOB)
    stack.org.clear_user_sessions(stack.org.user(ALICE[0]).id)
    stack.org.hook_faults.hold = False
    await stack.org.wait_for_hooks()
    metrics = stack.gateway[METRICS]
    assert metrics.value("session_gateway_event_hook_events_total", outcome="duplicate") >= 1
    assert refused(await browser.get("/page/1"))
    assert (await bob.get("/page/1")).status == 200  # another user's session is untouched


async def test_an_open_websocket_closes_when_the_push_arrives(start, browsers):
    stack, browser = await hooked(start, browsers)
    async with browser.http.ws_connect(stack.url("/ws")) as ws:
        assert await ws.receive_json(timeout=5) == {"hello": ALICE[0]}
        await browser.okta_sign_out()
        await stack.org.wait_for_hooks()
        await ws.receive(timeout=5)
        assert ws.close_code == 1008


async def test_an_admin_ending_one_session_without_ended_session_id_is_left_to_the_lookup(start, browsers):
    stack, browser = await hooked(start, browsers, AppRoute("hr"))
    stack.org.report_ended_session_id = False
    session = stack.org.sessions_of(stack.org.user(ALICE[0]).id)[0]
    stack.org.end_session(session)  # an admin's end names the admin's session, not this one
    await stack.org.wait_for_hooks()
    assert (await browser.get("/page/1")).status == 200  # not guessed from the wrong field
    stack.org.clock.advance(3601)
    assert refused(await browser.get("/page/1"))  # the next lookup finds it gone


# --- hostile deliveries: a 4xx, never a 500, and the good events of a delivery still count ------------------------

async def deliver_raw(stack, body: bytes, *, chunked: bool = False, pieces: int = 1) -> bytes:
    """POST a delivery as raw bytes (with the right secret), its body in `pieces` writes a little apart."""
    url = URL(stack.url("/.gateway/okta/events"))
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(body)
    head = (b"POST /.gateway/okta/events HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json"
            b"\r\n%sConnection: close\r\n\r\n" % (url.raw_authority.encode(), HOOK_SECRET.encode(), framing))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head)
        size = max(len(body) // pieces, 1)
        for start in range(0, len(body), size):
            piece = body[start:start + size]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.02)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.hostile
async def test_a_hostile_delivery_is_a_400_never_a_500(start):
    stack = await start(okta=HOOKED)
    for body in (b"[" * 100_000, b'{"data": {"events": ' * 5000, b'{"data":' + b"[" * 20_000,
                 '{"data": {"events": []}}'.encode("utf-16"), b"\xef\xbb\xbf{}", b"\xff\xfe",
                 b'{"data": {"events": [{"uuid": "\xed\xa0\x80"}]}}', b"1" * 5000):
        answer = await deliver_raw(stack, body)
        assert statuses(answer) == [400] and b"Traceback" not in answer, (body[:30], answer[:300])


@pytest.mark.hostile
async def test_a_delivery_over_the_bound_is_a_413_however_it_is_framed(start):
    stack = await start(okta=HOOKED)
    big = b'{"data": {"events": [], "pad": "' + b"x" * (1024 * 1024) + b'"}}'
    assert statuses(await deliver_raw(stack, big)) == [413]
    assert statuses(await deliver_raw(stack, big, chunked=True, pieces=8)) == [413]


@pytest.mark.hostile
async def test_a_delivery_that_arrives_in_pieces_is_read_whole(start, browsers):
    stack, browser = await hooked(start, browsers)
    session = stack.org.sessions_of(stack.org.user(ALICE[0]).id)[0]
    event = {"uuid": "piecewise-1", "eventType": "user.session.end", "published": "2026-01-01T00:00:00.000Z",
             "actor": {"id": stack.org.user(ALICE[0]).id, "type": "User", "alternateId": ALICE[0]},
             "debugContext": {"debugData": {"EndedSessionId": session.id}}, "pad": "x" * 200_000}
    body = json.dumps({"data": {"events": [event]}}).encode()
    for chunked in (False, True):
        assert statuses(await deliver_raw(stack, body, chunked=chunked, pieces=10)) == [200]
    await asyncio.sleep(0.05)
    assert refused(await browser.get("/page/1"))


@pytest.mark.hostile
async def test_odd_bytes_in_the_challenge_or_the_secret_are_answered_never_a_500(start):
    stack = await start(okta=HOOKED)
    url = URL(stack.url("/.gateway/okta/events"))
    where = (url.raw_path.encode(), url.raw_authority.encode())
    for odd in (b"\xff\xfe", b"\xed\xa0\x80", "\u00b2".encode(), b"x" * 600, b"\xff" + HOOK_SECRET.encode()):
        for head in (b"GET %s HTTP/1.1\r\nHost: %s\r\nx-okta-verification-challenge: %s\r\nConnection: close\r\n\r\n"
                     % (*where, odd),
                     b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\n\r\n{}" % (*where, odd)):
            answer = await send_raw(url.host or "127.0.0.1", url.port or 80, head, idle=5)
            assert statuses(answer)[0] in (200, 400, 401) and b"Traceback" not in answer, answer[:300]
