"""gateway/store/redis.py against a real redis-server: keys under one hash tag, and Redis away (killed, hung,
restarted) costs one timeout, then nothing until a ping answers again."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.metrics import Metrics
from gateway.settings import RedisSettings, StoreSettings
from gateway.store import redis as redis_link
from gateway.store.redis import RedisLink, StoreUnavailable


def link_to(url: str, **redis: float) -> RedisLink:
    return RedisLink(StoreSettings("redis", "hr-app", 3600.0, RedisSettings(url=url, **redis)), Metrics())


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)


async def wait_until(condition, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_every_key_of_a_gateway_carries_its_one_hash_tag():
    link = link_to("redis://127.0.0.1:9")
    assert link.key("tombstones") == "{hr-app}:tombstones"
    assert link.key("jti:abc") == "{hr-app}:jti:abc"


async def test_a_running_redis_is_up_and_answers(redis_server):
    link = link_to(redis_server.url)
    await link.start()
    try:
        assert link.up and link._metrics.value("session_gateway_store_up") == 1
        await link.run(lambda r: r.set(link.key("x"), "1"))
        assert redis_server.command("GET", "{hr-app}:x") == "1"
    finally:
        await link.close()


async def test_a_killed_redis_fails_one_command_then_none_waits_and_it_comes_back(redis_server, caplog):
    link = link_to(redis_server.url)
    await link.start()
    back: list[bool] = []

    async def on_up() -> None:
        back.append(True)

    link.on_up.append(on_up)
    try:
        redis_server.kill()
        with pytest.raises(StoreUnavailable):
            await link.run(lambda r: r.get(link.key("x")))
        assert not link.up and link._metrics.value("session_gateway_store_up") == 0
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await link.run(lambda r: r.get(link.key("x")))
        assert time.monotonic() - started < 0.01  # no round trip while away
        redis_server.start()
        await wait_until(lambda: link.up)
        assert back == [True]
        assert await link.run(lambda r: r.ping())
        assert [r.message for r in caplog.records if "redis is" in r.message][-2:] == [
            "store: redis is away (ConnectionError); serving from this process's state, revocations are kept and "
            "written when it is back", "store: redis is back"]
    finally:
        await link.close()


async def test_a_hung_redis_costs_one_timeout(redis_server):
    link = link_to(redis_server.url, timeout=0.2)
    await link.start()
    try:
        redis_server.hang()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await link.run(lambda r: r.get(link.key("x")))
        assert 0.15 < time.monotonic() - started < 1.0
        redis_server.resume()
        await wait_until(lambda: link.up)
    finally:
        await link.close()


async def test_a_redis_away_at_start_up_is_not_fatal():
    link = link_to("redis://127.0.0.1:9", connect_timeout=0.2)
    await link.start()
    try:
        assert not link.up
        with pytest.raises(StoreUnavailable):
            await link.run(lambda r: r.ping())
    finally:
        await link.close()
