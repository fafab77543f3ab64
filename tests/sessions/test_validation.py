"""The validator over real HTTP to the Okta sandbox: one call per id, negative entries, expiry, outages; and a fleet
of three validators sharing one real redis-server: one call per session per TTL for all, a 429 holding every
replica back, Redis killed, hung or restarted empty costing each lookup at most one store timeout."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from okta_sandbox_support import ALICE, API_TOKEN, Okta
from redis_support import RedisProcess
from yarl import URL

from gateway.metrics import Metrics
from gateway.okta.client import Family, OktaClient, RateLimited
from gateway.okta.model import OktaSession
from gateway.sessions.cache import ValidationCache
from gateway.sessions.shared import encode
from gateway.sessions.validation import SessionValidator, Validation, Verdict
from gateway.settings import CachePolicy, RedisSettings, StoreSettings
from gateway.store import redis as redis_link
from gateway.store.redis import RedisLink
from gateway.store.redis_sessions import RedisSessions

UNKNOWN = "idx" + "Q" * 22


@pytest.fixture
async def setup(start_okta_sandbox):
    made: list[SessionValidator] = []

    async def make(org: dict[str, Any] | None = None, **policy: Any) -> tuple[Okta, SessionValidator]:
        sandbox: Okta = await start_okta_sandbox(**(org or {}))
        metrics = Metrics()
        client = OktaClient(URL(sandbox.issuer), API_TOKEN, clock=sandbox.clock, metrics=metrics, timeout=1)
        await client.start()
        options = {k: policy.pop(k) for k in ("low_headroom", "stretch", "max_background") if k in policy}
        validator = SessionValidator(client, ValidationCache(CachePolicy(**policy)), metrics, clock=sandbox.clock,
                                     **options)
        made.append(validator)
        return sandbox, validator

    yield make
    for v in made:
        await v.close()
        await v.client.close()


def gets(sandbox: Okta, session_id: str) -> int:
    return sandbox.calls("GET", f"/api/v1/sessions/{session_id}")


async def test_a_thousand_concurrent_cold_lookups_make_one_okta_call(setup):
    sandbox, validator = await setup()
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.latency = 0.2  # all of them arrive while the one call is out
    results = await asyncio.gather(*(validator.validate(session.id) for _ in range(1000)))
    assert all(r.signed_in for r in results)
    assert gets(sandbox, session.id) == 1
    assert validator._metrics.value("session_gateway_validation_lookups_total", result="coalesced") == 999


async def test_a_warm_entry_is_answered_without_a_call(setup):
    sandbox, validator = await setup()
    session = sandbox.org.sign_in(ALICE[0])
    await validator.validate(session.id)
    for _ in range(100):
        assert (await validator.validate(session.id)).via == "hit"
    assert gets(sandbox, session.id) == 1


async def test_a_404_is_served_from_the_negative_cache(setup):
    sandbox, validator = await setup(negative_ttl=30)
    first = await validator.validate(UNKNOWN)
    second = await validator.validate(UNKNOWN)
    assert (first.verdict, second.verdict, second.via) == (Verdict.GONE, Verdict.GONE, "negative")
    assert gets(sandbox, UNKNOWN) == 1
    sandbox.org.clock.advance(31)
    await validator.validate(UNKNOWN)
    assert gets(sandbox, UNKNOWN) == 2


async def test_an_entry_dies_at_expires_at_even_inside_its_ttl(setup):
    sandbox, validator = await setup({"idle_minutes": 5}, ttl=3600)
    session = sandbox.org.sign_in(ALICE[0])
    assert (await validator.validate(session.id)).signed_in
    sandbox.org.clock.advance(5 * 60 + 1)  # the idle timeout passes; the cache's TTL has not
    result = await validator.validate(session.id)
    assert result.verdict is Verdict.GONE
    assert gets(sandbox, session.id) == 2


async def test_an_entry_near_its_ttl_is_served_and_refreshed_in_the_background(setup):
    sandbox, validator = await setup(ttl=100, revalidate=50)
    session = sandbox.org.sign_in(ALICE[0])
    await validator.validate(session.id)
    sandbox.org.clock.advance(110)
    sandbox.org.faults.latency = 0.3
    started = asyncio.get_running_loop().time()
    result = await validator.validate(session.id)
    assert result.via == "refresh" and result.signed_in
    assert asyncio.get_running_loop().time() - started < 0.1  # served at once, not after the call
    await asyncio.sleep(0.5)
    assert gets(sandbox, session.id) == 2
    assert (await validator.validate(session.id)).via == "hit"  # the refreshed entry starts a new TTL


async def test_a_failed_revalidation_hands_the_next_request_to_the_fail_mode(setup):
    sandbox, validator = await setup(ttl=10, revalidate=30)
    session = sandbox.org.sign_in(ALICE[0])
    await validator.validate(session.id)
    sandbox.org.clock.advance(11)
    sandbox.org.faults.fail_status = 503
    assert (await validator.validate(session.id)).via == "refresh"  # served while the one call is out
    await asyncio.gather(*validator._inflight.values())  # the revalidation, retries included, fails
    assert (await validator.validate(session.id, grace=None)).verdict is Verdict.UNAVAILABLE


async def test_background_refreshes_are_bounded(setup):
    sandbox, validator = await setup(ttl=100, revalidate=50, max_background=2)
    sessions = [sandbox.org.sign_in(ALICE[0]) for _ in range(5)]
    for s in sessions:
        await validator.validate(s.id)
    sandbox.org.clock.advance(110)
    sandbox.org.faults.latency = 0.3
    for s in sessions:
        await validator.validate(s.id)
    await asyncio.sleep(0.5)
    assert sum(gets(sandbox, s.id) for s in sessions) == 5 + 2


async def test_ttls_stretch_when_rate_limit_headroom_is_low(setup):
    sandbox, validator = await setup({"rate_limit_per_minute": 10}, ttl=60, low_headroom=0.5, stretch=4)
    sessions = [sandbox.org.sign_in(ALICE[0]) for _ in range(8)]
    for s in sessions:
        await validator.validate(s.id)
    sandbox.org.clock.advance(100)  # past a normal TTL, inside a stretched one
    early, late = sessions[0], sessions[-1]  # the first was fetched with headroom, the last without
    assert (await validator.validate(late.id)).via in ("hit", "refresh")
    assert (await validator.validate(early.id)).via in ("miss", "unavailable")


async def test_a_429_stops_all_calls_until_the_reset(setup):
    sandbox, validator = await setup()
    a, b = sandbox.org.sign_in(ALICE[0]), sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.rate_limited = True
    assert (await validator.validate(a.id)).verdict is Verdict.UNAVAILABLE
    sandbox.org.faults.rate_limited = False
    calls = len(sandbox.org.api_calls)
    for _ in range(50):
        assert (await validator.validate(b.id)).verdict is Verdict.UNAVAILABLE
    assert len(sandbox.org.api_calls) == calls
    sandbox.org.clock.advance(61)
    assert (await validator.validate(b.id)).signed_in


async def test_fail_mode_closed_refuses_while_okta_is_down(setup):
    sandbox, validator = await setup(ttl=10, revalidate=0)
    session = sandbox.org.sign_in(ALICE[0])
    await validator.validate(session.id)
    sandbox.org.clock.advance(11)
    sandbox.org.faults.fail_status = 503
    result = await validator.validate(session.id, grace=None)
    assert (result.verdict, result.via) == (Verdict.UNAVAILABLE, "unavailable")
    assert validator._metrics.value("session_gateway_validation_outage_answers_total", mode="closed") == 1


async def test_fail_mode_grace_serves_a_session_last_seen_active_for_n_more_seconds(setup):
    sandbox, validator = await setup(ttl=10, revalidate=0)
    session = sandbox.org.sign_in(ALICE[0])
    await validator.validate(session.id)
    sandbox.org.faults.fail_status = 503
    sandbox.org.clock.advance(11)
    result = await validator.validate(session.id, grace=60)
    assert (result.verdict, result.via, result.signed_in) == (Verdict.ALIVE, "grace", True)
    sandbox.org.clock.advance(60)  # now 61 s past the entry's end
    assert (await validator.validate(session.id, grace=60)).verdict is Verdict.UNAVAILABLE
    never_seen = sandbox.org.sign_in(ALICE[0])
    assert (await validator.validate(never_seen.id, grace=60)).verdict is Verdict.UNAVAILABLE
    assert validator._metrics.value("session_gateway_validation_outage_answers_total", mode="grace") == 3


async def test_a_hung_okta_is_an_outage_not_a_hung_request(setup):
    sandbox, validator = await setup()
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.hang = True
    result = await asyncio.wait_for(validator.validate(session.id), 3)
    assert result.verdict is Verdict.UNAVAILABLE
    sandbox.org.faults.reset()


@pytest.mark.parametrize("hostile", ["../users/me", "%2e%2e", "102" + "a" * 10_000, "idx" + "é" * 22])
async def test_hostile_ids_are_no_session_and_never_reach_okta(setup, hostile):
    sandbox, validator = await setup()
    assert (await validator.validate(hostile)).verdict is Verdict.GONE
    assert sandbox.org.api_calls == []


async def test_mfa_required_is_alive_but_not_signed_in(setup):
    sandbox, validator = await setup()
    session = sandbox.org.sign_in(ALICE[0])
    session.status = "MFA_REQUIRED"
    result = await validator.validate(session.id)
    assert result.verdict is Verdict.ALIVE and not result.signed_in



# --- a fleet: three replicas (each its own OktaClient, cache, metrics and RedisLink), one sandbox, one Redis -------

STORE_TIMEOUT = 0.2


@dataclass
class Fleet:
    sandbox: Okta
    redis: RedisProcess
    replicas: list[SessionValidator]

    def shared_of(self, replica: SessionValidator) -> RedisSessions:
        assert isinstance(replica.shared, RedisSessions)
        return replica.shared

    async def settled(self) -> None:
        """Every lookup under way and every background write of every replica has landed."""
        for replica in self.replicas:
            await asyncio.gather(*replica._inflight.values(), return_exceptions=True)
        for replica in self.replicas:
            await asyncio.gather(*replica._writes, return_exceptions=True)

    async def links_up(self) -> None:
        links = [self.shared_of(r)._link for r in self.replicas]
        deadline = time.monotonic() + 5
        while not all(link.up for link in links):
            assert time.monotonic() < deadline, "redis did not come back"
            await asyncio.sleep(0.02)

    def shared(self, outcome: str) -> float:
        return sum(r._metrics.value("session_gateway_validation_shared_total", outcome=outcome) for r in self.replicas)

    def via(self, result: str) -> float:
        return sum(r._metrics.value("session_gateway_validation_lookups_total", result=result) for r in self.replicas)


@pytest.fixture
async def fleet(start_okta_sandbox, redis_server, monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    made: list[tuple[SessionValidator, RedisLink]] = []

    async def make(org: dict[str, Any] | None = None, *, replicas: int = 3, okta_timeout: float = 2.0,
                   **policy: Any) -> Fleet:
        sandbox: Okta = await start_okta_sandbox(**(org or {}))
        settings = StoreSettings("redis", "hr-app", 3600.0, RedisSettings(url=redis_server.url, timeout=STORE_TIMEOUT))
        for _ in range(replicas):
            metrics = Metrics()
            link = RedisLink(settings, metrics)
            await link.start()
            client = OktaClient(URL(sandbox.issuer), API_TOKEN, clock=sandbox.clock, metrics=metrics,
                                timeout=okta_timeout)
            await client.start()
            validator = SessionValidator(client, ValidationCache(CachePolicy(**policy)), metrics, clock=sandbox.clock,
                                         shared=RedisSessions(link, okta_timeout))
            made.append((validator, link))
        return Fleet(sandbox, redis_server, [v for v, _ in made[-replicas:]])

    yield make
    if redis_server.process is not None:
        redis_server.resume()
    for validator, link in made:
        await validator.close()
        await validator.client.close()
        await link.close()


async def spread(fleet: Fleet, session_id: str, n: int) -> list[Validation]:
    """n concurrent lookups of one id, dealt round the replicas."""
    replicas = fleet.replicas
    return await asyncio.gather(*(replicas[i % len(replicas)].validate(session_id) for i in range(n)))


async def test_300_concurrent_first_lookups_over_three_replicas_make_one_okta_call(fleet):
    f = await fleet()
    session = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.latency = 0.2  # the other replicas' misses all arrive while the one call is out
    results = await spread(f, session.id, 300)
    assert all(r.signed_in for r in results)
    assert gets(f.sandbox, session.id) == 1
    assert (f.via("miss"), f.via("shared"), f.via("coalesced")) == (1, 2, 297)
    assert f.shared("claimed") == 1


async def test_steady_lookups_over_three_replicas_cost_one_okta_call_per_ttl(fleet):
    f = await fleet(ttl=60, revalidate=15)
    sessions = [f.sandbox.org.sign_in(ALICE[0]) for _ in range(5)]
    windows, steps = 3, 20
    for step in range(windows * steps):
        for replica in f.replicas[step % 3:] + f.replicas[:step % 3]:  # one after the other, a new first each time
            await asyncio.gather(*(replica.validate(s.id) for s in sessions for _ in range(2)))
            await f.settled()  # background revalidations land before the next replica and the clock move on
        f.sandbox.org.clock.advance(60 / steps)
    calls = sum(gets(f.sandbox, s.id) for s in sessions)
    assert calls / (len(sessions) * windows) <= 1.0  # alone, each replica would make its own: 3 per TTL


async def test_a_gone_answer_is_shared_too(fleet):
    f = await fleet(negative_ttl=30)
    first, second, third = f.replicas
    assert (await first.validate(UNKNOWN)).verdict is Verdict.GONE
    await f.settled()
    for replica in (second, third):
        result = await replica.validate(UNKNOWN)
        assert (result.verdict, result.via) == (Verdict.GONE, "shared")
    assert gets(f.sandbox, UNKNOWN) == 1
    f.sandbox.org.clock.advance(31)
    assert (await second.validate(UNKNOWN)).verdict is Verdict.GONE  # the shared answer ends with negative_ttl
    assert gets(f.sandbox, UNKNOWN) == 2


async def test_a_429_on_one_replica_holds_every_replica_back_until_the_reset(fleet):
    f = await fleet()
    first, second, third = f.replicas
    a, b = f.sandbox.org.sign_in(ALICE[0]), f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.rate_limited = True
    assert (await first.validate(a.id)).verdict is Verdict.UNAVAILABLE
    await f.settled()
    f.sandbox.org.faults.rate_limited = False
    calls = len(f.sandbox.org.api_calls)
    for replica in (second, third):
        for _ in range(20):
            assert (await replica.validate(b.id)).verdict is Verdict.UNAVAILABLE
    assert len(f.sandbox.org.api_calls) == calls
    assert second.client.blocked_until(Family.SESSION_READS) == first.client.blocked_until(Family.SESSION_READS)
    f.sandbox.org.clock.advance(61)
    assert (await third.validate(b.id)).signed_in


async def test_a_429_of_another_family_holds_its_calls_back_on_every_replica(fleet):
    f = await fleet()
    first, second, _ = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.rate_limited = True
    with pytest.raises(RateLimited):
        await first.client.close_session(session.id)  # an app logout's DELETE
    await f.settled()
    f.sandbox.org.faults.rate_limited = False
    assert (await second.validate(session.id)).signed_in  # session reads are not held back; the lookup learns
    deletes = f.sandbox.calls("DELETE", "/api/v1/sessions/")
    with pytest.raises(RateLimited):
        await second.client.close_session(session.id)
    assert f.sandbox.calls("DELETE", "/api/v1/sessions/") == deletes


async def test_a_lock_left_by_a_dead_replica_costs_at_most_the_okta_timeout(fleet):
    f = await fleet(replicas=1, okta_timeout=0.5)
    (replica,) = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    f.redis.command("SET", f.shared_of(replica).lock_key(session.id), "a-replica-that-died", "PX", "60000")
    started = time.monotonic()
    assert (await replica.validate(session.id)).signed_in
    assert 0.5 <= time.monotonic() - started < 0.9  # waited its bound, then asked Okta itself
    assert gets(f.sandbox, session.id) == 1 and f.shared("wait_bound") == 1


@pytest.mark.parametrize("garbage", [
    "garbage", '{"v":1,"fetchedAt":NaN,"freshUntil":1e12,"gone":true}', '{"v":9,"gone":true}',
    '{"v":1,"fetchedAt":1,"freshUntil":1e12,"session":{"userId":"00u1","status":"ACTIVE","expiresAt":7}}',
])
async def test_a_malformed_shared_value_is_a_miss(fleet, garbage):
    f = await fleet(replicas=1)
    (replica,) = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    f.redis.command("SET", f.shared_of(replica).value_key(session.id), garbage)
    result = await replica.validate(session.id)
    assert (result.signed_in, result.via) == (True, "miss")
    assert gets(f.sandbox, session.id) == 1 and f.shared("malformed") == 1
    await f.settled()
    assert f.redis.command("GET", f.shared_of(replica).value_key(session.id)) != garbage  # replaced by the answer


async def test_a_shared_answer_lives_no_longer_than_this_replicas_ttl(fleet):
    f = await fleet(replicas=1, ttl=60)
    (replica,) = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    now = f.sandbox.clock()
    forged = ValidationCache(CachePolicy(ttl=10 * 86_400)).store_alive(
        OktaSession(session.id, "00u0abcdefGHIJKLMNOP", "mallory@example.com", "ACTIVE", now + 86_400, None, (),
                    None), now)
    f.redis.command("SET", f.shared_of(replica).value_key(session.id), encode(forged))
    result = await replica.validate(session.id)
    assert result.via == "shared" and result.entry is not None
    assert result.entry.fresh_until <= now + 60 * 4  # this replica's own TTL at its most stretched (stretch=4)


async def shared_by_the_first(f: Fleet) -> str:
    """A new session looked up on the first replica, its answer in the shared cache; its id."""
    session = f.sandbox.org.sign_in(ALICE[0])
    assert (await f.replicas[0].validate(session.id)).signed_in
    await f.settled()
    assert f.redis.command("EXISTS", f.shared_of(f.replicas[0]).value_key(session.id)) == "1"
    return session.id


async def test_forget_drops_the_shared_answer_so_the_next_miss_asks_okta(fleet):
    f = await fleet()
    session_id = await shared_by_the_first(f)
    for replica in f.replicas:  # the revocation reaches every replica
        replica.forget(session_id)
    await f.settled()
    f.sandbox.org.end_session(f.sandbox.org.session(session_id))
    assert (await f.replicas[2].validate(session_id)).verdict is Verdict.GONE
    assert gets(f.sandbox, session_id) == 2


async def test_forget_user_drops_the_users_shared_answers(fleet):
    f = await fleet()
    session_id = await shared_by_the_first(f)
    first, second, _ = f.replicas
    assert first.forget_user([f.sandbox.org.session(session_id).user_id]) == 1
    await f.settled()
    assert f.redis.command("EXISTS", f.shared_of(first).value_key(session_id)) == "0"
    assert (await second.validate(session_id)).via == "miss"


async def test_a_warm_hit_does_no_io_even_with_redis_hung(fleet):
    f = await fleet()
    session = f.sandbox.org.sign_in(ALICE[0])
    await spread(f, session.id, 3)
    f.redis.hang()
    started = time.monotonic()
    for replica in f.replicas:
        for _ in range(1000):
            assert (await replica.validate(session.id)).via == "hit"
    assert time.monotonic() - started < 0.1


async def test_a_killed_redis_leaves_every_lookup_to_okta_and_sharing_resumes_when_it_is_back(fleet):
    f = await fleet()
    f.redis.kill()
    sessions = [f.sandbox.org.sign_in(ALICE[0]) for _ in range(10)]
    started = time.monotonic()
    results = await asyncio.gather(*(spread(f, s.id, 3) for s in sessions))
    assert all(r.signed_in for rs in results for r in rs)
    assert time.monotonic() - started < 1.0
    assert all(gets(f.sandbox, s.id) == 3 for s in sessions)  # each replica alone, as without a fleet
    f.redis.start()
    await f.links_up()
    later = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.latency = 0.2
    assert all(r.signed_in for r in await spread(f, later.id, 30))
    assert gets(f.sandbox, later.id) == 1


async def test_a_hung_redis_costs_a_lookup_at_most_one_store_timeout(fleet):
    f = await fleet()
    sessions = [f.sandbox.org.sign_in(ALICE[0]) for _ in range(10)]
    f.redis.hang()

    async def timed(replica: SessionValidator, session_id: str) -> float:
        started = time.monotonic()
        assert (await replica.validate(session_id)).signed_in
        return time.monotonic() - started

    first = await asyncio.gather(*(timed(r, s.id) for s in sessions for r in f.replicas))  # all at the hang
    assert max(first) < STORE_TIMEOUT + 0.3
    later = f.sandbox.org.sign_in(ALICE[0])
    assert max([await timed(r, later.id) for r in f.replicas]) < 0.1  # away now: no wait at all
    f.redis.resume()
    await f.links_up()


async def test_a_redis_hung_after_the_claim_does_not_hold_the_answer_back(fleet):
    f = await fleet(replicas=1)
    (replica,) = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.latency = 0.3
    started = time.monotonic()
    lookup = asyncio.create_task(replica.validate(session.id))
    await asyncio.sleep(0.15)  # claimed; Okta is answering
    f.redis.hang()
    assert (await lookup).signed_in
    assert time.monotonic() - started < 0.3 + 0.12  # the answer is shared in the background, not waited for
    f.redis.resume()
    await f.settled()


async def test_a_redis_hung_while_a_replica_waits_for_another_costs_the_waiter_one_store_timeout(fleet):
    f = await fleet(replicas=2, okta_timeout=3.0)
    holder, waiter = f.replicas
    session = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.latency = 0.5

    async def timed(replica: SessionValidator) -> float:
        started = time.monotonic()
        assert (await replica.validate(session.id)).signed_in
        return time.monotonic() - started

    holding = asyncio.create_task(timed(holder))
    await asyncio.sleep(0.1)  # the holder has claimed the id and asks Okta
    waiting = asyncio.create_task(timed(waiter))
    await asyncio.sleep(0.1)
    f.redis.hang()
    held, waited = await holding, await waiting
    assert held < 0.8  # the holder's answer does not wait on its write to Redis
    assert waited < 0.1 + STORE_TIMEOUT + 0.5 + 0.3  # not the 3 s bound: one store timeout, then Okta
    assert gets(f.sandbox, session.id) == 2
    f.redis.resume()
    await f.links_up()


async def test_a_redis_restarted_empty_mid_traffic_costs_one_call_per_session_and_sharing_resumes(fleet):
    f = await fleet(ttl=60, revalidate=15)
    sessions = [f.sandbox.org.sign_in(ALICE[0]) for _ in range(5)]
    await asyncio.gather(*(spread(f, s.id, 6) for s in sessions))
    await f.settled()
    f.redis.restart_empty()
    for _ in range(3):  # past the TTL, through the restart: every lookup is answered
        f.sandbox.org.clock.advance(30)
        results = await asyncio.gather(*(spread(f, s.id, 6) for s in sessions))
        assert all(r.signed_in for rs in results for r in rs)
        await f.settled()
    await f.links_up()
    later = f.sandbox.org.sign_in(ALICE[0])
    f.sandbox.org.faults.latency = 0.2
    assert all(r.signed_in for r in await spread(f, later.id, 30))
    assert gets(f.sandbox, later.id) == 1
