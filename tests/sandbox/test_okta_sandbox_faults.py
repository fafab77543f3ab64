"""Rate limits and injected faults on the sandbox's /api/v1, as the gateway's tests and benchmarks use them."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from okta_sandbox_support import ALICE, Okta

from gateway.sandbox.okta.org import Clock

START = datetime(2026, 3, 1, 12, 0, 17, 250_000, tzinfo=UTC)
RATE_HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset")


@pytest.fixture
def start(start_okta_sandbox):
    async def start(**options) -> Okta:
        return await start_okta_sandbox(clock=Clock(START, frozen=True), **options)

    return start


def rate(answer) -> tuple[int, int, int]:
    limit, remaining, reset = (int(answer.headers[h]) for h in RATE_HEADERS)
    return limit, remaining, reset


async def get(okta: Okta, session_id: str, **kwargs):
    return await okta.call("GET", f"/api/v1/sessions/{session_id}", **kwargs)


async def test_every_api_answer_carries_the_rate_limit_headers(start):
    okta = await start(rate_limit_per_minute=50)
    session = okta.org.sign_in(ALICE[0])
    answers = [await get(okta, session.id), await get(okta, "idx" + "Q" * 22), await get(okta, session.id, token="x"),
               await okta.call("GET", "/api/v1/sessions/me", token=None),
               await okta.call("POST", "/api/v1/authn", token=None, json={})]
    okta.org.faults.fail_status, okta.org.faults.fail_count = 500, 1
    answers.append(await get(okta, session.id))
    assert [a.status for a in answers] == [200, 404, 401, 404, 401, 500]
    assert all(rate(a)[0] == 50 for a in answers)
    async with okta.http.get(okta.url("/login/login.htm")) as r:  # pages are not rate-limited
        assert "X-Rate-Limit-Limit" not in r.headers


async def test_the_window_starts_at_the_first_call_not_on_the_minute(start):
    okta = await start(rate_limit_per_minute=3)
    session = okta.org.sign_in(ALICE[0])
    first_reset = math.ceil(START.timestamp() + 60)
    seen = []
    for _ in range(4):
        seen.append(await get(okta, session.id))
        okta.org.clock.advance(5)
    assert [(a.status, rate(a)) for a in seen] == [
        (200, (3, 2, first_reset)), (200, (3, 1, first_reset)), (200, (3, 0, first_reset)),
        (429, (3, 0, first_reset))]
    over = seen[-1].json
    assert over["errorCode"] == "E0000047"
    assert over["errorSummary"] == "API call exceeded rate limit due to too many requests."
    okta.org.clock.advance(60 - 20 - 0.25)  # 59.75 s after the first call: still the same window
    assert (await get(okta, session.id)).status == 429
    okta.org.clock.advance(0.25)  # the window ended; a new one starts with this call
    fresh = await get(okta, session.id)
    assert fresh.status == 200 and rate(fresh) == (3, 2, math.ceil(okta.org.clock.timestamp() + 60))


async def test_calls_over_the_limit_are_recorded_and_use_nothing_up(start):
    okta = await start(rate_limit_per_minute=2)
    session = okta.org.sign_in(ALICE[0])
    statuses = [(await get(okta, session.id)).status for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    assert [c.status for c in okta.org.api_calls] == statuses


async def test_buckets_are_counted_apart(start):
    okta = await start(rate_limit_per_minute=1)
    session = okta.org.sign_in(ALICE[0])
    assert (await get(okta, session.id)).status == 200
    authn = await okta.call("POST", "/api/v1/authn", token=None, json={"username": ALICE[0], "password": ALICE[1]})
    assert authn.status == 200 and rate(authn)[1] == 0
    assert (await okta.call("DELETE", f"/api/v1/users/{session.user_id}/sessions")).status == 204
    assert (await get(okta, session.id)).status == 429


async def test_rate_limited_fault_answers_429_until_cleared(start):
    okta = await start(rate_limit_per_minute=600)
    session = okta.org.sign_in(ALICE[0])
    await get(okta, session.id)
    okta.org.clock.advance(10)
    okta.org.faults.rate_limited = True
    limited = await get(okta, session.id)
    assert limited.status == 429 and limited.json["errorCode"] == "E0000047"
    assert rate(limited) == (600, 0, math.ceil(START.timestamp() + 60))  # the reset of the current window
    okta.org.faults.rate_limited = False
    assert rate(await get(okta, session.id))[1] == 598


async def test_latency_delays_every_api_answer(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    okta.org.faults.latency = 0.3
    started = time.monotonic()
    assert (await get(okta, session.id)).status == 200
    assert time.monotonic() - started >= 0.3
    okta.org.faults.latency = 0
    started = time.monotonic()
    await get(okta, session.id)
    assert time.monotonic() - started < 0.25


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_fail_status_for_the_next_n_calls(start, status):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    okta.org.faults.fail_status, okta.org.faults.fail_count = status, 2
    answers = [await get(okta, session.id) for _ in range(3)]
    assert [a.status for a in answers] == [status, status, 200]
    assert answers[0].json["errorCode"] == "E0000009"
    assert okta.org.faults.fail_status is None


async def test_fail_status_without_a_count_fails_every_call_until_reset(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    okta.org.faults.fail_status = 503
    assert [(await get(okta, session.id)).status for _ in range(5)] == [503] * 5
    okta.org.faults.reset()
    assert (await get(okta, session.id)).status == 200


async def test_a_failure_is_injected_before_the_handler_runs(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    okta.org.faults.fail_status, okta.org.faults.fail_count = 502, 1
    assert (await okta.call("DELETE", f"/api/v1/sessions/{session.id}")).status == 502
    assert okta.org.session(session.id) is session  # Okta broke before acting


async def test_hang_holds_the_answer_until_cleared(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    okta.org.faults.hang = True
    with pytest.raises(asyncio.TimeoutError):
        await get(okta, session.id, timeout=aiohttp.ClientTimeout(total=0.3))
    pending = asyncio.create_task(get(okta, session.id))
    await asyncio.sleep(0.2)
    assert not pending.done() and okta.org.api_calls[-1].status is None  # arrived, not answered
    async with okta.http.get(okta.url("/login/login.htm")) as r:  # pages still answer
        assert r.status == 200
    okta.org.faults.hang = False
    assert (await asyncio.wait_for(pending, 2)).status == 200
    assert okta.org.api_calls[-1].status == 200


async def test_reset_clears_every_fault(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    faults = okta.org.faults
    faults.latency, faults.fail_status, faults.rate_limited, faults.hang = 5.0, 500, True, True
    faults.reset()
    started = time.monotonic()
    assert (await get(okta, session.id)).status == 200
    assert time.monotonic() - started < 1
