"""What a binding and a claimed session id may mean, attacked through the whole stack (the Okta sandbox on
OKTA_HOST, the legacy apps and the gateway on 127.0.0.1): a claimed session id never binds an app session, and a
binding holds only on the route it was made for."""

from __future__ import annotations

import pytest
from okta_sandbox_support import ALICE, BOB

from gateway.sandbox.stack import AppRoute
from gateway.server import METRICS

pytestmark = pytest.mark.hostile

JSON = {"Accept": "application/json"}
HEADER_SOURCE = {"sid_sources": ["saml", "header"], "session_id_header_from": ["127.0.0.1/32"]}
COOKIE_SOURCE = {"sid_sources": ["saml", "cookie"]}


def okta_session_of(stack, who: tuple[str, str]) -> str:
    sessions = stack.org.sessions_of(stack.org.user(who[0]).id)
    assert len(sessions) == 1
    return str(sessions[0].id)


def sets_binding(page, route: str = "hr") -> bool:
    return any(c.startswith(f"gateway_binding_{route}=") and "Max-Age=0" not in c for c in page.set_cookies())


async def alice_and_bob(start, browsers, route: dict):
    stack = await start(AppRoute("hr", route=route))
    alice, bob = browsers(stack), browsers(stack)
    assert (await alice.sign_in(ALICE)).status == 200
    assert (await bob.sign_in(BOB)).status == 200
    return stack, alice, bob


@pytest.mark.parametrize("source", ["header", "cookie"])
async def test_bobs_app_session_with_alices_claimed_session_is_not_bound_to_it(start, browsers, source):
    # finding 6: Bob's app cookie with Alice's id in X-Okta-Session-Id was served as Bob, with a new binding to
    # Alice's session (which then kept Bob's app session alive for as long as Alice's lived)
    stack, _, bob = await alice_and_bob(start, browsers, HEADER_SOURCE if source == "header" else COOKIE_SOURCE)
    alices = okta_session_of(stack, ALICE)
    bob.drop_cookie("gateway_binding_hr")
    headers = dict(JSON)
    if source == "header":
        headers["X-Okta-Session-Id"] = alices
    else:
        bob.set_cookie("sid", alices)  # Okta's Classic Engine cookie, as a gateway on Okta's host would see it
    calls = stack.org.api_calls[:]
    page = await bob.get("/api/me", headers=headers)
    assert page.status == 401, (page.status, page.text)  # unbound: the route's relogin rule ends it
    assert not sets_binding(page)
    assert stack.apps["hr"].sessions.keys().isdisjoint({bob.cookie("JSESSIONID")})
    assert not [c for c in stack.org.api_calls[len(calls):] if alices in c.path]  # Okta was not even asked
    metrics = stack.gateway[METRICS]
    assert metrics.value("session_gateway_session_decisions_total", route="hr", action="end", reason="unbound") == 1


async def test_a_bound_session_presented_with_another_users_claim_ends_and_keeps_no_binding(start, browsers):
    stack, _, bob = await alice_and_bob(start, browsers, HEADER_SOURCE)
    page = await bob.get("/api/me", headers={**JSON, "X-Okta-Session-Id": okta_session_of(stack, ALICE)})
    assert page.status == 401 and not sets_binding(page)
    again = await bob.get("/api/me", headers=JSON)  # the old binding went with the app session
    assert again.status == 401


async def test_a_claim_of_the_bound_session_is_served(start, browsers):
    stack, _, bob = await alice_and_bob(start, browsers, HEADER_SOURCE)
    page = await bob.get("/api/me", headers={**JSON, "X-Okta-Session-Id": okta_session_of(stack, BOB)})
    assert page.status == 200 and page.json["login"] == BOB[0]


async def test_a_binding_made_on_one_route_is_refused_on_another_with_the_same_app_cookie(start, browsers, http):
    # finding 7: one key set seals every route's bindings, so Bob's binding from `hr`, renamed to wiki's binding
    # cookie and sent with the same JSESSIONID name and value, was accepted on `wiki`
    stack = await start(AppRoute("hr", prefix="/hr"), AppRoute("wiki", prefix="/wiki", title="Wiki"))
    bob = browsers(stack)
    assert (await bob.sign_in(BOB, prefix="/hr")).status == 200
    app_cookie, binding = bob.cookie("JSESSIONID"), bob.cookie("gateway_binding_hr")
    assert app_cookie and binding
    on_hr = f"JSESSIONID={app_cookie}; gateway_binding_hr={binding}"
    async with http.get(stack.url("/hr/api/me"), headers={**JSON, "Cookie": on_hr}) as r:
        assert r.status == 200  # where it was made, it holds
    on_wiki = f"JSESSIONID={app_cookie}; gateway_binding_wiki={binding}"
    async with http.get(stack.url("/wiki/"), headers={"Cookie": on_wiki}, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/wiki/login"  # the gateway's answer, not the app's
        assert any(c.startswith("gateway_binding_wiki=") for c in r.headers.getall("Set-Cookie"))
    metrics = stack.gateway[METRICS]
    assert metrics.value("session_gateway_session_decisions_total", route="wiki", action="end", reason="unbound") == 1
    assert metrics.value("session_gateway_session_decisions_total", route="wiki", action="forward", reason="ok") == 0


@pytest.mark.parametrize("hidden", ["; JSESSIONID={alice}", "; x=1 JSESSIONID={alice}", "; x=1\tJSESSIONID={alice}",
                                    '; JSESSIONID="{alice}"',
                                    "; jsessionid={alice}"])  # for servers that read names in any case (ASP.NET)
async def test_a_second_app_cookie_behind_a_bound_pair_is_not_served(start, browsers, http, hidden):
    # the gateway read the first JSESSIONID (Bob's, bound) while the app (aiohttp's request.cookies) reads the last,
    # or starts a new cookie after whitespace: Alice's app session, whose Okta session had ended, was served to Bob
    stack, alice, bob = await alice_and_bob(start, browsers, {})
    alices_app_cookie = alice.cookie("JSESSIONID")
    await alice.okta_sign_out()  # Alice does not come back: her app session lives on in the app
    bobs = f"JSESSIONID={bob.cookie('JSESSIONID')}; gateway_binding_hr={bob.cookie('gateway_binding_hr')}"
    async with http.get(stack.url("/api/me"), headers={**JSON, "Cookie": bobs}) as r:
        assert r.status == 200 and (await r.json())["login"] == BOB[0]
    cookie = bobs + hidden.format(alice=alices_app_cookie)
    async with http.get(stack.url("/api/me"), headers={**JSON, "Cookie": cookie}) as r:
        body = await r.text()
        assert r.status == 401 and ALICE[0] not in body, (r.status, body)
