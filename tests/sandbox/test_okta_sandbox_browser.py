"""The sandbox as a browser meets it: cookies, sessionCookieRedirect (seed 004), sign-in and sign-out pages,
/api/v1/sessions/me with the cookie only (seed 003), CORS, and "Keep me signed in" (seeds 000, 001)."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from okta_sandbox_support import ALICE, BOB, OKTA_HOST, Okta
from yarl import URL

APP_ORIGIN = "http://127.0.0.1:8080"  # where the gateway would be; registered as a trusted origin


@pytest.fixture
def start(start_okta_sandbox):
    async def start(**options) -> Okta:
        okta = await start_okta_sandbox(**options)
        okta.org.add_trusted_origin(APP_ORIGIN)
        return okta

    return start


async def redirect_with_token(okta: Okta, browser, token: str, target: str = f"{APP_ORIGIN}/home"):
    async with browser.get(okta.url("/login/sessionCookieRedirect"), allow_redirects=False,
                           params={"token": token, "redirectUrl": target}) as r:
        return r.status, r.headers.get("Location"), r.headers.getall("Set-Cookie", [])


async def me(okta: Okta, browser) -> tuple[int, dict]:
    answer = await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)
    return answer.status, answer.json


def parsed_cookie(headers: list[str], name: str):
    for header in headers:
        jar = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name], header
    raise AssertionError(f"no {name} cookie in {headers}")


@pytest.mark.parametrize("engine,name", [("identity", "idx"), ("classic", "sid")])
async def test_the_session_cookie_is_host_only_httponly_samesite_none(start, engine, name):
    okta = await start(engine=engine)
    status, location, cookies = await redirect_with_token(okta, okta.browser(), await okta.session_token(*ALICE))
    assert (status, location) == (302, f"{APP_ORIGIN}/home")
    morsel, raw = parsed_cookie(cookies, name)
    assert morsel["path"] == "/" and morsel["httponly"] and morsel["samesite"] == "None"
    assert morsel["domain"] == "" and morsel["secure"]  # host-only; Secure: a loopback origin is a secure context
    assert morsel["max-age"] == "" and morsel["expires"] == ""  # a session cookie without KMSI
    assert "Domain" not in raw


async def test_the_cookie_is_secure_when_the_issuer_is_https(start):
    okta = await start(issuer="https://sandbox.okta.test")  # served on loopback http all the same
    token, _ = okta.org.issue_session_token(okta.org.user(ALICE[0]))
    async with okta.http.get(f"http://{OKTA_HOST}:{okta.server.port}/login/sessionCookieRedirect",
                             allow_redirects=False, params={"token": token, "redirectUrl": "/"}) as r:
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
    assert morsel["secure"] and morsel["samesite"] == "None"


@pytest.mark.parametrize("issuer,secure", [("http://sandbox.okta.test", False), ("http://localhost:1", True),
                                           ("http://[::1]:1", True), ("http://10.0.0.2:1", False)])
async def test_an_http_issuer_gets_secure_cookies_on_loopback_only(start, issuer, secure):
    okta = await start(issuer=issuer)  # served on OKTA_HOST all the same; the issuer decides
    token, _ = okta.org.issue_session_token(okta.org.user(ALICE[0]))
    async with okta.http.get(f"http://{OKTA_HOST}:{okta.server.port}/login/sessionCookieRedirect",
                             allow_redirects=False, params={"token": token, "redirectUrl": "/"}) as r:
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
    assert bool(morsel["secure"]) is secure and morsel["samesite"] == "None"


async def test_session_cookie_redirect_signs_the_browser_in(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    status, body = await me(okta, browser)
    assert status == 200 and body["login"] == ALICE[0]


async def test_session_cookie_redirect_refuses_an_untrusted_target(start):
    okta = await start()
    token = await okta.session_token(*ALICE)
    status, _, cookies = await redirect_with_token(okta, okta.browser(), token, "https://evil.example/")
    assert status == 403 and cookies == []


async def test_a_bad_token_sends_the_browser_to_sign_in(start):
    okta = await start()
    status, location, cookies = await redirect_with_token(okta, okta.browser(), "20111bogus")
    assert status == 302 and cookies == []
    assert URL(location).path == "/login/login.htm" and URL(location).query["fromURI"] == f"{APP_ORIGIN}/home"


async def test_seed_004_a_second_users_token_is_ignored_while_the_first_session_lives(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    bob_token = await okta.session_token(*BOB)
    status, location, cookies = await redirect_with_token(okta, browser, bob_token)
    assert (status, location, cookies) == (302, f"{APP_ORIGIN}/home", [])
    assert (await me(okta, browser))[1]["login"] == ALICE[0]  # "logged in AS THE FIRST USER"
    # the server-side DELETE /me of the seed has no cookie: 404, and nothing changes
    assert (await okta.call("DELETE", "/api/v1/sessions/me", token=None)).status == 404
    assert (await me(okta, browser))[1]["login"] == ALICE[0]
    # closing the first session in the browser lets the second user in
    assert (await okta.call("DELETE", "/api/v1/sessions/me", client=browser, token=None)).status == 204
    await redirect_with_token(okta, browser, bob_token)
    assert (await me(okta, browser))[1]["login"] == BOB[0]


async def test_seed_003_me_needs_the_browsers_cookie_not_the_api_token(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    status, body = await me(okta, browser)
    api = okta.url("/api/v1")
    assert status == 200 and body["_links"]["self"]["href"] == f"{api}/sessions/me"
    assert body["_links"]["refresh"]["href"] == f"{api}/sessions/me/lifecycle/refresh"
    assert body["_links"]["user"]["href"] == f"{api}/users/me"
    server_side = await okta.call("GET", "/api/v1/sessions/me")  # with the API token, without the cookie
    assert server_side.status == 404 and server_side.json["errorCode"] == "E0000007"
    assert server_side.json["errorSummary"] == "Not found: Resource not found: me (Session)"


async def test_delete_me_ends_the_session_and_clears_the_cookie(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    session_id = (await me(okta, browser))[1]["id"]
    answer = await okta.call("DELETE", "/api/v1/sessions/me", client=browser, token=None)
    assert answer.status == 204
    assert okta.cookie(browser) in (None, "")
    assert (await me(okta, browser))[0] == 404
    assert (await okta.call("GET", f"/api/v1/sessions/{session_id}")).status == 404


async def test_refresh_me_with_the_cookie(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    answer = await okta.call("POST", "/api/v1/sessions/me/lifecycle/refresh", client=browser, token=None)
    assert answer.status == 200 and answer.json["login"] == ALICE[0]
    minimal = await okta.call("POST", "/api/v1/sessions/me/lifecycle/refresh", client=browser, token=None,
                              headers={"Prefer": "return=minimal"})
    assert (minimal.status, minimal.headers["Preference-Applied"]) == (204, "return=minimal")
    assert (await okta.call("POST", "/api/v1/sessions/me/lifecycle/refresh", token=None)).status == 404


async def test_me_answers_cors_to_trusted_origins_only(start):
    okta = await start()
    browser = okta.browser()
    await redirect_with_token(okta, browser, await okta.session_token(*ALICE))
    trusted = await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None,
                              headers={"Origin": APP_ORIGIN})
    assert trusted.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert trusted.headers["Access-Control-Allow-Credentials"] == "true"
    untrusted = await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None,
                                headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in untrusted.headers
    preflight = await okta.call("OPTIONS", "/api/v1/sessions/me", token=None, headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 204 and "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    refused = await okta.call("OPTIONS", "/api/v1/sessions/me", token=None, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"})
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
    no_cors = await okta.call("GET", "/api/v1/sessions/idxQQQQQQQQQQQQQQQQQQQQQQ", headers={"Origin": APP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in no_cors.headers  # admin endpoints are not CORS


async def test_the_sign_in_page_signs_in_and_goes_to_a_trusted_from_uri(start):
    okta = await start()
    browser = okta.browser()
    async with browser.get(okta.url("/login/login.htm"), params={"fromURI": f"{APP_ORIGIN}/x"}) as r:
        page = await r.text()
        assert r.status == 200 and 'name="username"' in page and f'value="{APP_ORIGIN}/x"' in page
    wrong = await okta.browser_sign_in(browser, ALICE[0], BOB[1], f"{APP_ORIGIN}/x")
    assert wrong.status == 401 and okta.cookie(browser) is None
    right = await okta.browser_sign_in(browser, *ALICE, f"{APP_ORIGIN}/x")
    assert (right.status, right.headers["Location"]) == (302, f"{APP_ORIGIN}/x")
    assert (await me(okta, browser))[1]["login"] == ALICE[0]
    async with browser.get(okta.url("/login/login.htm"), params={"fromURI": f"{APP_ORIGIN}/y"},
                           allow_redirects=False) as r:  # already signed in: straight on
        assert (r.status, r.headers["Location"]) == (302, f"{APP_ORIGIN}/y")


async def test_an_untrusted_from_uri_lands_on_the_dashboard(start):
    okta = await start()
    browser = okta.browser()
    answer = await okta.browser_sign_in(browser, *ALICE, "https://evil.example/phish")
    assert (answer.status, answer.headers["Location"]) == (302, "/")
    async with browser.get(okta.url("/")) as r:
        assert r.status == 200 and ALICE[0] in await r.text()


async def test_signout_ends_the_session_clears_the_cookie_and_goes_to_a_trusted_uri(start):
    okta = await start()
    browser = okta.browser()
    await okta.browser_sign_in(browser, *ALICE)
    session_id = (await me(okta, browser))[1]["id"]
    async with browser.get(okta.url("/login/signout"), params={"fromURI": f"{APP_ORIGIN}/bye"},
                           allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (302, f"{APP_ORIGIN}/bye")
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
        assert morsel.value == "" and morsel["max-age"] == "0"
    assert okta.org.session(session_id) is None
    assert (await me(okta, browser))[0] == 404


@pytest.mark.parametrize("from_uri", ["https://evil.example/", None])
async def test_signout_to_an_untrusted_uri_goes_to_the_sign_in_page(start, from_uri):
    okta = await start()
    browser = okta.browser()
    await okta.browser_sign_in(browser, *ALICE)
    params = {"fromURI": from_uri} if from_uri else {}
    async with browser.get(okta.url("/login/signout"), params=params, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (302, "/login/login.htm")
    assert (await me(okta, browser))[0] == 404


async def test_stay_signed_in_makes_a_persistent_cookie_when_the_policy_allows(start):
    okta = await start(persistent_cookie=True, idle_minutes=60)
    browser = okta.browser()
    async with browser.post(okta.url("/login/login.htm"), allow_redirects=False,
                            data={"username": ALICE[0], "password": ALICE[1], "remember": "on"}) as r:
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
    assert 3590 <= int(morsel["max-age"]) <= 3600
    async with browser.post(okta.url("/login/login.htm"), allow_redirects=False,
                            data={"username": BOB[0], "password": BOB[1]}) as r:
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
    assert morsel["max-age"] == ""


async def test_stay_signed_in_is_a_session_cookie_when_the_policy_does_not_allow_it(start):
    okta = await start(persistent_cookie=False)
    async with okta.browser().post(okta.url("/login/login.htm"), allow_redirects=False,
                                   data={"username": ALICE[0], "password": ALICE[1], "remember": "on"}) as r:
        morsel, _ = parsed_cookie(r.headers.getall("Set-Cookie"), "idx")
    assert morsel["max-age"] == ""


async def test_a_test_can_hand_a_browser_the_cookie_of_a_sign_in_shortcut(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    browser = okta.browser()
    name, value = okta.org.cookie_for(session)
    browser.cookie_jar.update_cookies({name: value}, URL(okta.url("/")))
    assert (await me(okta, browser))[1]["id"] == session.id
