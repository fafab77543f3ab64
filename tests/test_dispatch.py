"""What a request reaches: the gateway's own endpoints under the prefix, the proxy for everything else."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from raw_http import send_raw

from conftest import route, settings
from gateway.dispatch import proxied
from gateway.server import PROXY, build_app, serve_directly


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


# --- served directly: the proxy without the router (dispatch.direct) ------------------------------------------------

SPELLINGS = ["/app/page", "/.gateway/healthz", "/.gateway/nothing", "/%2egateway/healthz", "/.gateway/x/../healthz",
             "//.gateway/healthz", "/x/../.gateway/healthz", "/.gateway", "/.gateway%2Fhealthz", "/app/%0Aline",
             "/.gateway/%0A", "*", "/app/a%2Fb", "/%2E%2E/app", "/app/;jsessionid=1", "/.GATEWAY/healthz"]


async def _resolves_to_proxy(app: web.Application, target: str) -> bool:
    match = await app.router.resolve(make_mocked_request("GET", target, app=app))
    return match.http_exception is None and match.handler is app[PROXY]


@given(st.lists(st.sampled_from(["/", ".", "..", "%2e", "%2E", "%2f", "%0a", "%0A", "\\n", "%25", "a", ".gateway",
                                 ".Gateway", "%2egateway", ";", "?", "#", "%"]), max_size=6))
async def test_direct_sends_the_proxy_exactly_what_the_router_sends_it(parts):
    app = build_app(settings(route("http://127.0.0.1:9", required_for_ready=False)))
    target = "".join(parts).replace("\\n", "%0A")
    try:
        request = make_mocked_request("GET", target or "/", app=app)
    except ValueError:
        return  # not a target yarl takes, nor one aiohttp's parser would hand on
    assert proxied(request.rel_url.path_safe, "/.gateway/") == await _resolves_to_proxy(app, target or "/")


async def test_direct_answers_every_spelling_as_the_router_does(start_upstream, aiohttp_server):
    """The same raw requests through a gateway served directly and one served by the router alone: the same
    answers, byte for byte less the Date and X-Request-Id."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=request.raw_path)

    upstream = await start_upstream(page)
    servers = []
    for directly in (True, False):
        app = build_app(settings(route(upstream, path="/app")))
        server = await aiohttp_server(app, auto_decompress=False, access_log=None)
        if directly:
            serve_directly(server.runner)
        servers.append(server)
    for target in SPELLINGS:
        answers = []
        for server in servers:
            raw = await send_raw(server.host, server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nAccept: "
                                 "application/json\r\nConnection: close\r\n\r\n".encode(), idle=2)
            answers.append(re.sub(rb"(?m)^(Date|X-Request-Id): .*\r\n", b"", raw))
        assert answers[0] == answers[1], target
        assert answers[0].startswith(b"HTTP/1."), target


async def test_under_run_py_proxied_requests_skip_the_router(start_upstream, start_gateway, http, monkeypatch):
    """The fixture serves as run.py does: a proxied request never reaches the application's router."""
    resolved: list[tuple[web.UrlDispatcher, str]] = []
    original = web.UrlDispatcher.resolve

    async def counting(self: web.UrlDispatcher, request: web.Request) -> object:
        resolved.append((self, request.path))
        return await original(self, request)

    monkeypatch.setattr(web.UrlDispatcher, "resolve", counting)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    gateway = await start_gateway(route(await start_upstream(page), path="/app"))
    async with http.get(gateway.make_url("/app/page")) as r:
        assert (r.status, await r.text()) == (200, "ok")
    async with http.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200
    assert [path for router, path in resolved if router is gateway.app.router] == ["/.gateway/healthz"]
