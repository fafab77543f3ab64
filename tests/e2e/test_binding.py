"""Binding end to end: sign in through the sandbox's SAML flow, use the app through the gateway, and each way an
Okta session ends ends the app session: the next request is refused, the app's cookies are expired, its
server-side session is gone, and the old cookies replayed are refused too."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
from okta_sandbox_support import ALICE, BOB
from stack_support import KEYS

from gateway.sandbox.run import start_app
from gateway.sandbox.stack import AppRoute, free_port
from gateway.server import METRICS, build_app


def expired(page, name: str) -> bool:
    return any(c.startswith(f"{name}=") and ("Max-Age=0" in c or "1970" in c) for c in page.set_cookies())


async def signed_in(start, browsers, *apps, **kwargs):
    stack = await start(*apps, **kwargs)
    browser = browsers(stack)
    page = await browser.sign_in(ALICE)
    assert page.status == 200 and "signed in to" in page.text, page.text
    return stack, browser


def assert_ended(page, stack, app: str = "hr") -> None:
    assert page.status == 302 and page.location == "/login", (page.status, page.text)
    assert expired(page, "JSESSIONID")
    assert expired(page, f"gateway_binding_{app}")
    assert stack.apps[app].sessions == {}  # the app's own logout ran: its server-side session is gone


async def test_sign_in_binds_the_app_session_and_the_app_is_used_through_the_gateway(start, browsers):
    stack, browser = await signed_in(start, browsers)
    assert browser.cookie("gateway_binding_hr") and browser.cookie("JSESSIONID")
    me = await browser.get("/api/me", headers={"Accept": "application/json"})
    assert me.status == 200 and me.json["login"] == ALICE[0]
    assert stack.apps["hr"].sessions  # the app made its own session


async def test_okta_sign_out_ends_the_app_session_and_replayed_cookies_are_refused(start, browsers):
    stack, browser = await signed_in(start, browsers)
    old = {name: browser.cookie(name) for name in ("JSESSIONID", "gateway_binding_hr")}
    await browser.okta_sign_out()
    stack.org.clock.advance(5)  # the cache TTL
    assert_ended(await browser.get("/page/1"), stack)
    for name, value in old.items():
        browser.set_cookie(name, value or "")
    replay = await browser.get("/page/1")
    assert replay.status == 302 and replay.location == "/login"


async def test_an_admin_clearing_the_users_sessions_ends_the_app_session(start, browsers):
    stack, browser = await signed_in(start, browsers)
    stack.org.clear_user_sessions(stack.org.user(ALICE[0]).id)
    stack.org.clock.advance(5)
    assert_ended(await browser.get("/page/1"), stack)


async def test_okta_session_expiry_ends_the_app_session_even_inside_the_cache_ttl(start, browsers):
    stack, browser = await signed_in(start, browsers, org_options={"idle_minutes": 10},
                                     okta={"cache_ttl": 3600, "revalidate": 0})
    stack.org.clock.advance(10 * 60)  # Okta's idle timeout; the app's own session (8 h) lives on
    assert_ended(await browser.get("/page/1"), stack)


async def test_the_gateway_idle_timeout_ends_the_app_session(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"idle_timeout": 300}),
                                     okta={"cache_ttl": 3600})
    stack.org.clock.advance(200)
    assert (await browser.get("/page/1")).status == 200  # activity: the binding is touched
    stack.org.clock.advance(200)
    assert (await browser.get("/page/1")).status == 200
    stack.org.clock.advance(301)
    assert_ended(await browser.get("/page/1"), stack)


async def test_an_api_call_of_an_ended_session_gets_401_json(start, browsers):
    stack, browser = await signed_in(start, browsers)
    await browser.okta_sign_out()
    stack.org.clock.advance(5)
    page = await browser.get("/api/me", headers={"Accept": "application/json"})
    assert page.status == 401 and page.json["status"] == 401
    assert expired(page, "JSESSIONID")


async def test_mfa_required_counts_as_not_signed_in(start, browsers):
    stack, browser = await signed_in(start, browsers)
    for session in stack.org.sessions_of(stack.org.user(ALICE[0]).id):
        session.status = "MFA_REQUIRED"
    stack.org.clock.advance(5)
    assert_ended(await browser.get("/page/1"), stack)


async def test_an_app_session_without_a_binding_is_sent_through_sign_in_again(start, browsers):
    stack, browser = await signed_in(start, browsers)
    browser.drop_cookie("gateway_binding_hr")
    page = await browser.get("/page/1")
    assert page.status == 302 and page.location == "/login" and expired(page, "JSESSIONID")
    again = await browser.sign_in(ALICE)  # Okta's session is alive: a silent SSO round trip binds again
    assert again.status == 200 and browser.cookie("gateway_binding_hr")


async def test_when_the_app_rotates_its_session_cookie_the_binding_follows(start, browsers):
    stack, browser = await signed_in(start, browsers)
    before = {name: browser.cookie(name) for name in ("JSESSIONID", "gateway_binding_hr")}
    rotated = await browser.request("POST", "/api/rotate", headers={"Accept": "application/json"})
    assert rotated.status == 200
    after = {name: browser.cookie(name) for name in ("JSESSIONID", "gateway_binding_hr")}
    assert after["JSESSIONID"] != before["JSESSIONID"] and after["gateway_binding_hr"] != before["gateway_binding_hr"]
    assert (await browser.get("/page/1")).status == 200  # the new app cookie is bound
    browser.set_cookie("gateway_binding_hr", before["gateway_binding_hr"] or "")
    assert (await browser.get("/page/1")).status == 302  # the old binding belongs to the old app cookie


async def test_unbound_allow_forwards_an_app_session_without_a_binding(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"unbound": "allow"}))
    browser.drop_cookie("gateway_binding_hr")
    assert (await browser.get("/page/1")).status == 200


async def test_a_binding_presented_with_another_app_session_is_void(start, browsers):
    stack, alice = await signed_in(start, browsers)
    bob = browsers(stack)
    await bob.sign_in(BOB)
    bob.set_cookie("gateway_binding_hr", alice.cookie("gateway_binding_hr") or "")
    page = await bob.get("/page/1")
    assert page.status == 302 and page.location == "/login"


async def test_a_second_user_on_the_same_browser_gets_their_own_binding(start, browsers):
    stack, browser = await signed_in(start, browsers)
    first = browser.cookie("gateway_binding_hr")
    await browser.okta_sign_out()
    stack.org.clock.advance(5)
    assert (await browser.get("/page/1")).status == 302
    page = await browser.sign_in(BOB)
    assert page.status == 200
    me = await browser.get("/api/me", headers={"Accept": "application/json"})
    assert me.json["login"] == BOB[0]
    assert browser.cookie("gateway_binding_hr") not in (None, first)


async def test_observe_mode_forwards_and_records_what_enforce_would_do(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", policy="observe"))
    await browser.okta_sign_out()
    stack.org.clock.advance(5)
    assert (await browser.get("/page/1")).status == 200
    metrics = stack.gateway[METRICS]
    assert metrics.value("session_gateway_session_observed_ends_total", route="hr", reason="okta_session_ended") == 1


async def test_extend_on_activity_keeps_an_active_users_okta_session_alive(start, browsers):
    stack, browser = await signed_in(start, browsers, AppRoute("hr", route={"extend_okta_on_activity": 60}),
                                     org_options={"idle_minutes": 5})
    for _ in range(6):  # 12 minutes of app activity, past Okta's 5-minute idle timeout
        stack.org.clock.advance(120)
        assert (await browser.get("/page/1")).status == 200
        await asyncio.sleep(0.05)  # the background refresh lands
    assert stack.org.sessions_of(stack.org.user(ALICE[0]).id)


async def test_without_extend_on_activity_okta_idles_out_under_an_active_app(start, browsers):
    stack, browser = await signed_in(start, browsers, org_options={"idle_minutes": 5})
    for _ in range(2):
        stack.org.clock.advance(120)
        assert (await browser.get("/page/1")).status == 200
    stack.org.clock.advance(120)
    assert_ended(await browser.get("/page/1"), stack)


async def test_key_rotation_keeps_bindings_and_retired_keys_stop_opening_them(start, browsers):
    stack, browser = await signed_in(start, browsers)

    async def gateway_with(*keys: str) -> str:
        port = free_port("127.0.0.1")
        settings = dataclasses.replace(stack.settings, binding_keys=keys)
        stack.runners.append(await start_app(build_app(settings, clock=stack.org.clock.timestamp), "127.0.0.1",
                                             port, auto_decompress=False))
        return f"http://127.0.0.1:{port}"

    rotated = await gateway_with(KEYS[1], KEYS[0])  # a new key first, the old one still opens
    page = await browser.get(rotated + "/page/1")
    assert page.status == 200
    assert any(c.startswith("gateway_binding_hr=") for c in page.set_cookies())  # sealed again with the new key
    only_new = await gateway_with(KEYS[1])
    assert (await browser.get(only_new + "/page/1")).status == 200
    unknown = await gateway_with(KEYS[2])
    assert (await browser.get(unknown + "/page/1")).status == 302


async def test_an_open_websocket_closes_when_its_session_ends(start, browsers):
    stack, browser = await signed_in(start, browsers)
    async with browser.http.ws_connect(stack.url("/ws")) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello == {"hello": ALICE[0]}
        await browser.okta_sign_out()
        stack.org.clock.advance(5)
        assert (await browser.get("/page/1")).status == 302
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008


async def test_okta_down_with_fail_mode_closed_answers_503(start, browsers):
    stack, browser = await signed_in(start, browsers)
    stack.org.faults.fail_status = 503
    stack.org.clock.advance(5)
    page = await browser.get("/page/1")
    assert page.status == 503 and "Traceback" not in page.text
    stack.org.faults.reset()
    assert (await browser.get("/page/1")).status == 200  # nobody was logged out by the outage


async def test_a_hostile_saml_response_is_forwarded_untouched_and_binds_nothing(start, browsers):
    stack = await start()
    browser = browsers(stack)
    bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            "<r>&b;</r>")
    import base64
    for value in ("%%%", base64.b64encode(bomb.encode()).decode(), "A" * 5000):
        page = await browser.request("POST", "/saml/acs", data={"SAMLResponse": value})
        assert 400 <= page.status < 500, page.status  # the app's answer, not the gateway's 5xx
    assert browser.cookie("gateway_binding_hr") is None
