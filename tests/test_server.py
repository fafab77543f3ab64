"""gateway/server.py's wiring of the store: with `[store] backend = "redis"` one link and the fan-out, started before
the app serves (the fleet's state already in the mirror the enforcers read) and closed after; the memory store as it
was. Real redis-server, real aiohttp servers; Okta is never called."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from store.links import link_to

from conftest import settings
from gateway.revocation.bus import Revocation
from gateway.server import BUS, ENFORCERS, FANOUT, STORE_LINK, build_app
from gateway.store.memory import MemoryStore
from gateway.store.redis_revocations import Change, RedisRevocations

S1, S2 = "idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB"
OKTA = {"org_url": "http://127.0.0.2:9", "api_token": "${OKTA_API_TOKEN}"}


def gateway_settings(store: dict[str, Any]) -> Any:
    return settings({"name": "app", "host": "*", "path": "/", "upstream": "http://127.0.0.1:9"}, okta=OKTA,
                    binding={"keys": "${GATEWAY_BINDING_KEYS}"}, store=store)


async def seed(url: str, session_id: str) -> None:
    """A tombstone in Redis, as another replica would have written it."""
    link = link_to(url, "gw")
    await link.start()
    try:
        await RedisRevocations(link).write([Change({"kind": "revocation", "replica": "other"}, (session_id, 1.0))])
    finally:
        await link.close()


def test_the_memory_store_has_no_link_and_no_fan_out():
    app = build_app(gateway_settings({"backend": "memory"}))
    assert STORE_LINK not in app and FANOUT not in app
    assert type(app[BUS].store) is MemoryStore and app[BUS].listeners == []


async def test_with_redis_the_fleets_state_is_in_the_mirror_before_the_app_serves(redis_server, aiohttp_server):
    await seed(redis_server.url, S1)
    app = build_app(gateway_settings({"backend": "redis", "url": redis_server.url, "key_prefix": "gw"}))
    assert not app[BUS].store.session_ended(S1)
    await aiohttp_server(app)
    assert app[BUS].store.session_ended(S1) == 1.0 and app[STORE_LINK].up
    assert all(e._store is app[BUS].store for e in app[ENFORCERS].values())  # the hot path reads the mirror


async def test_two_gateways_on_one_redis_share_their_revocations(redis_server, aiohttp_server):
    apps = [build_app(gateway_settings({"backend": "redis", "url": redis_server.url, "key_prefix": "gw"}))
            for _ in range(2)]
    for app in apps:
        await aiohttp_server(app)
    apps[0][BUS].publish(Revocation("operator", "operator", S2))
    deadline = time.monotonic() + 5
    while apps[1][BUS].store.session_ended(S2) is None:
        assert time.monotonic() < deadline, "never fanned out"
        await asyncio.sleep(0.02)
    assert redis_server.command("ZSCORE", "{gw}:revocations:sessions", S2) != ""


async def test_redis_away_at_start_up_is_not_fatal(aiohttp_server):
    app = build_app(gateway_settings({"backend": "redis", "url": "redis://127.0.0.1:9/0", "connect_timeout": 0.2}))
    started = time.monotonic()
    await aiohttp_server(app)
    assert time.monotonic() - started < 2.0
    assert not app[STORE_LINK].up and app[FANOUT].buffered == 0


async def test_the_link_and_the_fan_out_close_with_the_app(redis_server, aiohttp_server):
    app = build_app(gateway_settings({"backend": "redis", "url": redis_server.url}))
    server = await aiohttp_server(app)
    fanout = app[FANOUT]
    await server.close()
    assert app[BUS].listeners == [] and all(t.done() for t in fanout._tasks)
