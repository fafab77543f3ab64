"""gateway/store/redis_sessions.py against a real redis-server: the data layout (keys, values, expiries), a claim
taken by one and released by its holder only, holds that only move later, waits that end by their deadline, and
no session id anywhere in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis_support import RedisProcess

from gateway.metrics import Metrics
from gateway.settings import RedisSettings, StoreSettings
from gateway.store import StoreUnavailable
from gateway.store import redis as redis_link
from gateway.store.lookups import Looked
from gateway.store.redis import RedisLink
from gateway.store.redis_sessions import RedisSessions

SID = "102" + "S" * 22
FAMILIES = ("session_reads", "session_writes", "users")


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)


@pytest.fixture
async def shared(redis_server: RedisProcess) -> AsyncIterator[RedisSessions]:
    link = RedisLink(StoreSettings("redis", "hr-app", 3600.0, RedisSettings(url=redis_server.url, timeout=0.2)),
                     Metrics())
    await link.start()
    yield RedisSessions(link, okta_timeout=1.0)
    await link.close()


def pttl(redis: RedisProcess, key: str) -> int:
    return int(redis.command("PTTL", key))


async def test_every_key_carries_the_hash_tag_and_none_names_the_session(shared):
    for key in (shared.value_key(SID), shared.lock_key(SID), shared.hold_key("session_reads")):
        assert key.startswith("{hr-app}:")
    assert SID not in shared.value_key(SID) and SID not in shared.lock_key(SID)
    assert shared.value_key(SID) != shared.value_key(SID[:-1] + "T")


async def test_a_settled_claim_leaves_the_value_for_its_ttl_and_no_lock(shared, redis_server):
    assert await shared.look(SID, FAMILIES) == Looked(None, {})
    token = await shared.claim(SID)
    assert token is not None
    assert 1000 < pttl(redis_server, shared.lock_key(SID)) <= 1200  # the Okta timeout plus one command timeout
    await shared.settle(SID, token, "the answer", ttl=30)
    assert (await shared.look(SID, FAMILIES)).value == "the answer"
    assert 29_000 < pttl(redis_server, shared.value_key(SID)) <= 30_000
    assert redis_server.command("EXISTS", shared.lock_key(SID)) == "0"


async def test_one_claim_at_a_time(shared):
    first = await shared.claim(SID)
    assert first is not None
    assert await shared.claim(SID) is None
    await shared.settle(SID, first, None, 0)
    assert await shared.claim(SID) is not None


async def test_a_claim_is_released_by_its_holder_only(shared, redis_server):
    token = await shared.claim(SID)
    assert token is not None
    redis_server.command("SET", shared.lock_key(SID), "the-next-holder")  # ours lapsed; another replica claimed
    await shared.settle(SID, token, "late answer", ttl=30)
    assert redis_server.command("GET", shared.lock_key(SID)) == "the-next-holder"
    assert (await shared.look(SID, FAMILIES)).value == "late answer"  # an answer is an answer, whoever brings it


async def test_settling_without_an_answer_only_releases(shared, redis_server):
    token = await shared.claim(SID)
    assert token is not None
    await shared.settle(SID, token, None, 0)
    assert redis_server.command("EXISTS", shared.value_key(SID), shared.lock_key(SID)) == "0"


async def test_a_hold_only_moves_later_and_expires_at_its_end(shared, redis_server):
    now = time.time()
    await shared.hold("session_reads", now + 30, 30)
    await shared.hold("session_reads", now + 5, 5)  # an older 429's, written late
    looked = await shared.look(SID, FAMILIES)
    assert looked.holds == {"session_reads": pytest.approx(now + 30, abs=0.01)}
    assert 29_000 < pttl(redis_server, shared.hold_key("session_reads")) <= 30_000
    await shared.hold("users", now + 1, 0)  # already past: nothing to hold
    assert "users" not in (await shared.look(SID, FAMILIES)).holds


@pytest.mark.parametrize("garbage", ["soon", "nan", "inf", "-5", ""])
async def test_a_hold_that_is_not_a_time_is_no_hold(shared, redis_server, garbage):
    redis_server.command("SET", shared.hold_key("session_reads"), garbage)
    assert (await shared.look(SID, FAMILIES)).holds == {}


async def test_a_wait_ends_with_the_holders_answer(shared):
    token = await shared.claim(SID)
    assert token is not None

    async def answer_later() -> None:
        await asyncio.sleep(0.1)
        await shared.settle(SID, token, "the answer", ttl=30)

    later = asyncio.create_task(answer_later())
    looked = await shared.wait(SID, FAMILIES, time.monotonic() + 1.0)
    await later
    assert looked is not None and looked.value == "the answer"


async def test_a_wait_ends_when_the_claim_goes_without_an_answer(shared):
    token = await shared.claim(SID)
    assert token is not None
    now = time.time()

    async def fail_later() -> None:
        await asyncio.sleep(0.1)
        await shared.hold("session_reads", now + 30, 30)
        await shared.settle(SID, token, None, 0)

    later = asyncio.create_task(fail_later())
    looked = await shared.wait(SID, FAMILIES, time.monotonic() + 1.0)
    await later
    assert looked is not None and (looked.value, looked.claimed) == (None, False)
    assert looked.holds.keys() == {"session_reads"}


async def test_a_wait_ends_at_its_deadline(shared):
    assert await shared.claim(SID) is not None  # a holder that never answers
    started = time.monotonic()
    assert await shared.wait(SID, FAMILIES, started + 0.3) is None
    assert 0.3 <= time.monotonic() - started < 0.45


async def test_forget_drops_the_values(shared, redis_server):
    other = "102" + "O" * 22
    for session_id in (SID, other):
        token = await shared.claim(session_id)
        assert token is not None
        await shared.settle(session_id, token, "answer", ttl=30)
    await shared.forget([SID, other])
    await shared.forget([])
    assert redis_server.command("EXISTS", shared.value_key(SID), shared.value_key(other)) == "0"


async def test_redis_holds_no_session_id(shared, redis_server):
    token = await shared.claim(SID)
    assert token is not None
    await shared.settle(SID, token, '{"v":1}', ttl=30)
    await shared.hold("session_reads", time.time() + 30, 30)
    keys = redis_server.command("KEYS", "*").split("\n")
    assert len(keys) == 2
    assert not any(SID in key or SID in redis_server.command("GET", key) for key in keys)


async def test_a_killed_redis_is_store_unavailable(shared, redis_server):
    redis_server.kill()
    with pytest.raises(StoreUnavailable):
        await shared.look(SID, FAMILIES)
    with pytest.raises(StoreUnavailable):
        await shared.claim(SID)
