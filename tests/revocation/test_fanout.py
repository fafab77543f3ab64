"""gateway/revocation/fanout.py: several replicas (each its own bus, mirror, sockets and link) in one test process
against one real redis-server. A revocation on one reaches the others, never echoes, survives Redis killed, hung,
restarted empty and a gap too old to replay; a replica that starts later knows everything before it serves.

A replica's own network partition (cut off from Redis while the others are not) goes through `Partition`, a TCP
path to the real server that the test cuts and heals."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import pytest
from store.links import wait_until
from yarl import URL

from gateway.metrics import Metrics
from gateway.okta.client import OktaClient
from gateway.okta.model import OktaSession
from gateway.revocation import fanout as fanout_module
from gateway.revocation.bus import Acted, Revocation, RevocationBus
from gateway.revocation.fanout import FanOut, entry_of, revocation_of
from gateway.sessions.cache import Freshness, ValidationCache
from gateway.sessions.sockets import OpenSockets
from gateway.sessions.validation import SessionValidator
from gateway.settings import CachePolicy, RedisSettings, StoreSettings
from gateway.store import redis as redis_link
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisLink
from gateway.store.redis_revocations import RedisRevocations
from gateway.store.redis_sessions import RedisSessions

RETENTION = 3600.0
TIMEOUT = 0.2
STREAM = "{fleet}:revocations:stream"
ALICE_ID, ALICE_LOGIN = "00u1a2b3c4d5e6f7g8h9", "alice@example.com"
BOB_ID, BOB_LOGIN = "00uBOBbobBOBbobBOBbo", "bob@example.com"
ALICE_KEYS = (ALICE_ID, ALICE_LOGIN)


def sid(i: int) -> str:
    return f"idx{i:022d}"


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    monkeypatch.setattr(fanout_module, "BLOCK", 0.2)
    monkeypatch.setattr(fanout_module, "RETRY", 0.05)


class Replica:
    """One gateway process's revocation parts: bus, mirror, sockets, a validator (its cache) and the fan-out."""

    def __init__(self, url: str, name: str, *, max_buffered: int = fanout_module.MAX_BUFFERED,
                 shared_cache: bool = False) -> None:
        self.name = name
        self.metrics = Metrics()
        store = StoreSettings("redis", "fleet", RETENTION,
                              RedisSettings(url=url, timeout=TIMEOUT, connect_timeout=TIMEOUT))
        self.link = RedisLink(store, self.metrics)
        self.mirror = MemoryStore(retention=RETENTION)
        self.sockets = OpenSockets()
        self.cache = ValidationCache(CachePolicy())
        client = OktaClient(URL("http://127.0.0.1:9"), "00-token", metrics=self.metrics)  # never called
        self.lookups = RedisSessions(self.link, 1.0) if shared_cache else None
        self.validator = SessionValidator(client, self.cache, self.metrics, shared=self.lookups)
        self.bus = RevocationBus(self.mirror, self.validator, self.sockets, self.metrics)
        self.fanout = FanOut(self.bus, self.mirror, RedisRevocations(self.link), self.metrics, replica=name,
                             max_buffered=max_buffered)

    async def start(self) -> Replica:
        await self.link.start()
        await self.fanout.start()
        return self

    async def close(self) -> None:
        await self.fanout.close()
        await self.link.close()

    def publish(self, *args: Any, **kwargs: Any) -> Acted:
        return self.bus.publish(Revocation(*args, **kwargs))

    def cached(self, session_id: str, user_id: str = ALICE_ID, login: str = ALICE_LOGIN) -> None:
        now = time.time()
        self.cache.store_alive(OktaSession(session_id, user_id, login, "ACTIVE", now + 3600, now - 60, ("pwd",),
                                           "OKTA"), now)

    def is_cached(self, session_id: str) -> bool:
        return self.cache.lookup(session_id, time.time())[0] is not Freshness.MISSING

    def knows(self, session_id: str) -> bool:
        return self.mirror.session_ended(session_id) is not None

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, **labels)


class Partition:
    """A TCP path from one replica to the real Redis: `cut()` drops its connections and refuses new ones (that
    replica alone is cut off), `heal()` opens it again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def heal(self) -> Partition:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


@pytest.fixture
async def fleet(redis_server):
    """fleet(name, url=...): a started replica against the test's redis-server (or the URL), closed after."""
    started: list[Replica] = []

    async def start(name: str, *, url: str | None = None, **options: Any) -> Replica:
        replica = await Replica(url or redis_server.url, name, **options).start()
        started.append(replica)
        return replica

    yield start
    for replica in reversed(started):
        await replica.close()


@pytest.fixture
async def partition(redis_server):
    """partition(): a healed TCP path to the test's redis-server."""
    made: list[Partition] = []

    async def make() -> Partition:
        made.append(await Partition(redis_server.port).heal())
        return made[-1]

    yield make
    for p in made:
        if p._server is not None:
            p._server.close()


def fanned_in(caplog: pytest.LogCaptureFixture, origin: str) -> int:
    return sum(1 for r in caplog.records if r.name == "gateway.audit" and f"fanned_in={origin}" in r.getMessage())


def stream_length(redis_server) -> int:
    return int(redis_server.command("XLEN", STREAM))


# --- the protocol's values --------------------------------------------------------------------------------------


def test_a_stream_entry_carries_every_field_of_the_revocation():
    every = Revocation("app_logout", "app_logout", "idxS", "00uU", "Alice@Example.com", 1.25, True, 0.5, False)
    assert {f.name for f in dataclasses.fields(Revocation)} <= set(entry_of(Acted(every, 9.0), "a"))
    for r in (every, Revocation("lookup", "okta_session_ended", "idxS"), Revocation("operator", "x", None, "00uU")):
        fields = entry_of(Acted(r, 1700000000.123456), "pod-a")
        assert fields["replica"] == "pod-a" and fields["kind"] == "revocation"
        assert revocation_of(fields) == (r, 1700000000.123456)


# --- a revocation reaches every other replica -------------------------------------------------------------------


async def test_a_session_revocation_on_one_replica_reaches_the_others_cache_sockets_and_mirror(fleet, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    a, b, c = await fleet("a"), await fleet("b"), await fleet("c")
    stops = []
    for other in (b, c):
        other.cached(sid(1))
        other.cached(sid(2))
        stops.append(other.sockets.opened(sid(1), ALICE_KEYS))
    acted = a.publish("event_hook", "okta_session_ended", sid(1), happened_at=time.time() - 5)
    await wait_until(lambda: b.knows(sid(1)) and c.knows(sid(1)))
    ended = acted.revocation.ended_at(acted.acted_at)
    assert b.mirror.session_ended(sid(1)) == ended == c.mirror.session_ended(sid(1))
    assert not b.is_cached(sid(1)) and not c.is_cached(sid(1)) and b.is_cached(sid(2))
    assert all(stop.is_set() for stop in stops)
    assert b.value("session_gateway_websockets_closed_total") == 1
    assert fanned_in(caplog, "a") == 2


async def test_a_user_revocation_reaches_the_others_with_the_cutoff_the_first_one_used(fleet):
    a, b = await fleet("a"), await fleet("b")
    b.cached(sid(1))
    stop = b.sockets.opened(sid(1), ALICE_KEYS)
    acted = a.publish("event_hook", "user_suspended", None, ALICE_ID, "Alice@Example.com")
    await wait_until(lambda: b.mirror.user_ended_before(ALICE_ID) > 0)
    assert b.mirror.user_ended_before(ALICE_LOGIN) == acted.acted_at == b.mirror.okta_ended_before(ALICE_ID)
    assert stop.is_set() and not b.is_cached(sid(1))


async def test_nothing_echoes(fleet, redis_server, caplog):
    """The replica that took it skips its own entry, and a fanned-in revocation is never written again."""
    caplog.set_level(logging.INFO, logger="gateway.audit")
    a, b, c = await fleet("a"), await fleet("b"), await fleet("c")
    a.publish("operator", "operator", sid(1))
    await wait_until(lambda: b.knows(sid(1)) and c.knows(sid(1)))
    await asyncio.sleep(3 * fanout_module.BLOCK)
    assert stream_length(redis_server) == 1
    assert fanned_in(caplog, "a") == 2 and fanned_in(caplog, "b") == fanned_in(caplog, "c") == 0
    assert [r.origin for r in a.bus.recent] == [None]
    assert b.fanout.buffered == 0 and b.value("session_gateway_revocations_total", source="operator") == 0


async def test_a_watermark_only_moves_forward_even_written_out_of_order_by_two_replicas(fleet, redis_server):
    a, b = await fleet("a"), await fleet("b")
    now = time.time()
    a.publish("event_hook", "user_sessions_cleared", None, ALICE_ID, happened_at=now - 10)
    await wait_until(lambda: b.mirror.user_ended_before(ALICE_ID) == now - 10)
    b.publish("event_hook", "user_suspended", None, ALICE_ID, happened_at=now - 100)  # older, written later
    await wait_until(lambda: b.fanout.buffered == 0 and stream_length(redis_server) == 2)
    await asyncio.sleep(3 * fanout_module.BLOCK)
    assert a.mirror.user_ended_before(ALICE_ID) == now - 10 == b.mirror.user_ended_before(ALICE_ID)
    assert float(redis_server.command("ZSCORE", "{fleet}:revocations:users", ALICE_ID)) == now - 10
    assert float(redis_server.command("ZSCORE", "{fleet}:revocations:okta", ALICE_ID)) == now - 10
    later = await fleet("later")
    assert later.mirror.user_ended_before(ALICE_ID) == now - 10 == later.mirror.okta_ended_before(ALICE_ID)


async def test_a_universal_logout_moves_the_users_watermark_and_not_oktas(fleet):
    a, b = await fleet("a"), await fleet("b")
    a.publish("event_hook", "user_suspended", None, ALICE_ID, happened_at=time.time() - 1)
    a.publish("universal_logout", "universal_logout", None, BOB_ID, BOB_LOGIN, in_okta=False)
    await wait_until(lambda: b.mirror.user_ended_before(BOB_ID) > 0)
    assert b.mirror.okta_ended_before(ALICE_ID) == a.mirror.okta_ended_before(ALICE_ID) > 0
    assert b.mirror.okta_ended_before(BOB_ID) == 0.0 and b.mirror.user_ended_before(BOB_LOGIN) > 0


async def test_the_replay_lag_is_the_age_of_the_last_entry_read(fleet, redis_server):
    b = await fleet("b")
    then = time.time() - 30
    redis_server.command("XADD", STREAM, f"{int(then * 1000)}-0", "kind", "revocation", "replica", "a",
                         "acted_at", repr(then), "source", "operator", "reason", "operator", "session_id", sid(1))
    await wait_until(lambda: b.knows(sid(1)))
    assert 29.0 < b.value("session_gateway_store_replay_lag_seconds") < 35.0
    assert b.mirror.session_ended(sid(1)) == then  # the time the other replica acted at, not b's


async def test_an_entry_that_is_no_revocation_is_skipped_and_reading_goes_on(fleet, redis_server, caplog):
    a, b = await fleet("a"), await fleet("b")
    redis_server.command("XADD", STREAM, "*", "kind", "revocation", "replica", "mallory", "acted_at", "soon")
    a.publish("operator", "operator", sid(1))
    await wait_until(lambda: b.knows(sid(1)))
    assert "is no revocation; skipped" in caplog.text


async def test_with_a_shared_cache_the_taker_and_each_replica_that_fans_in_drop_its_shared_entries(fleet, redis_server):
    """A session's shared entry goes; a user's: every replica drops the shared entries of the sessions it holds."""
    a, b = await fleet("a", shared_cache=True), await fleet("b", shared_cache=True)
    assert a.lookups is not None
    key = a.lookups.value_key
    for i in (1, 2, 3):
        redis_server.command("SET", key(sid(i)), "cached")
    b.cached(sid(2))  # only b holds this one of Alice's sessions
    a.publish("event_hook", "okta_session_ended", sid(1))
    a.publish("event_hook", "user_suspended", None, ALICE_ID)
    await wait_until(lambda: redis_server.command("EXISTS", key(sid(1))) == "0"
                     and redis_server.command("EXISTS", key(sid(2))) == "0")
    assert not b.is_cached(sid(2)) and redis_server.command("EXISTS", key(sid(3))) == "1"


async def test_a_load_does_not_delete_a_shared_entry_per_tombstone(fleet, redis_server):
    """A start-up load (or any reload) evicts this process's entries only: a delete per tombstone would cost a
    replica that starts one Redis command per revocation of the retention."""
    a = await fleet("a")
    a.publish("lookup", "okta_session_ended", sid(1))
    await wait_until(lambda: a.fanout.buffered == 0)
    key = RedisSessions(a.link, 1.0).value_key(sid(1))
    redis_server.command("SET", key, "cached")
    later = await fleet("later", shared_cache=True)
    assert later.knows(sid(1))
    await asyncio.sleep(0.1)  # a delete would be a background write
    assert redis_server.command("EXISTS", key) == "1"


# --- a replica that starts later ----------------------------------------------------------------------------------


async def test_a_replica_started_later_knows_every_tombstone_and_watermark_before_it_serves(fleet):
    a = await fleet("a")
    a.publish("lookup", "okta_session_ended", sid(1), happened_at=time.time() - 30)
    a.publish("event_hook", "user_suspended", None, ALICE_ID, ALICE_LOGIN)
    ul = a.publish("universal_logout", "universal_logout", None, BOB_ID, BOB_LOGIN, in_okta=False)
    await wait_until(lambda: a.fanout.buffered == 0)
    later = await fleet("later")  # no waiting: what start() loaded is there when it returns
    assert later.mirror.session_ended(sid(1)) == a.mirror.session_ended(sid(1))
    assert later.mirror.user_ended_before(ALICE_LOGIN) == a.mirror.user_ended_before(ALICE_LOGIN) > 0
    assert later.mirror.okta_ended_before(ALICE_ID) > 0
    assert later.mirror.user_ended_before(BOB_ID) == ul.acted_at and later.mirror.okta_ended_before(BOB_ID) == 0
    a.publish("operator", "operator", sid(2))  # and it reads on from there
    await wait_until(lambda: later.knows(sid(2)))


async def test_redis_away_at_start_up_is_not_fatal_and_the_state_is_loaded_when_it_answers(fleet, partition):
    a = await fleet("a")
    a.publish("lookup", "okta_session_ended", sid(1))
    await wait_until(lambda: a.fanout.buffered == 0)
    path = await partition()
    await path.cut()
    started = time.monotonic()
    late = await fleet("late", url=path.url)
    assert time.monotonic() - started < 2.0
    assert not late.link.up and not late.knows(sid(1))
    late.publish("app_logout", "app_logout", sid(2))  # taken while away: acts here at once
    assert late.knows(sid(2)) and late.fanout.buffered == 1
    await path.heal()
    await wait_until(lambda: late.knows(sid(1)) and a.knows(sid(2)))
    assert late.fanout.buffered == 0
    # loaded, as at start-up: Redis kept it all
    assert late.value("session_gateway_store_reloads_total", why="empty") == 0


# --- Redis in trouble -------------------------------------------------------------------------------------------


async def test_revocations_taken_while_redis_is_killed_act_at_once_and_reach_the_others_when_it_is_back(
        fleet, redis_server, caplog):
    a, b = await fleet("a"), await fleet("b")
    b.cached(sid(1))
    stop = b.sockets.opened(sid(1), ALICE_KEYS)
    redis_server.kill()
    here = a.sockets.opened(sid(1), ALICE_KEYS)
    a.publish("event_hook", "okta_session_ended", sid(1))
    a.publish("event_hook", "user_suspended", None, BOB_ID)
    assert a.knows(sid(1)) and a.mirror.user_ended_before(BOB_ID) > 0 and here.is_set()  # locally, at once
    await wait_until(lambda: not a.link.up)
    assert a.fanout.buffered == 2 == a.value("session_gateway_store_buffered_revocations")
    assert not b.knows(sid(1)) and not stop.is_set()
    redis_server.start()  # empty: nothing is persisted
    await wait_until(lambda: b.knows(sid(1)) and b.mirror.user_ended_before(BOB_ID) > 0)
    await wait_until(lambda: stop.is_set())  # b closes the socket of the session too
    assert not b.is_cached(sid(1))
    await wait_until(lambda: a.value("session_gateway_store_buffered_revocations") == 0)
    assert "keeping this replica's revocations (2 so far)" in caplog.text  # both taken before the first write
    assert "wrote the 2 revocations kept meanwhile" in caplog.text


async def test_redis_restarted_empty_loses_nothing(fleet, redis_server):
    """Every replica writes its whole state back and every replica reloads: Redis and every mirror hold it all."""
    a, b = await fleet("a"), await fleet("b")
    a.publish("lookup", "okta_session_ended", sid(1))
    b.publish("universal_logout", "universal_logout", None, BOB_ID, in_okta=False)
    b.publish("event_hook", "user_suspended", None, ALICE_ID)
    await wait_until(lambda: a.mirror.user_ended_before(ALICE_ID) > 0 and b.knows(sid(1)))
    watermark = a.mirror.user_ended_before(BOB_ID)
    redis_server.restart_empty()
    assert redis_server.command("EXISTS", "{fleet}:revocations:sessions") == "0"

    def in_redis() -> bool:
        return (redis_server.command("ZSCORE", "{fleet}:revocations:sessions", sid(1)) != ""
                and redis_server.command("ZSCORE", "{fleet}:revocations:users", BOB_ID) != ""
                and redis_server.command("ZSCORE", "{fleet}:revocations:okta", ALICE_ID) != "")

    await wait_until(in_redis)
    await wait_until(lambda: a.value("session_gateway_store_reloads_total", why="empty") >= 1
                     and b.value("session_gateway_store_reloads_total", why="empty") >= 1)
    later = await fleet("later")
    for replica in (a, b, later):
        assert replica.knows(sid(1)) and replica.mirror.user_ended_before(BOB_ID) == watermark
        assert replica.mirror.okta_ended_before(BOB_ID) == 0 and replica.mirror.okta_ended_before(ALICE_ID) > 0
    assert redis_server.command("GET", "{fleet}:revocations:epoch") != ""


async def test_revocations_taken_meanwhile_and_redis_back_empty_reach_a_replica_started_after(fleet, redis_server):
    a = await fleet("a")
    a.publish("lookup", "okta_session_ended", sid(1))
    await wait_until(lambda: a.fanout.buffered == 0)
    redis_server.kill()
    a.publish("lookup", "okta_session_ended", sid(2))
    await wait_until(lambda: not a.link.up)
    redis_server.start()
    await wait_until(lambda: redis_server.command("ZSCORE", "{fleet}:revocations:sessions", sid(1)) != ""
                     and redis_server.command("ZSCORE", "{fleet}:revocations:sessions", sid(2)) != "")
    later = await fleet("later")
    assert later.knows(sid(1)) and later.knows(sid(2))


async def test_a_hung_redis_never_holds_up_the_publisher_and_what_it_took_arrives_when_redis_answers(
        fleet, redis_server):
    a, b = await fleet("a"), await fleet("b")
    redis_server.hang()
    try:
        slowest = 0.0
        for i in range(5):
            started = time.monotonic()
            a.publish("event_hook", "okta_session_ended", sid(i))
            slowest = max(slowest, time.monotonic() - started)
            assert a.knows(sid(i))
            await asyncio.sleep(0.1)
        assert slowest < TIMEOUT
        await wait_until(lambda: not a.link.up)
        assert a.fanout.buffered == 5
    finally:
        redis_server.resume()
    await wait_until(lambda: all(b.knows(sid(i)) for i in range(5)))
    # b may know them first: a write that timed out on the hung server can still be applied when it goes on, and a
    # writes it again when Redis answers (entries are at least once)
    await wait_until(lambda: a.fanout.buffered == 0)


async def test_a_gap_too_old_to_replay_is_a_reload(fleet, partition, redis_server):
    a = await fleet("a")
    path = await partition()
    b = await fleet("b", url=path.url)
    a.publish("operator", "operator", sid(0))
    await wait_until(lambda: b.knows(sid(0)))
    await path.cut()
    await wait_until(lambda: not b.fanout._reading)
    a.publish("operator", "operator", sid(1))
    a.publish("event_hook", "user_suspended", None, ALICE_ID)
    await wait_until(lambda: a.fanout.buffered == 0)
    redis_server.command("XTRIM", STREAM, "MAXLEN", "0")  # what b did not read is gone from the stream
    await path.heal()
    await wait_until(lambda: b.knows(sid(1)) and b.mirror.user_ended_before(ALICE_ID) > 0)
    assert b.value("session_gateway_store_reloads_total", why="gap") == 1
    a.publish("operator", "operator", sid(2))  # and it reads on from the stream's end
    await wait_until(lambda: b.knows(sid(2)))


async def test_past_max_buffered_the_whole_state_is_written_back_instead(fleet, partition):
    path = await partition()
    a = await fleet("a", url=path.url, max_buffered=2)
    b = await fleet("b")
    stop = b.sockets.opened(sid(4), ALICE_KEYS)
    await path.cut()
    for i in range(5):
        a.publish("operator", "operator", sid(i))
    assert len(a.fanout._pending) <= 2 and a.fanout.buffered == 5
    await path.heal()
    await wait_until(lambda: all(b.knows(sid(i)) for i in range(5)))
    await wait_until(lambda: b.value("session_gateway_store_reloads_total", why="overflow") == 1)
    assert stop.is_set() and a.fanout.buffered == 0


async def test_records_past_the_retention_leave_redis_and_the_mirror_now_and_then(fleet, redis_server, monkeypatch):
    monkeypatch.setattr(fanout_module, "TICK", 0.1)
    a = await fleet("a")
    a.publish("lookup", "okta_session_ended", sid(1), happened_at=time.time() - RETENTION - 5)
    a.publish("lookup", "okta_session_ended", sid(2))
    await wait_until(lambda: redis_server.command("ZCARD", "{fleet}:revocations:sessions") == "1")
    await wait_until(lambda: not a.knows(sid(1)))
    assert a.knows(sid(2))


async def test_a_closed_fan_out_hears_no_more(fleet, redis_server):
    a = await fleet("a")
    await a.fanout.close()
    a.publish("operator", "operator", sid(1))
    assert a.fanout.buffered == 0 and a.link.on_up == []
    assert stream_length(redis_server) == 0


async def test_a_change_redis_cannot_take_is_dropped_and_every_later_one_still_reaches_the_others(fleet, caplog):
    a, b = await fleet("a"), await fleet("b")
    a.publish("universal_logout", "user_logout", user_id=None, login="\ud800@x.com")  # no store can encode it
    a.publish("event_hook", "okta_session_ended", sid(7))
    await wait_until(lambda: b.knows(sid(7)))
    assert a.fanout.buffered == 0
    assert any("writing to redis failed" in r.message for r in caplog.records)


async def test_another_server_with_the_same_epoch_gets_the_state_written_back(fleet, partition, redis_server):
    """A Sentinel failover: the promoted replica has the fleet's epoch but may lack the last acknowledged writes
    (replication is asynchronous). Here: a fresh server given the old epoch, reached once the path heals."""
    path = await partition()
    a = await fleet("a", url=path.url)
    a.publish("lookup", "okta_session_ended", sid(3))
    await wait_until(lambda: redis_server.command("ZSCORE", "{fleet}:revocations:sessions", sid(3)) != "")
    epoch = redis_server.command("GET", "{fleet}:revocations:epoch")
    await path.cut()
    await wait_until(lambda: not a.link.up)
    redis_server.restart_empty()
    redis_server.command("SET", "{fleet}:revocations:epoch", epoch)
    await path.heal()
    await wait_until(lambda: redis_server.command("ZSCORE", "{fleet}:revocations:sessions", sid(3)) != "", limit=5)
    assert redis_server.command("GET", "{fleet}:revocations:epoch") == epoch
