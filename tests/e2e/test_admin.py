"""The operator's status page and admin API on a running stack: behind the token, CSRF-safe, switching a route's
policy on the next request, audited."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import aiohttp
from okta_sandbox_support import ALICE
from stack_support import ADMIN_TOKEN, SLOW_CACHE

from conftest import REPO
from gateway.sandbox.stack import AppRoute
from gateway.server import ENFORCERS

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def admin_stack(start, browsers):
    stack = await start(AppRoute("hr"), AppRoute("wiki", prefix="/wiki", policy="off", title="Legacy Wiki"),
                        okta=SLOW_CACHE, admin=True)
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE)).status == 200
    return stack, browser


async def test_everything_needs_the_operator_token(start, browsers):
    stack, browser = await admin_stack(start, browsers)
    async with aiohttp.ClientSession() as http:
        for method, path in (("GET", "status.json"), ("GET", "metrics"), ("PUT", "admin/routes/hr/policy")):
            async with http.request(method, stack.url("/.gateway/" + path), json={"mode": "off"}) as r:
                assert r.status == 401, path
            async with http.request(method, stack.url("/.gateway/" + path), json={"mode": "off"},
                                    headers={"Authorization": "Bearer wrong-token-0000000000"}) as r:
                assert r.status == 401, path
        async with http.get(stack.url("/.gateway/status")) as r:
            assert r.status == 401 and 'name="token"' in await r.text()  # the sign-in form, nothing else


async def test_status_json_shows_routes_counters_and_revocations(start, browsers):
    stack, browser = await admin_stack(start, browsers)
    await browser.get("/page/1")
    stack.org.clear_user_sessions(stack.org.user(ALICE[0]).id)
    stack.org.clock.advance(3601)
    await browser.get("/page/1")  # the lookup finds the session gone: a revocation
    async with aiohttp.ClientSession() as http, http.get(stack.url("/.gateway/status.json"), headers=BEARER) as r:
        data = await r.json()
    assert [(x["name"], x["policy"], x["configured_policy"]) for x in data["routes"]] == [
        ("hr", "enforce", "enforce"), ("wiki", "off", "off")]
    assert data["counters"]["requests"] >= 2 and data["counters"]["okta_calls"] >= 1
    assert data["revocations"][0]["source"] == "lookup" and data["revocations"][0]["session"].endswith("…")
    assert ALICE[1] not in str(data)


async def signed_out_of_okta(start, browsers, caplog):
    """The admin stack, whose browser's Okta session has ended (enforce refuses it), with audit lines captured."""
    stack, browser = await admin_stack(start, browsers)
    await browser.okta_sign_out()
    stack.org.clock.advance(3601)
    caplog.set_level(logging.INFO, logger="gateway.audit")
    return stack, browser


async def test_put_switches_the_policy_on_the_next_request_and_is_audited(start, browsers, caplog):
    stack, browser = await signed_out_of_okta(start, browsers, caplog)
    async with aiohttp.ClientSession() as http:
        async with http.put(stack.url("/.gateway/admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER) as r:
            assert r.status == 200
            assert await r.json() == {"route": "hr", "from": "enforce", "to": "off", "configured": "enforce"}
    assert (await browser.get("/page/1")).status == 200  # off: the ended Okta session is not enforced
    assert any("policy route=hr from=enforce to=off by=bearer" in m for m in caplog.messages)
    async with aiohttp.ClientSession() as http:
        async with http.put(stack.url("/.gateway/admin/routes/hr/policy"), json={"mode": "enforce"},
                            headers=BEARER) as r:
            assert r.status == 200
        async with http.put(stack.url("/.gateway/admin/routes/hr/policy"), json={"mode": "sometimes"},
                            headers=BEARER) as r:
            assert r.status == 400
        async with http.put(stack.url("/.gateway/admin/routes/nope/policy"), json={"mode": "off"},
                            headers=BEARER) as r:
            assert r.status == 404
    assert (await browser.get("/page/1")).status == 302


async def test_delete_returns_the_route_to_its_configured_policy_with_the_memory_store(start, browsers, caplog):
    stack, browser = await signed_out_of_okta(start, browsers, caplog)
    async with aiohttp.ClientSession() as http:
        async with http.put(stack.url("/.gateway/admin/routes/hr/policy"), json={"mode": "off"}, headers=BEARER) as r:
            assert r.status == 200
        assert (await browser.get("/page/1")).status == 200  # off
        async with http.delete(stack.url("/.gateway/admin/routes/hr/policy"), headers=BEARER) as r:
            assert r.status == 200
            assert await r.json() == {"route": "hr", "from": "off", "to": "enforce", "configured": "enforce"}
        async with http.get(stack.url("/.gateway/status.json"), headers=BEARER) as r:
            assert [x["policy_switch"] for x in (await r.json())["routes"]] == [None, None]
    assert (await browser.get("/page/1")).status == 302  # enforced again: the ended Okta session is refused
    assert any(m.startswith("policy cleared route=hr from=off to=enforce by=bearer") for m in caplog.messages)


async def test_the_status_page_signs_in_with_a_form_and_switches_with_a_csrf_safe_form(start, browsers):
    stack, _ = await admin_stack(start, browsers)
    operator = browsers(stack)
    page = await operator.request("POST", "/.gateway/login", data={"token": "wrong-token-0000000000"})
    assert page.status == 401
    page = await operator.follow(await operator.request("POST", "/.gateway/login", data={"token": ADMIN_TOKEN}))
    assert page.status == 200 and "Policy now" in page.text and ADMIN_TOKEN not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    forged = await operator.request("POST", "/.gateway/admin/routes/hr/policy", data={"mode": "off", "csrf": "x"})
    assert forged.status == 403
    cross = await operator.request("POST", "/.gateway/admin/routes/hr/policy", data={"mode": "off", "csrf": csrf},
                                   headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    done = await operator.follow(await operator.request("POST", "/.gateway/admin/routes/hr/policy",
                                                        data={"mode": "observe", "csrf": csrf}))
    assert done.status == 200 and "policy enforce -&gt; observe" in done.text
    assert '<span class="changed">observe</span>' in done.text


async def test_the_cli_switches_a_policy(start, browsers, monkeypatch):
    stack, _ = await admin_stack(start, browsers)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    result = await _cli("admin", "policy", "hr", "observe", "--url", stack.url("/.gateway/"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "route hr: policy enforce -> observe (configured: enforce)"
    assert stack.gateway[ENFORCERS]["hr"].mode.value == "observe"
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "wrong-token-0000000000")
    refused = await _cli("admin", "policy", "hr", "off", "--url", stack.url("/.gateway/"))
    assert refused.returncode == 1 and "refused" in refused.stderr and "Traceback" not in refused.stderr


async def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway.cli", *args], cwd=REPO,
                                   capture_output=True, text=True, timeout=60)
