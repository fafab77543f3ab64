"""healthz and readyz, under the gateway's prefix."""

from __future__ import annotations

from conftest import route
from gateway.server import POOLS


async def test_healthz_and_readyz_answer_under_the_prefix(start_upstream, start_gateway, http):
    gateway = await start_gateway(route("http://127.0.0.1:9"))
    async with http.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200
        assert (await r.json())["status"] == "alive"
    async with http.get(gateway.make_url("/.gateway/readyz")) as r:
        assert r.status == 200
        assert await r.json() == {"status": "ready", "routes": 1}


async def test_readyz_is_503_when_the_upstream_pools_are_down(start_gateway, http):
    gateway = await start_gateway(route("http://127.0.0.1:9"))
    await gateway.app[POOLS].close()
    async with http.get(gateway.make_url("/.gateway/readyz")) as r:
        assert r.status == 503
        assert await r.json() == {"status": "not ready", "routes": 1, "problems": ["upstream pools are not up"]}
    async with http.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200
