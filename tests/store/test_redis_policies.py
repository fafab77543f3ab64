"""gateway/store/redis_policies.py against a real redis-server: a switch on one replica (its own link and store) is
taken by the others at once, and adopted by one that starts later before its start() returns; a clear returns the
route everywhere; Redis killed, hung or restarted empty loses no switch and never holds a replica up."""

from __future__ import annotations

import logging
import time

import pytest
from store.links import started, wait_until

from gateway.settings import Mode
from gateway.store import redis as redis_link
from gateway.store import redis_policies
from gateway.store.policies import Override
from gateway.store.redis_policies import RedisPolicies

T = 1_700_000_000.0
SWITCH = Override(Mode.OFF, "bearer (session-gateway-cli (ops))", T, Mode.ENFORCE)
HASH, CHANNEL = "{hr-app}:policy", "{hr-app}:policy:changes"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    monkeypatch.setattr(redis_policies, "RETRY_EVERY", 0.05)


class Replicas:
    """Replicas of one gateway, each with its link and policy store, on one Redis."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[tuple[object, RedisPolicies]] = []

    async def start(self) -> RedisPolicies:
        link = await started(self.url, timeout=0.2, connect_timeout=0.3)
        store = RedisPolicies(link)
        self.made.append((link, store))
        await store.start()
        return store

    async def close(self) -> None:
        for link, store in self.made:
            await store.close()
            await link.close()  # type: ignore[attr-defined]


@pytest.fixture
async def replicas(redis_server):
    made = Replicas(redis_server.url)
    yield made
    await made.close()


async def test_a_switch_on_one_replica_is_taken_by_the_other_at_once(replicas, redis_server):
    a, b = await replicas.start(), await replicas.start()
    told: list[tuple[str, Override | None]] = []
    b.on_change.append(lambda route, override: told.append((route, override)))
    assert await a.put("hr", SWITCH)
    assert a.overrides == {"hr": SWITCH}  # here at once, before any message
    assert await wait_until(lambda: b.overrides == {"hr": SWITCH}) < 0.2
    assert told == [("hr", SWITCH)]
    assert redis_server.command("HGET", HASH, "hr") == SWITCH.text()
    assert redis_server.command("HGET", HASH, "*") == "1"


async def test_a_replica_started_later_adopts_the_fleets_overrides_before_it_serves(replicas):
    a = await replicas.start()
    assert await a.put("hr", SWITCH)
    later = await replicas.start()
    assert later.overrides == {"hr": SWITCH}  # start() returned: adopted


async def test_a_clear_on_one_replica_returns_the_route_on_every_replica(replicas, redis_server):
    a, b = await replicas.start(), await replicas.start()
    await a.put("hr", SWITCH)
    await a.put("wiki", Override(Mode.ENFORCE, "operator cookie (status page)", T, Mode.OFF))
    await wait_until(lambda: len(b.overrides) == 2)
    assert await b.clear("hr", T + 1)
    await wait_until(lambda: "hr" not in a.overrides)
    assert list(a.overrides) == list(b.overrides) == ["wiki"]
    assert redis_server.command("HEXISTS", HASH, "hr") == "0"
    later = await replicas.start()
    assert list(later.overrides) == ["wiki"]


async def test_an_older_switch_does_not_overwrite_a_newer_one(replicas):
    a, b = await replicas.start(), await replicas.start()
    newer = Override(Mode.OBSERVE, "bearer (b)", T + 10, Mode.ENFORCE)
    await b.put("hr", newer)
    await wait_until(lambda: a.overrides.get("hr") == newer)
    assert await a.put("hr", SWITCH)  # its clock is behind: the fleet keeps the newer, and so does this replica
    assert a.overrides == {"hr": newer} and b.overrides == {"hr": newer}


async def test_redis_killed_a_switch_applies_here_at_once_and_everywhere_once_redis_is_back(replicas, redis_server):
    a, b = await replicas.start(), await replicas.start()
    redis_server.kill()
    began = time.monotonic()
    assert not await a.put("hr", SWITCH)  # kept: this replica only, for now
    assert time.monotonic() - began < 0.5 and a.overrides == {"hr": SWITCH} and b.overrides == {}
    redis_server.start()  # back, and empty
    await wait_until(lambda: b.overrides == {"hr": SWITCH})
    assert redis_server.command("HGET", HASH, "hr") == SWITCH.text()


async def test_redis_restarted_empty_gets_back_the_overrides_the_replicas_hold(replicas, redis_server):
    a, b = await replicas.start(), await replicas.start()
    await a.put("hr", SWITCH)
    await wait_until(lambda: b.overrides == {"hr": SWITCH})
    redis_server.restart_empty()
    await wait_until(lambda: redis_server.command("HGET", HASH, "hr") == SWITCH.text())
    later = await replicas.start()
    assert later.overrides == {"hr": SWITCH} and a.overrides == b.overrides == {"hr": SWITCH}


async def test_a_clear_made_while_a_replica_was_cut_off_reaches_it_when_it_catches_up(replicas, redis_server):
    a, b = await replicas.start(), await replicas.start()
    await a.put("hr", SWITCH)
    await wait_until(lambda: b.overrides == {"hr": SWITCH})
    redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")  # b (and a) miss what is published until they are back
    redis_server.command("HDEL", HASH, "hr")  # as a clear by a replica whose message they missed
    await wait_until(lambda: b.overrides == {} and a.overrides == {})


@pytest.mark.parametrize("fault", ["kill", "hang"])
async def test_redis_away_at_start_up_is_not_a_wait_and_the_fleets_overrides_come_when_it_answers(
        replicas, redis_server, fault):
    a = await replicas.start()
    await a.put("hr", SWITCH)
    getattr(redis_server, fault)()
    began = time.monotonic()
    later = await replicas.start()
    assert time.monotonic() - began < 2.0  # the link's and the store's timeouts, once each, never more
    assert later.overrides == {}  # the configured policies, until Redis answers
    redis_server.resume() if fault == "hang" else redis_server.start()
    await wait_until(lambda: later.overrides == {"hr": SWITCH})


async def test_what_is_stored_or_published_unreadably_is_ignored_and_logged_once(replicas, redis_server, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.store")
    redis_server.command("HSET", HASH, "wiki", "not an override", "*", "1")
    a = await replicas.start()
    assert a.overrides == {}
    for _ in range(3):
        redis_server.command("PUBLISH", CHANNEL, '{"route": "wiki", "override": "garbage"}')
        redis_server.command("PUBLISH", CHANNEL, "\x00 not json")
    await a.put("hr", SWITCH)  # a good change still comes through after them
    b = await replicas.start()
    await wait_until(lambda: b.overrides == {"hr": SWITCH} == a.overrides)
    assert [r.message for r in caplog.records if "unreadable" in r.message] == [
        "policy overrides: ignoring an unreadable override for route 'wiki'",  # a, from the hash and the messages
        "policy overrides: ignoring an unreadable change message",
        "policy overrides: ignoring an unreadable override for route 'wiki'"]  # b, from the hash
