"""What a request reaches: the gateway's own endpoints under the prefix, the proxy for everything else."""

from __future__ import annotations

from aiohttp import web

from conftest import route


async def test_the_prefix_is_configurable_and_never_proxied(start_gateway, http):
    gateway = await start_gateway(route("http://127.0.0.1:9", required_for_ready=False), server={"prefix": "/_gw/"})
    async with http.get(gateway.make_url("/_gw/healthz")) as r:
        assert r.status == 200
    async with http.get(gateway.make_url("/_gw/anything-else"), headers={"Accept": "application/json"}) as r:
        assert r.status == 404
    async with http.head(gateway.make_url("/_gw/readyz")) as r:
        assert r.status == 200


async def test_a_path_outside_the_prefix_goes_to_the_route_and_none_matching_is_404(start_upstream, start_gateway,
                                                                                       http):
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=request.path)

    gateway = await start_gateway(route(await start_upstream(page), path="/app"))
    async with http.get(gateway.make_url("/app/page")) as r:
        assert (r.status, await r.text()) == (200, "/app/page")
    async with http.get(gateway.make_url("/other"), headers={"Accept": "application/json"}) as r:
        assert r.status == 404
