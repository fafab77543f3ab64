"""The enforcement shell (gateway/enforcement/enforcer.py) under floods, through the real gateway in front of a real
upstream and the Okta sandbox: what it remembers of Cookie headers stays within its byte budget, unbound
requests do not become a flood of logout calls to the app, and such a flood does not keep a revoked bound
session's logout from being called."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from okta_sandbox_support import ALICE

from conftest import route
from gateway.enforcement.enforcer import SEEN_BYTES
from gateway.revocation.bus import Revocation
from gateway.sandbox.okta.saml import build_response
from gateway.server import BUS, ENFORCERS
from gateway.sessions.app_side import LOGOUTS_PER_SECOND

pytestmark = pytest.mark.hostile

LARGE = 15_000  # a Cookie header of about 15 KB, as in finding 4


class App:
    """An upstream that counts what it was asked for, by path, and reads Cookie headers as large as ours."""

    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.logged_out: list[str] = []  # the Cookie header of each call to /logout
        self.web = web.Application(handler_args={"max_field_size": 32768})
        self.web.router.add_route("*", "/{tail:.*}", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        """Any ACS POST signs in (a new JSESSIONID; this app checks no signature); anything else is "ok", and on
        /rotate and /end with a new JSESSIONID or the old one expired."""
        self.paths[request.path] += 1
        if request.path == "/logout":
            self.logged_out.append(request.headers.get("Cookie", ""))
        if request.method == "POST" and request.path == "/saml/acs":
            await request.read()
            response = web.Response(status=302, headers={"Location": "/"})
            response.set_cookie("JSESSIONID", f"signed-in-{self.paths[request.path]}")
            return response
        response = web.Response(text="ok")
        if request.path == "/rotate":  # the app gives its session a new id
            response.set_cookie("JSESSIONID", f"rotated-{self.paths[request.path]}")
        elif request.path == "/end":  # the app ends its own session, on a path that is not its logout
            response.del_cookie("JSESSIONID")
        return response


async def enforced(start_upstream, start_gateway, start_okta_sandbox, **overrides: Any):
    sandbox = await start_okta_sandbox()
    app = App()
    upstream = await start_upstream(app.web)
    gateway = await start_gateway(
        route(upstream, policy="enforce", app_profile="servlet", **overrides),
        okta={"org_url": sandbox.issuer, "api_token": "${OKTA_API_TOKEN}"},
        binding={"keys": "${GATEWAY_BINDING_KEYS}"},
    )
    return app, gateway, sandbox


async def bound_cookies(http, url: str, signed: bytes) -> dict[str, str]:
    """Sign in at the ACS with this SAML Response: the app's session cookie and the binding that belongs to it."""
    async with http.post(url + "/saml/acs", data={"SAMLResponse": base64.b64encode(signed).decode()},
                         allow_redirects=False) as r:
        cookies = {c.key: c.value for c in r.cookies.values()}
    assert set(cookies) == {"JSESSIONID", "gateway_binding"}, cookies  # bound
    return cookies


async def signed_in(http, url: str, sandbox, session=None) -> dict[str, str]:
    """Alice, signed in to Okta (in `session`, or a new one) and then to the app through the gateway at `url`."""
    user = sandbox.org.user(ALICE[0])
    session = session or sandbox.org.sign_in(user.login)
    saml_app = sandbox.org.add_saml_app("app", url + "/saml/acs", "urn:test:app")
    now = sandbox.org.clock.now()
    signed = build_response(saml_app, sandbox.org.signing_key, name_id=user.login, now=now, authn_instant=now,
                            attributes={"okta_session_id": session.id}, session_index=session.id)
    return await bound_cookies(http, url, signed)


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
                                                                               start_okta_sandbox, http):
    # finding 4: 10,000 requests with distinct 15 KB Cookie headers grew the gateway by 288 MB and it stayed
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"pad{i}={i:06d}" + "x" * LARGE for i in range(1200)]  # no app session: remembered, but bounded
    assert await send_all(http, url, cookies) == Counter({200: 1200})
    assert app.paths["/page"] == 1200
    assert remembered_bytes(gateway) <= SEEN_BYTES  # 1,200 of them would be about 36 MB
    assert gateway.app[ENFORCERS]["app"]._seen_memo.bytes <= SEEN_BYTES


async def test_large_cookie_headers_of_unbound_app_sessions_are_not_remembered(start_upstream, start_gateway,
                                                                              start_okta_sandbox, http):
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"JSESSIONID={i:06d}; gateway_binding=" + "A" * LARGE for i in range(300)]
    assert await send_all(http, url, cookies) == Counter({302: 300})  # unbound: each ended
    enforcer = gateway.app[ENFORCERS]["app"]
    assert len(enforcer._cookie_headers) == 0 and enforcer._seen_memo.bytes == 0
    assert len(enforcer._storage.codec._checked) == 0  # refusals are not remembered either
    assert app.paths["/page"] == 0


async def test_a_flood_of_unbound_requests_is_not_a_flood_of_logout_calls_to_the_app(start_upstream, start_gateway,
                                                                                    start_okta_sandbox, http):
    # finding 4: each unbound request made one server-side call to the app's logout
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    cookies = [f"JSESSIONID=made-up-{i}" for i in range(1500)]
    began = time.monotonic()
    assert await send_all(http, url, cookies) == Counter({302: 1500})
    took = time.monotonic() - began
    assert 1 <= app.paths["/logout"] <= LOGOUTS_PER_SECOND * (1 + took) + 1, (app.paths["/logout"], took)


async def test_the_apps_logout_is_called_once_per_app_cookie(start_upstream, start_gateway, start_okta_sandbox, http):
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}/page"
    assert await send_all(http, url, ["JSESSIONID=replayed"] * 200) == Counter({302: 200})
    assert app.paths["/logout"] == 1
    await asyncio.sleep(1.1)  # the rate has room again, the value was logged out already
    assert await send_all(http, url, ["JSESSIONID=replayed", "JSESSIONID=another"]) == Counter({302: 2})
    assert app.paths["/logout"] == 2


async def test_a_gateway_process_flooded_with_large_cookie_headers_keeps_its_memory(start_upstream,
                                                                                   start_okta_sandbox, gateway_process,
                                                                                   http):
    sandbox = await start_okta_sandbox()
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


async def test_a_flood_of_unbound_requests_does_not_keep_a_revoked_bound_session_from_its_logout(
        start_upstream, start_gateway, start_okta_sandbox, http):
    # the rate of server-side logouts is for app sessions no binding vouches for: a flood of them spent it, and
    # then a revoked bound session's app logout was skipped too, its server-side session left alive
    app, gateway, sandbox = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}"
    user = sandbox.org.user(ALICE[0])
    session = sandbox.org.sign_in(user.login)
    cookies = await signed_in(http, url, sandbox, session)
    bound = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with http.get(url + "/page", headers={"Cookie": bound}, allow_redirects=False) as r:
        assert r.status == 200
    gateway.app[BUS].publish(Revocation("operator", "test", session.id, user.id, user.login))

    flood = asyncio.ensure_future(send_all(http, url + "/page", [f"JSESSIONID=made-up-{i}" for i in range(3000)]))
    for _ in range(200):  # until the flood has spent the rate's burst (bounded in time)
        if app.paths["/logout"] >= LOGOUTS_PER_SECOND:
            break
        await asyncio.sleep(0.01)
    async with http.get(url + "/page", headers={"Cookie": bound}, allow_redirects=False) as r:
        assert r.status == 302  # ended
    assert not flood.done()  # the rate was still being spent when the revoked session came back
    await flood
    assert f"JSESSIONID={cookies['JSESSIONID']}" in app.logged_out  # its server-side logout was called


@pytest.mark.parametrize(("sources", "unbound", "warned"), [
    (["cookie"], "relogin", True), (["header"], "relogin", True), (["saml", "cookie"], "relogin", False),
    (["cookie"], "allow", False),
])
async def test_a_route_that_can_bind_nothing_yet_ends_what_is_unbound_is_named_at_start(
        start_upstream, start_gateway, start_okta_sandbox, caplog, sources, unbound, warned):
    # a claimed session id no longer binds: without "saml" such a route would end every app session it sees
    extra = {"session_id_header_from": ["127.0.0.1"]} if "header" in sources else {}
    with caplog.at_level("WARNING", logger="gateway.sessions"):
        await enforced(start_upstream, start_gateway, start_okta_sandbox, sid_sources=sources, unbound=unbound, **extra)
    assert any("can be bound" in r.getMessage() for r in caplog.records) is warned


async def test_the_paths_found_plain_are_remembered_within_their_budget_and_no_logout_is(start_upstream,
                                                                                         start_gateway,
                                                                                         start_okta_sandbox, http,
                                                                                         monkeypatch):
    monkeypatch.setattr("gateway.enforcement.enforcer.PLAIN_PATH_BYTES", 20_000)
    app, gateway, _ = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    base = f"http://{gateway.host}:{gateway.port}"
    for path in [f"/page{i}" for i in range(300)] + ["/logout", "/LogOut/", "/a/logout", "/saml/acs"]:
        async with http.get(base + path, allow_redirects=False) as r:
            await r.read()
    enforcer = gateway.app[ENFORCERS]["app"]
    assert "/page299" in enforcer._plain_paths and "/page0" not in enforcer._plain_paths
    assert enforcer._plain_memo.bytes <= 20_000
    assert not [p for p in enforcer._plain_paths if "logout" in p.lower() or p == "/saml/acs"]
    async with http.get(base + "/logout", allow_redirects=False) as r:  # still the logout
        assert r.status == 302 and "/login/signout" in r.headers["Location"]


@pytest.mark.parametrize("path", ["/rotate", "/end"])
async def test_an_answer_setting_the_app_cookie_on_a_warm_hit_still_moves_or_drops_the_binding(
        start_upstream, start_gateway, start_okta_sandbox, http, path):
    # a warm hit (a Cookie header whose facts the route remembers) looks at the app's answer only when it sets a
    # cookie: that one must still be followed, as the long way follows it
    app, gateway, sandbox = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}"
    cookies = await signed_in(http, url, sandbox)
    bound = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with http.get(url + "/page", headers={"Cookie": bound}, allow_redirects=False) as r:
        assert r.status == 200 and "gateway_binding" not in r.cookies  # the long way: now remembered
    enforcer = gateway.app[ENFORCERS]["app"]
    assert enforcer._cookie_headers[bound].entry is not None
    hits = enforcer._hit.value
    async with http.get(url + path, headers={"Cookie": bound}, allow_redirects=False) as r:
        assert r.status == 200
        answered = {c.key: c for c in r.cookies.values()}
    assert enforcer._hit.value == hits + 1  # it was the warm hit
    if path == "/rotate":
        assert answered["JSESSIONID"].value == "rotated-1"
        rebound = f"JSESSIONID=rotated-1; gateway_binding={answered['gateway_binding'].value}"
        async with http.get(url + "/page", headers={"Cookie": rebound}, allow_redirects=False) as r:
            assert r.status == 200  # the binding followed the app's new session cookie
    else:
        assert answered["gateway_binding"]["max-age"] == "0"  # the binding went with the app's session


async def test_a_warm_hit_on_a_plain_answer_sets_no_cookie(start_upstream, start_gateway, start_okta_sandbox, http):
    app, gateway, sandbox = await enforced(start_upstream, start_gateway, start_okta_sandbox)
    url = f"http://{gateway.host}:{gateway.port}"
    bound = "; ".join(f"{k}={v}" for k, v in (await signed_in(http, url, sandbox)).items())
    for _ in range(3):
        async with http.get(url + "/page", headers={"Cookie": bound}, allow_redirects=False) as r:
            assert r.status == 200 and "Set-Cookie" not in r.headers and await r.text() == "ok"
    assert gateway.app[ENFORCERS]["app"]._hit.value >= 2
