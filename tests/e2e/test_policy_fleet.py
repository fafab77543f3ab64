"""Runtime policy switches across a fleet: gateways built by build_app from one configuration, each with its own
link to one real redis-server, their operator endpoints on real servers. A switch on one is applied on every other
at once and adopted by one started later before it serves; clearing it (DELETE, or the status page) returns the
route to its configured policy everywhere; the status page says who switched what, when, from what; Redis away
keeps a switch on the replica that took it and brings it to the others when Redis is back."""

from __future__ import annotations

import logging
import re
import time

import aiohttp
import pytest
from policy_fleet_support import BEARER, PolicyFleet, fleet_settings, sessions_route
from stack_support import ADMIN_TOKEN
from store.links import wait_until

from gateway.store import redis as redis_link
from gateway.store import redis_policies

CONFIGURED = {"hr": "enforce", "wiki": "off"}


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    monkeypatch.setattr(redis_policies, "RETRY_EVERY", 0.05)


@pytest.fixture
async def gateways(aiohttp_server, redis_server):
    made = PolicyFleet(aiohttp_server, redis_server.url, fleet_settings())
    yield made
    await made.close()


async def call(method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as r:
        return r.status, await r.json()


async def test_a_switch_on_one_replica_is_applied_on_every_other_and_on_one_started_later(gateways, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    a, b = await gateways.start(), await gateways.start()
    assert a.modes() == b.modes() == CONFIGURED
    status, answer = await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER)
    assert (status, answer) == (200, {"route": "hr", "from": "enforce", "to": "off", "configured": "enforce"})
    assert a.modes()["hr"] == "off"  # on the next request here
    assert await wait_until(lambda: b.modes()["hr"] == "off") < 0.25  # and on the other replica at once
    later = await gateways.start()
    assert later.modes() == {"hr": "off", "wiki": "off"}  # adopted before it serves
    assert sum("policy route=hr from=enforce to=off by=bearer" in m for m in caplog.messages) == 1  # where it was made


async def test_the_status_of_every_replica_shows_configured_and_current_policies_and_who_switched_when(gateways):
    a, b = await gateways.start(), await gateways.start()
    before = time.time()
    await call("PUT", a.url("admin/routes/wiki/policy"), json={"mode": "observe"},
               headers={**BEARER, "User-Agent": "session-gateway-cli (ops)"})
    await wait_until(lambda: b.modes()["wiki"] == "observe")
    _, data = await call("GET", b.url("status.json"), headers=BEARER)
    routes = {r["name"]: r for r in data["routes"]}
    assert (routes["wiki"]["configured_policy"], routes["wiki"]["policy"]) == ("off", "observe")
    switch = routes["wiki"]["policy_switch"]
    assert switch["by"] == "bearer (session-gateway-cli (ops))" and switch["from"] == "off"
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1)) <= switch["at"]
    assert routes["hr"]["policy_switch"] is None


async def test_delete_returns_the_route_to_its_configured_policy_on_every_replica(gateways, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    a, b = await gateways.start(), await gateways.start()
    await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "observe"}, headers=BEARER)
    await wait_until(lambda: b.modes()["hr"] == "observe")
    status, answer = await call("DELETE", b.url("admin/routes/hr/policy"), headers=BEARER)
    assert (status, answer) == (200, {"route": "hr", "from": "observe", "to": "enforce", "configured": "enforce"})
    await wait_until(lambda: a.modes() == b.modes() == CONFIGURED)
    later = await gateways.start()
    assert later.modes() == CONFIGURED
    _, data = await call("GET", a.url("status.json"), headers=BEARER)
    assert all(r["policy_switch"] is None for r in data["routes"])
    assert any(m.startswith("policy cleared route=hr from=observe to=enforce by=bearer") for m in caplog.messages)


async def test_delete_needs_the_bearer_token_and_a_route_it_knows(gateways):
    a = await gateways.start()
    assert (await call("DELETE", a.url("admin/routes/hr/policy")))[0] == 401
    assert (await call("DELETE", a.url("admin/routes/hr/policy"),
                       headers={"Authorization": "Bearer wrong-token-0000000000"}))[0] == 401
    assert (await call("DELETE", a.url("admin/routes/nope/policy"), headers=BEARER))[0] == 404
    assert await call("DELETE", a.url("admin/routes/hr/policy"), headers=BEARER) == (
        200, {"route": "hr", "from": "enforce", "to": "enforce", "configured": "enforce"})  # nothing to clear: fine


async def test_the_status_page_returns_a_route_to_its_configured_policy_everywhere(gateways):
    a, b = await gateways.start(), await gateways.start()
    await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER)
    await wait_until(lambda: b.modes()["hr"] == "off")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as operator:
        async with operator.post(b.url("login"), data={"token": ADMIN_TOKEN}) as r:
            page = await r.text()
        assert "switched from enforce by bearer" in page and 'value="configured">back to configured' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        async with operator.post(b.url("admin/routes/hr/policy"), data={"mode": "configured", "csrf": csrf}) as r:
            assert r.status == 200 and "Route hr: policy off -&gt; enforce, as configured." in await r.text()
        async with operator.post(b.url("admin/routes/hr/policy"), data={"mode": "configured", "csrf": "x"}) as r:
            assert r.status == 403  # the clear is CSRF-safe like a switch
    await wait_until(lambda: a.modes() == b.modes() == CONFIGURED)


async def test_an_override_for_a_route_this_configuration_lacks_is_ignored_and_logged_once(gateways, caplog):
    older = fleet_settings(sessions_route("hr", "/", "enforce"), sessions_route("legacy", "/legacy", "enforce"))
    a = await gateways.start(older)
    b = await gateways.start()  # its configuration no longer has "legacy"
    caplog.set_level(logging.WARNING, logger="gateway.admin")
    for mode in ("off", "observe"):
        await call("PUT", a.url("admin/routes/legacy/policy"), json={"mode": mode}, headers=BEARER)
    await wait_until(lambda: a.modes()["legacy"] == "observe")
    await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER)
    await wait_until(lambda: b.modes()["hr"] == "off")  # b took every message by now, in order
    assert b.modes() == {"hr": "off", "wiki": "off"}
    assert [m for m in caplog.messages if "ignored" in m] == [
        "policy override for route 'legacy' ignored: this configuration binds no sessions on it"]
    assert (await call("PUT", b.url("admin/routes/legacy/policy"), json={"mode": "off"}, headers=BEARER))[0] == 404


async def test_redis_away_a_switch_answers_at_once_on_this_replica_and_reaches_the_others_when_it_is_back(
        gateways, redis_server):
    a, b = await gateways.start(timeout=0.2), await gateways.start(timeout=0.2)
    redis_server.kill()
    began = time.monotonic()
    status, answer = await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER)
    assert time.monotonic() - began < 0.5 and status == 200 and "this replica only" in answer["warning"]
    assert a.modes()["hr"] == "off" and b.modes()["hr"] == "enforce"
    redis_server.start()  # back, and empty
    await wait_until(lambda: b.modes()["hr"] == "off", limit=5)
    status, answer = await call("PUT", a.url("admin/routes/hr/policy"), json={"mode": "enforce"}, headers=BEARER)
    assert status == 200 and "warning" not in answer
