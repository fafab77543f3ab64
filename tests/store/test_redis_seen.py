"""gateway/store/redis_seen.py against a real redis-server: an id accepted by one replica (two stores, two links, one
Redis) is a replay at the other; the key is bounded whatever the id; Redis away (killed, hung) falls back to this
process's set at once, within the store timeout, and what it accepted meanwhile reaches Redis when it is back."""

from __future__ import annotations

import asyncio
import time

import pytest
from store.links import linked, wait_until

from gateway.store import redis as redis_link
from gateway.store.redis_seen import RedisSeen
from gateway.store.seen import digest

T = 1_700_000_000.0


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)


@pytest.fixture
async def two(redis_server):
    """Two replicas' links to one Redis."""
    async with linked(redis_server.url, timeout=0.2) as links:
        yield links


async def test_an_id_accepted_on_one_replica_is_a_replay_on_the_other(two, redis_server):
    a, b = RedisSeen(two[0], "jti"), RedisSeen(two[1], "jti")
    assert not await a.seen("j-1", until=T + 300, now=T)
    assert await b.seen("j-1", until=T + 300, now=T + 1)
    assert not await b.seen("j-2", until=T + 300, now=T) and await a.seen("j-2", until=T + 300, now=T)
    assert redis_server.command("EXISTS", a.key("j-1")) == "1"


async def test_of_many_replicas_with_one_id_at_once_one_hears_it_is_new(two):
    stores = [RedisSeen(two[i % 2], "hook") for i in range(10)]
    answers = await asyncio.gather(*(s.seen("uuid-1", until=T + 60, now=T) for s in stores))
    assert answers.count(False) == 1


async def test_the_kinds_are_apart_and_the_key_is_the_ids_digest_under_the_hash_tag(two, redis_server):
    jti, hook = RedisSeen(two[0], "jti"), RedisSeen(two[1], "hook")
    assert not await jti.seen("same", until=T + 60, now=T) and not await hook.seen("same", until=T + 60, now=T)
    assert sorted(redis_server.command("KEYS", "*").splitlines()) == [
        f"{{hr-app}}:hook:{digest('same')}", f"{{hr-app}}:jti:{digest('same')}"]


async def test_the_key_expires_when_the_id_no_longer_matters_by_the_callers_clock(two, redis_server):
    seen = RedisSeen(two[0], "jti")
    assert not await seen.seen("j-1", until=T + 300, now=T)  # T is far from Redis's own clock: the expiry is relative
    assert 299_000 < int(redis_server.command("PTTL", seen.key("j-1"))) <= 300_000
    assert not await seen.seen("j-2", until=T, now=T)  # past its time: not a replay, nothing kept
    assert redis_server.command("EXISTS", seen.key("j-2")) == "0"


async def test_a_hostile_id_makes_a_bounded_plain_key_and_is_still_caught(two, redis_server):
    hostile = "\udcff\x00\r\n*3\r\n" * 1280 + "\U0001f600"  # 10 KB: a lone surrogate, NUL, RESP framing, emoji
    a, b = RedisSeen(two[0], "jti"), RedisSeen(two[1], "jti")
    assert not await a.seen(hostile, until=T + 60, now=T) and await b.seen(hostile, until=T + 60, now=T)
    (key,) = redis_server.command("KEYS", "*").splitlines()
    assert key == "{hr-app}:jti:" + digest(hostile) and len(key) == len("{hr-app}:jti:") + 64


async def test_redis_killed_a_same_replica_replay_is_still_caught_within_the_timeout(two, redis_server):
    a, b = RedisSeen(two[0], "jti"), RedisSeen(two[1], "jti")
    assert not await a.seen("before", until=T + 300, now=T)
    redis_server.kill()
    began = time.monotonic()
    assert not await a.seen("during", until=T + 300, now=T)  # new: accepted from this process's set
    assert time.monotonic() - began < 0.5
    began = time.monotonic()
    assert await a.seen("during", until=T + 300, now=T) and await a.seen("before", until=T + 300, now=T)
    assert time.monotonic() - began < 0.01  # a replay on this replica: no round trip at all
    assert not await b.seen("during", until=T + 300, now=T)  # across replicas it cannot be caught while away
    redis_server.start()  # back, empty
    await wait_until(lambda: two[0].up and two[1].up)
    await wait_until(lambda: redis_server.command("EXISTS", a.key("during")) == "1")
    third = RedisSeen(two[1], "jti")
    assert await third.seen("during", until=T + 300, now=T)  # written when Redis was back: a replay everywhere


async def test_redis_hung_costs_one_timeout_then_none_and_a_replay_is_caught(two, redis_server):
    seen = RedisSeen(two[0], "hook")
    redis_server.hang()
    try:
        began = time.monotonic()
        assert not await seen.seen("u-1", until=T + 60, now=T)
        assert 0.15 < time.monotonic() - began < 0.6  # the store timeout (0.2 s), never more
        began = time.monotonic()
        assert await seen.seen("u-1", until=T + 60, now=T) and not await seen.seen("u-2", until=T + 60, now=T)
        assert time.monotonic() - began < 0.05  # away: no wait at all
    finally:
        redis_server.resume()
    await wait_until(lambda: two[0].up)
    await wait_until(lambda: redis_server.command("EXISTS", seen.key("u-2")) == "1")
