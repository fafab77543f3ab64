"""The enforcement shell (gateway/sessions/enforce.py) under floods, through the real gateway in front of a real
upstream and the Okta sandbox: what it remembers of Cookie headers stays within its byte budget, and unbound
requests do not become a flood of logout calls to the app."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from conftest import route
from gateway.server import ENFORCERS
from gateway.sessions.app_side import LOGOUTS_PER_SECOND
from gateway.sessions.enforce import SEEN_BYTES

pytestmark = pytest.mark.hostile

LARGE = 15_000  # a Cookie header of about 15 KB, as in finding 4


class App:
    """An upstream that counts what it was asked for, by path, and reads Cookie headers as large as ours."""

    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.web = web.Application(handler_args={"max_field_size": 32768})
        self.web.router.add_route("*", "/{tail:.*}", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        self.paths[request.path] += 1
        return web.Response(text="ok")


async def enforced(start_upstream, start_gateway, start_sandbox, **overrides: Any):
    sandbox = await start_sandbox()
    app = App()
    upstream = await start_upstream(app.web)
    gateway = await start_gateway(
        route(upstream, policy="enforce", app_profile="servlet", **overrides),
        okta={"org_url": sandbox.issuer, "api_token": "${OKTA_API_TOKEN}"},
        binding={"keys": "${GATEWAY_BINDING_KEYS}"},
    )
    return app, gateway, sandbox


async def send_all(http, url: str, cookies: list[str], concurrency: int = 16) -> Counter[int]:
    statuses: Counter[int] = Counter()
    limit = asyncio.Semaphore(concurrency)

    async def one(cookie: str) -> None:
        async with limit, http.get(url, headers={"Cookie": cookie}, allow_redirects=False) as r:
            await r.read()
            statuses[r.status] += 1

    await asyncio.gather(*(one(c) for c in cookies))
    return statuses


def remembered_bytes(gateway) -> int:
    """What the route's memo of Cookie headers holds, measured by the test: the headers and what was read of them."""
    memo = gateway.app[ENFORCERS]["app"]._cookie_headers
    return sum(sys.getsizeof(header) + (sys.getsizeof(seen.for_app) if seen.for_app is not header else 0)
               + sum(map(sys.getsizeof, seen.cookies.values())) for header, seen in memo.items())


async def test_distinct_large_cookie_headers_stay_within_the_routes_byte_budget(start_upstream, start_gateway,
                                                                               start_sandbox, http):
    # finding 4: 10,000 requests with distinct 15 KB Cookie headers grew the gateway by 288 MB and it stayed
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"pad{i}={i:06d}" + "x" * LARGE for i in range(1200)]  # no app session: remembered, but bounded
    assert await send_all(http, url, cookies) == Counter({200: 1200})
    assert app.paths["/page"] == 1200
    assert remembered_bytes(gateway) <= SEEN_BYTES  # 1,200 of them would be about 36 MB
    assert gateway.app[ENFORCERS]["app"]._seen_memo.bytes <= SEEN_BYTES


async def test_large_cookie_headers_of_unbound_app_sessions_are_not_remembered(start_upstream, start_gateway,
                                                                              start_sandbox, http):
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"JSESSIONID={i:06d}; gateway_binding=" + "A" * LARGE for i in range(300)]
    assert await send_all(http, url, cookies) == Counter({302: 300})  # unbound: each ended
    enforcer = gateway.app[ENFORCERS]["app"]
    assert len(enforcer._cookie_headers) == 0 and enforcer._seen_memo.bytes == 0
    assert len(enforcer._storage.codec._checked) == 0  # refusals are not remembered either
    assert app.paths["/page"] == 0


async def test_a_flood_of_unbound_requests_is_not_a_flood_of_logout_calls_to_the_app(start_upstream, start_gateway,
                                                                                    start_sandbox, http):
    # finding 4: each unbound request made one server-side call to the app's logout
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"JSESSIONID=made-up-{i}" for i in range(1500)]
    began = time.monotonic()
    assert await send_all(http, url, cookies) == Counter({302: 1500})
    took = time.monotonic() - began
    assert 1 <= app.paths["/logout"] <= LOGOUTS_PER_SECOND * (1 + took) + 1, (app.paths["/logout"], took)


async def test_the_apps_logout_is_called_once_per_app_cookie(start_upstream, start_gateway, start_sandbox, http):
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    assert await send_all(http, url, ["JSESSIONID=replayed"] * 200) == Counter({302: 200})
    assert app.paths["/logout"] == 1
    await asyncio.sleep(1.1)  # the rate has room again, the value was logged out already
    assert await send_all(http, url, ["JSESSIONID=replayed", "JSESSIONID=another"]) == Counter({302: 2})
    assert app.paths["/logout"] == 2


async def test_a_gateway_process_flooded_with_large_cookie_headers_keeps_its_memory(start_upstream,
                                                                                   start_sandbox, gateway_process,
                                                                                   http):
    sandbox = await start_sandbox()
    upstream = await start_upstream(App().web)
    gateway = gateway_process([route(upstream, policy="enforce", app_profile="servlet")],
                              okta={"org_url": sandbox.issuer, "api_token": "${OKTA_API_TOKEN}"},
                              binding={"keys": "${GATEWAY_BINDING_KEYS}"})
    url = gateway.url("/page")
    await send_all(http, url, [f"warm{i}=1" for i in range(200)])
    before = gateway.rss_bytes()
    flood = [f"pad{i}={i:06d}" + "x" * LARGE for i in range(1000)]
    flood += [f"JSESSIONID={i:06d}; gateway_binding=" + "A" * LARGE for i in range(1000)]
    await send_all(http, url, flood)
    grown = gateway.rss_bytes() - before
    assert grown < 24 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MB"  # about 9 MB; 60 MB before the fix


@pytest.mark.parametrize(("sources", "unbound", "warned"), [
    (["cookie"], "relogin", True), (["header"], "relogin", True), (["saml", "cookie"], "relogin", False),
    (["cookie"], "allow", False),
])
async def test_a_route_that_can_bind_nothing_yet_ends_what_is_unbound_is_named_at_start(
        start_upstream, start_gateway, start_sandbox, caplog, sources, unbound, warned):
    # a claimed session id no longer binds: without "saml" such a route would end every app session it sees
    extra = {"session_id_header_from": ["127.0.0.1"]} if "header" in sources else {}
    with caplog.at_level("WARNING", logger="gateway.sessions"):
        await enforced(start_upstream, start_gateway, start_sandbox, sid_sources=sources, unbound=unbound, **extra)
    assert any("can be bound" in r.getMessage() for r in caplog.records) is warned
