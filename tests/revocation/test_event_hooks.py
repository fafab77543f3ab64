"""gateway/revocation/event_hooks.py's dedupe through the "seen once" store, on real aiohttp servers: with the
fleet's store (one real redis-server) a delivery that reaches two replicas is acted on once; each delivery is
answered before it is acted on, its events in their order; Redis hung or killed never delays the answer and the
dedupe goes on in this process. The endpoint on a whole stack: tests/e2e/test_event_hooks.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from store.links import linked, wait_until

from gateway.metrics import Metrics
from gateway.revocation.bus import RevocationBus
from gateway.revocation.event_hooks import EventHookReceiver
from gateway.sandbox.okta.events import Actor, make_event
from gateway.sessions.sockets import OpenSockets
from gateway.store import redis as redis_link
from gateway.store.memory import MemoryStore
from gateway.store.redis_seen import RedisSeen
from gateway.store.seen import SeenOnce

SECRET = "hook-secret-for-these-tests-0000000"
ALICE = Actor("00u1a2b3c4d5e6f7g8h9", "Alice@Example.com", "Alice")
SESSIONS = ["idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB", "idxCCCCCCCCCCCCCCCCCCCCCC"]


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)


def ended(session: str) -> dict[str, Any]:
    return make_event("user.session.end", published=datetime(2024, 5, 1, tzinfo=UTC), actor=ALICE, targets=[],
                      external_session_id=session, transaction_id="txn", ended_session_id=session)


def delivery(*events: dict[str, Any]) -> bytes:
    return json.dumps({"eventType": "com.okta.event_hook", "data": {"events": list(events)}}).encode()


class Replica:
    """One gateway's hook endpoint: a receiver over its own bus and store, on a real server."""

    def __init__(self, seen: SeenOnce | None) -> None:
        self.metrics = Metrics()
        self.bus = RevocationBus(MemoryStore(), None, OpenSockets(), self.metrics)
        self.receiver = EventHookReceiver(SECRET, "Authorization", self.bus, self.metrics, seen=seen)
        self.app = web.Application()
        self.app.router.add_post("/hook", self.receiver.deliver)

    def outcome(self, outcome: str) -> float:
        return self.metrics.value("session_gateway_event_hook_events_total", outcome=outcome)

    def acted(self) -> float:
        return self.outcome("revoked") + self.outcome("duplicate") + self.outcome("ignored")

    def revoked(self) -> list[str | None]:
        return [a.revocation.session_id for a in reversed(self.bus.recent)]


async def serve(aiohttp_server, replica: Replica) -> str:
    server = await aiohttp_server(replica.app)
    return str(server.make_url("/hook"))


async def post(url: str, body: bytes) -> tuple[int, float]:
    """The answer's status, and how long it took."""
    began = time.monotonic()
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers={"Authorization": SECRET}) as r:
        await r.read()
        return r.status, time.monotonic() - began


@pytest.fixture
async def links(redis_server):
    async with linked(redis_server.url, timeout=0.2) as made:
        yield made


async def test_a_delivery_sent_to_two_replicas_is_acted_on_once(aiohttp_server, links):
    a, b = Replica(RedisSeen(links[0], "hook")), Replica(RedisSeen(links[1], "hook"))
    body = delivery(*(ended(s) for s in SESSIONS))
    urls = [await serve(aiohttp_server, a), await serve(aiohttp_server, b)]
    assert (await post(urls[0], body))[0] == 200
    await wait_until(lambda: a.acted() == 3)
    assert (await post(urls[1], body))[0] == 200  # Okta sent it again, and this time it reached the other replica
    await wait_until(lambda: b.acted() == 3)
    assert a.revoked() == SESSIONS and b.revoked() == []
    assert b.outcome("duplicate") == 3


async def test_the_events_of_a_delivery_are_acted_on_in_its_order(aiohttp_server, links):
    replica = Replica(RedisSeen(links[0], "hook"))
    url = await serve(aiohttp_server, replica)
    events = [ended(s) for s in SESSIONS]
    assert (await post(url, delivery(events[2], events[0], events[2], events[1])))[0] == 200
    await wait_until(lambda: replica.acted() == 4)
    assert replica.revoked() == [SESSIONS[2], SESSIONS[0], SESSIONS[1]] and replica.outcome("duplicate") == 1


async def test_redis_hung_the_answer_comes_first_and_the_events_after_one_timeout(aiohttp_server, links, redis_server):
    replica = Replica(RedisSeen(links[0], "hook"))
    url = await serve(aiohttp_server, replica)
    body = delivery(*(ended(s) for s in SESSIONS))
    redis_server.hang()
    try:
        status, took = await post(url, body)
        assert status == 200 and took < 0.15 and replica.acted() == 0  # answered before acting, not held by Redis
        waited = await wait_until(lambda: replica.acted() == 3)
        assert waited < 0.5  # one store timeout (0.2 s) for the whole delivery, then this process's set
        assert replica.revoked() == SESSIONS
        assert (await post(url, body))[0] == 200
        await wait_until(lambda: replica.acted() == 6)
        assert replica.outcome("duplicate") == 3  # a delivery sent again to this replica: caught without Redis
    finally:
        redis_server.resume()


async def test_redis_killed_a_delivery_sent_again_to_the_same_replica_is_acted_on_once(aiohttp_server, links,
                                                                                        redis_server):
    replica = Replica(RedisSeen(links[0], "hook"))
    url = await serve(aiohttp_server, replica)
    redis_server.kill()
    body = delivery(ended(SESSIONS[0]))
    for _ in range(2):
        status, took = await post(url, body)
        assert status == 200 and took < 0.15
    await wait_until(lambda: replica.acted() == 2)
    assert replica.revoked() == [SESSIONS[0]] and replica.outcome("duplicate") == 1


async def test_without_a_shared_store_the_dedupe_is_this_processs(aiohttp_server):
    replica = Replica(None)
    url = await serve(aiohttp_server, replica)
    body = delivery(ended(SESSIONS[0]), ended(SESSIONS[1]))
    assert (await post(url, body))[0] == 200 and (await post(url, body))[0] == 200
    await wait_until(lambda: replica.acted() == 4)
    assert replica.revoked() == SESSIONS[:2] and replica.outcome("duplicate") == 2
