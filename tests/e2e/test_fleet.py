"""Three `session-gateway run` replicas sharing one redis-server behave as one gateway: a revocation taken by any of
them ends the session on all, a Universal Logout token is accepted once by the fleet, a policy switch reaches every
replica (and one started later), and Redis killed, hung or restarted empty loses nothing and fails no request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from okta_sandbox_support import ALICE, BOB
from stack_support import ADMIN_TOKEN, HOOK_SECRET, SLOW_CACHE

from gateway.sandbox.browser import Browser, Page
from gateway.sandbox.stack import UNIVERSAL_LOGOUT

PUSHED = {**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}, "universal_logout": {}}
HOOK_TYPES = ["user.session.end", "user.session.clear", "user.lifecycle.suspend"]
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REPLICAS = (0, 1, 2)


def refused(page: Page) -> bool:
    return page.status == 302 and page.location == "/login"


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 3.0) -> float:
    """Seconds until `check()` holds; fails past `limit`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < limit, "not within the limit"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def signed_in_everywhere(start_fleet, **kwargs) -> tuple:
    fleet = await start_fleet(okta=PUSHED, **kwargs)
    browser = Browser(fleet)
    assert (await browser.sign_in(ALICE)).status == 200
    for i in REPLICAS:  # each replica has validated and cached the session: only a push can end it in time
        assert (await browser.get(fleet.url("/page/1", i))).status == 200
    return fleet, browser


def app_cookies(browser: Browser) -> str:
    """The browser's cookies for the gateway's host, as one Cookie header: the same on every replica."""
    return "; ".join(f"{m.key}={m.value}" for m in browser.http.cookie_jar if m["domain"] == "127.0.0.1")


async def refused_on(browser: Browser, fleet, replica: int) -> bool:
    """Whether this replica refuses the browser's app session. Sent without the browser's jar: a refusal expires
    the cookies in the browser, which would make every later replica see no session at all."""
    cookie = getattr(browser, "fleet_cookie", None) or app_cookies(browser)
    browser.fleet_cookie = cookie  # type: ignore[attr-defined]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(fleet.url("/page/1", replica), headers={"Cookie": cookie}, allow_redirects=False) as r:
            return r.status == 302 and r.headers.get("Location") == "/login"


async def test_an_event_hook_on_one_replica_ends_the_session_on_every_other(start_fleet):
    fleet, browser = await signed_in_everywhere(start_fleet)
    try:
        hook = fleet.org.add_event_hook(fleet.url("/.gateway/okta/events", 1), HOOK_TYPES, secret=HOOK_SECRET)
        assert await fleet.org.verify_hook(hook)
        await browser.okta_sign_out()
        await fleet.org.wait_for_hooks()
        for i in (0, 2):
            assert await eventually(lambda i=i: refused_on(browser, fleet, i), limit=1.0) < 1.0
    finally:
        await browser.close()


async def test_a_universal_logout_token_accepted_by_one_replica_is_a_replay_at_another(start_fleet):
    fleet, browser = await signed_in_everywhere(start_fleet)
    headers, body = fleet.org.universal_logout_request(fleet.url(UNIVERSAL_LOGOUT), ALICE[0])
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(fleet.url(UNIVERSAL_LOGOUT, 1), headers=headers, data=body) as r:
                assert r.status == 204
            async with http.post(fleet.url(UNIVERSAL_LOGOUT, 2), headers=headers, data=body) as r:
                assert r.status == 401  # the same jti, at another replica
        for i in REPLICAS:
            assert await eventually(lambda i=i: refused_on(browser, fleet, i), limit=1.0) < 1.0
    finally:
        await browser.close()


async def test_a_universal_logout_outlives_a_restart_of_every_replica(start_fleet):
    fleet, browser = await signed_in_everywhere(start_fleet)
    try:
        assert await fleet.org.send_universal_logout(fleet.url(UNIVERSAL_LOGOUT), ALICE[0]) == 204
        assert fleet.org.sessions_of(fleet.org.user(ALICE[0]).id)  # Universal Logout leaves Okta's session ACTIVE
        for process in fleet.replicas:
            await asyncio.to_thread(process.stop)
        for process in fleet.replicas:
            await asyncio.to_thread(process.start)
        for i in REPLICAS:
            assert await refused_on(browser, fleet, i)
    finally:
        await browser.close()


async def status(fleet, replica: int) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(fleet.url("/.gateway/status.json", replica), headers=BEARER) as r:
            assert r.status == 200
            return await r.json()


async def policy_of(fleet, replica: int, route: str = "hr") -> str:
    return next(r["policy"] for r in (await status(fleet, replica))["routes"] if r["name"] == route)


async def test_a_policy_switch_reaches_every_replica_and_one_started_later(start_fleet):
    fleet = await start_fleet(okta=PUSHED)
    async with aiohttp.ClientSession() as http:
        async with http.put(fleet.url("/.gateway/admin/routes/hr/policy", 1), json={"mode": "observe"},
                            headers=BEARER) as r:
            assert r.status == 200
    for i in REPLICAS:
        assert await eventually(lambda i=i: _is(policy_of(fleet, i), "observe"), limit=1.0) < 1.0
    later = fleet.replicas[2]
    await asyncio.to_thread(later.stop)
    await asyncio.to_thread(later.start)
    assert await policy_of(fleet, 2) == "observe"  # adopted before it served


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


async def traffic(browser: Browser, fleet, seconds: float) -> list[tuple[int, float]]:
    """Requests round the replicas for `seconds`: (status, seconds it took) of each."""
    answers: list[tuple[int, float]] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        page = await browser.get(fleet.url("/page/1", i % 3))
        answers.append((page.status, time.monotonic() - started))
        i += 1
        await asyncio.sleep(0.01)
    return answers


async def test_redis_killed_then_back_empty_loses_no_revocation_and_fails_no_request(start_fleet):
    fleet, browser = await signed_in_everywhere(start_fleet)
    bob = Browser(fleet)
    try:
        assert (await bob.sign_in(BOB)).status == 200
        fleet.redis.kill()
        during = await traffic(bob, fleet, 1.0)
        assert await fleet.org.send_universal_logout(fleet.url(UNIVERSAL_LOGOUT), ALICE[0]) == 204  # replica 0
        assert await refused_on(browser, fleet, 0)  # acts at once where it was taken
        fleet.redis.start()  # empty: nothing was persisted
        for i in REPLICAS:
            await eventually(lambda i=i: refused_on(browser, fleet, i), limit=5.0)
        assert all(status == 200 for status, _ in during), during
        assert max(took for _, took in during) < 1.0
    finally:
        await browser.close()
        await bob.close()


async def test_a_hung_redis_holds_no_request_and_the_revocation_reaches_everyone_after(start_fleet):
    fleet, browser = await signed_in_everywhere(start_fleet)
    bob = Browser(fleet)
    try:
        assert (await bob.sign_in(BOB)).status == 200
        fleet.redis.hang()
        assert await fleet.org.send_universal_logout(fleet.url(UNIVERSAL_LOGOUT), ALICE[0]) == 204
        during = await traffic(bob, fleet, 1.0)
        assert all(status == 200 for status, _ in during), during
        assert max(took for _, took in during) < 1.0  # at most one store timeout (0.25 s) on any request
        fleet.redis.resume()
        for i in REPLICAS:
            await eventually(lambda i=i: refused_on(browser, fleet, i), limit=5.0)
    finally:
        await browser.close()
        await bob.close()


async def test_a_sentinel_failover_keeps_the_fleet_one_gateway(start_fleet, start_redis):
    primary = start_redis()
    replica = start_redis(replica_of=primary)
    sentinel = start_redis(sentinel_of=primary)
    fleet, browser = await signed_in_everywhere(
        start_fleet, store={"sentinels": [f"127.0.0.1:{sentinel.port}"], "service_name": "gateway"})
    bob = Browser(fleet)
    try:
        assert (await bob.sign_in(BOB)).status == 200
        primary.kill()
        promoted = await eventually(lambda: _promoted(replica), limit=15.0)
        assert promoted < 15.0
        assert await fleet.org.send_universal_logout(fleet.url(UNIVERSAL_LOGOUT), ALICE[0]) == 204
        for i in REPLICAS:
            await eventually(lambda i=i: refused_on(browser, fleet, i), limit=5.0)
        assert (await bob.get(fleet.url("/page/1", 2))).status == 200
    finally:
        await browser.close()
        await bob.close()


async def _promoted(redis) -> bool:
    try:
        return "role:master" in await asyncio.to_thread(redis.command, "INFO", "replication")
    except ConnectionResetError:  # Sentinel promotes with CLIENT KILL TYPE normal, which may cut this very INFO
        return False


async def test_readyz_and_the_status_page_show_the_store_and_readyz_stays_200_while_redis_is_away(start_fleet):
    fleet = await start_fleet(okta=PUSHED, replicas=1)
    async with aiohttp.ClientSession() as http:
        async with http.get(fleet.url("/.gateway/readyz")) as r:
            assert r.status == 200 and (await r.json())["store"] == "up"
        assert (await status(fleet, 0))["counters"]["store"] == "redis, up"
        fleet.redis.kill()
        await eventually(lambda: _is(_store_of(fleet), "redis, away"), limit=5.0)
        async with http.get(fleet.url("/.gateway/readyz")) as r:
            assert r.status == 200 and (await r.json())["store"] == "away"


async def _store_of(fleet) -> str:
    return (await status(fleet, 0))["counters"]["store"]
