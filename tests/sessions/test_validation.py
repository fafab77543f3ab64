"""The validator over real HTTP to the Okta sandbox: one call per id, negative entries, expiry, outages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from okta_sandbox_support import ALICE, API_TOKEN, Okta
from yarl import URL

from gateway.metrics import Metrics
from gateway.okta.client import OktaClient
from gateway.sessions.cache import ValidationCache
from gateway.sessions.validation import SessionValidator, Verdict
from gateway.settings import CachePolicy

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
    assert validator._metrics.value("gateway_validation_lookups_total", result="coalesced") == 999


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
    assert validator._metrics.value("gateway_validation_outage_answers_total", mode="closed") == 1


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
    assert validator._metrics.value("gateway_validation_outage_answers_total", mode="grace") == 3


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

