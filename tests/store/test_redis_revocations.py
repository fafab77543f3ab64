"""gateway/store/redis_revocations.py against a real redis-server: the keys and their types, a tombstone's first end
kept, watermarks only forward whatever the order of writes, records and stream entry in one write, retention by
score and by stream id, the epoch, the snapshot and the test of a gap too old to replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from store.links import link_to

from gateway.store import StoreUnavailable, redis_revocations
from gateway.store import redis as redis_link
from gateway.store.redis_revocations import START, Change, RedisRevocations, State, StreamInfo, id_order

NOW = time.time()
RETENTION = 3600.0  # what store.links gives a link
S1, S2 = "idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB"
ALICE = "00u1a2b3c4d5e6f7g8h9"
PREFIX = "{fleet}:revocations:"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)


@pytest.fixture
async def shared(redis_server):
    link = link_to(redis_server.url, "fleet")
    await link.start()
    yield RedisRevocations(link)
    await link.close()


def entry(name: str) -> dict[str, str]:
    return {"kind": "revocation", "replica": "test", "reason": name}


def score(redis_server, kind: str, member: str) -> float | None:
    found = redis_server.command("ZSCORE", PREFIX + kind, member)
    return float(found) if found else None


def stream(redis_server) -> list[str]:
    """The reasons of the stream's entries, oldest first."""
    reply = redis_server.command("XRANGE", PREFIX + "stream", "-", "+").split("\n")
    return [reply[i + 1] for i, field in enumerate(reply) if field == "reason"]


async def test_the_keys_their_types_and_their_expiry(shared, redis_server):
    await shared.write([Change(entry("r"), (S1, NOW), ((ALICE, NOW),), ((ALICE, NOW),))])
    await shared.adopt_epoch()
    types = {kind: redis_server.command("TYPE", PREFIX + kind) for kind in ("sessions", "users", "okta", "stream",
                                                                            "epoch")}
    assert types == {"sessions": "zset", "users": "zset", "okta": "zset", "stream": "stream", "epoch": "string"}
    for kind in ("sessions", "users", "okta", "stream"):
        assert 0 < int(redis_server.command("TTL", PREFIX + kind)) <= RETENTION
    assert redis_server.command("TTL", PREFIX + "epoch") == "-1"


async def test_a_tombstone_keeps_the_first_end_recorded(shared, redis_server):
    await shared.write([Change(entry("first"), (S1, NOW - 10))])
    await shared.write([Change(entry("again"), (S1, NOW))])
    assert score(redis_server, "sessions", S1) == NOW - 10


async def test_a_watermark_only_moves_forward_whatever_the_order_of_the_writes(shared, redis_server):
    await shared.write([Change(entry("later"), users=((ALICE, NOW),), okta=((ALICE, NOW),))])
    await shared.write([Change(entry("earlier"), users=((ALICE, NOW - 60),), okta=((ALICE, NOW - 60),))])
    assert score(redis_server, "users", ALICE) == NOW == score(redis_server, "okta", ALICE)
    await shared.write([Change(entry("newest"), users=((ALICE, NOW + 1),))])
    assert score(redis_server, "users", ALICE) == NOW + 1 and score(redis_server, "okta", ALICE) == NOW


async def test_each_write_adds_its_records_and_its_entries_in_order(shared, redis_server):
    await shared.write([Change(entry("one"), (S1, NOW)), Change(entry("two"), (S2, NOW - 1))])
    assert stream(redis_server) == ["one", "two"]
    assert score(redis_server, "sessions", S1) == NOW and score(redis_server, "sessions", S2) == NOW - 1
    assert score(redis_server, "users", ALICE) is None


async def test_the_stream_is_trimmed_to_the_retention_at_each_write(shared, redis_server):
    old = int((time.time() - RETENTION - 60) * 1000)
    redis_server.command("XADD", PREFIX + "stream", f"{old}-0", "reason", "too old")
    await shared.write([Change(entry("new"), (S1, NOW))])
    assert stream(redis_server) == ["new"]


async def test_records_past_the_retention_are_forgotten_by_score(shared, redis_server):
    await shared.write([Change(entry("old"), (S1, NOW - RETENTION - 1), ((ALICE, NOW - RETENTION - 1),)),
                        Change(entry("new"), (S2, NOW - RETENTION + 5))])
    await shared.forget_older_than(NOW)
    assert score(redis_server, "sessions", S1) is None and score(redis_server, "users", ALICE) is None
    assert score(redis_server, "sessions", S2) == NOW - RETENTION + 5


async def test_the_epoch_is_set_once_and_is_gone_when_redis_comes_back_empty(shared, redis_server):
    assert await shared.epoch() is None
    first = await shared.adopt_epoch()
    assert await shared.adopt_epoch() == first == await shared.epoch() and len(first) == 16
    redis_server.restart_empty()
    assert await answered(shared.epoch) is None
    assert await shared.adopt_epoch() != first


async def answered(op: Callable[[], Awaitable[T]]) -> T:
    """What `op()` answers once the link has found Redis again (the first command after a restart fails)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return await op()
        except StoreUnavailable:
            assert time.monotonic() < deadline, "redis did not come back"
            await asyncio.sleep(0.05)


async def test_a_snapshot_holds_every_record_and_the_streams_end(shared, redis_server, monkeypatch):
    monkeypatch.setattr(redis_revocations, "CHUNK", 3)  # several ZSCAN rounds
    sessions = {f"idx{i:022d}": NOW - i for i in range(10)}
    await shared.write([Change(entry(s), (s, at)) for s, at in sessions.items()])
    await shared.write([Change(entry("u"), users=((ALICE, NOW),), okta=((ALICE, NOW - 1),))])
    state, end = await shared.snapshot()
    assert state.sessions == sessions and state.users == {ALICE: NOW} and state.okta == {ALICE: NOW - 1}
    assert end == redis_server.command("XREVRANGE", PREFIX + "stream", "+", "-", "COUNT", "1").split("\n")[0]


async def test_a_snapshot_of_an_empty_redis(shared):
    assert await shared.snapshot() == (State(), START)
    assert await shared.stream_info() == StreamInfo(False, START, None, False)


async def test_a_whole_state_is_written_in_chunks_with_the_marker_last(shared, redis_server, monkeypatch):
    monkeypatch.setattr(redis_revocations, "CHUNK", 4)
    state = State({f"idx{i:022d}": NOW - i for i in range(9)}, {ALICE: NOW}, {ALICE: NOW - 5})
    await shared.write([Change(entry("before"), users=((ALICE, NOW + 1),))])
    await shared.write_state(state, {"kind": "reload", "why": "empty", "replica": "a", "reason": "marker"})
    found, _ = await shared.snapshot()
    assert found.sessions == state.sessions and found.users == {ALICE: NOW + 1} and found.okta == {ALICE: NOW - 5}
    assert stream(redis_server) == ["before", "marker"]


async def test_reads_after_an_id_and_waits_for_the_next(shared):
    client = shared.reader(0.2)
    try:
        await shared.write([Change(entry("one"), (S1, NOW))])
        [(first, fields)] = await shared.read(client, START, 0.2)
        assert fields == entry("one")
        started = time.monotonic()
        assert await shared.read(client, first, 0.2) == []
        assert 0.15 < time.monotonic() - started < 1.0
    finally:
        await client.aclose()


async def test_a_gap_is_an_unread_entry_trimmed_away(shared, redis_server):
    await shared.write([Change(entry(str(i)), (f"idx{i:022d}", NOW)) for i in range(3)])
    ids = [i for i, _ in await shared.link.run(lambda r: r.xrange(shared.stream_key))]
    info = await shared.stream_info()
    assert not info.trimmed and not any(info.gap_after(i) for i in [START, *ids])
    redis_server.command("XTRIM", PREFIX + "stream", "MAXLEN", "1")
    info = await shared.stream_info()
    assert info.trimmed and info.first == ids[2]
    assert info.gap_after(START) and info.gap_after(ids[0])  # ids[1] was trimmed unread
    assert info.gap_after(ids[1])  # read up to an entry trimmed since: what followed it cannot be told
    assert not info.gap_after(ids[2])  # still there: what follows it is too


def test_the_gap_rule_on_plain_values():
    assert StreamInfo(True, "5-0", "3-0", True).gap_after("2-9")  # what came between may have been trimmed
    assert not StreamInfo(True, "5-0", "2-9", True).gap_after("2-9")
    assert not StreamInfo(True, "5-0", "3-0", False).gap_after("2-9")  # nothing was ever removed
    assert not StreamInfo(True, "5-0", None, True).gap_after("5-0")  # everything read, then trimmed
    assert StreamInfo(True, "5-0", None, True).gap_after("4-0")
    assert StreamInfo(False, START, None, False).gap_after("4-0")  # the stream itself went away unread
    assert not StreamInfo(False, START, None, False).gap_after(START)
    assert id_order("10-0") > id_order("9-5") and id_order("7") == (7, 0)


async def test_a_killed_redis_is_store_unavailable_for_every_operation(shared, redis_server):
    redis_server.kill()
    with pytest.raises(StoreUnavailable):
        await shared.write([Change(entry("x"), (S1, NOW))])
    for op in (shared.epoch(), shared.adopt_epoch(), shared.snapshot(), shared.forget_older_than(NOW)):
        with pytest.raises(StoreUnavailable):
            await op
