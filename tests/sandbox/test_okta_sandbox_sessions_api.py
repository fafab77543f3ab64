"""The sandbox's Authentication and Sessions API over loopback HTTP, against seed 002 and okta-reference.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from okta_sandbox_support import ALICE, API_TOKEN, BOB, OKTA_HOST, Okta, free_port, sandbox_org

from gateway.sandbox.okta.org import Clock
from gateway.sandbox.okta.serve import serve_okta
from gateway.sandbox.okta.timefmt import parse_iso

# The keys of seed 002's example Session objects, less the deprecated mfaActive (absent from the current spec),
# plus createdAt (in seed 002's /me answers and in the current spec).
SESSION_KEYS = {"id", "login", "userId", "status", "createdAt", "expiresAt", "lastPasswordVerification",
                "lastFactorVerification", "amr", "idp", "_links"}
ERROR_KEYS = {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def frozen() -> Clock:
    """A clock that moves only when told, on a whole second (Okta's timestamps keep milliseconds)."""
    return Clock(datetime.now(UTC).replace(microsecond=0), frozen=True)


@pytest.fixture
def start(start_okta_sandbox):
    return start_okta_sandbox


def assert_error(answer, status: int, code: str, summary: str | None = None) -> None:
    assert answer.status == status, answer.text
    body = answer.json
    assert set(body) == ERROR_KEYS and body["errorCode"] == code and body["errorLink"] == code
    assert body["errorCauses"] == [] and body["errorId"]
    if summary is not None:
        assert body["errorSummary"] == summary


def assert_session_object(okta: Okta, body: dict, session_id: str, login: str) -> None:
    """Seed 002's Session object: shape, formats, and links on the issuer."""
    assert set(body) == SESSION_KEYS
    user = okta.org.user(login)
    assert user is not None
    assert (body["id"], body["login"], body["userId"], body["status"]) == (session_id, login, user.id, "ACTIVE")
    for key in ("createdAt", "expiresAt", "lastPasswordVerification"):
        assert TIMESTAMP.fullmatch(body[key]), key
    assert body["lastFactorVerification"] is None and body["amr"] == ["pwd"]
    assert body["idp"] == {"id": okta.org.org_id, "type": "OKTA"}
    api = okta.url("/api/v1")
    assert body["_links"] == {
        "self": {"href": f"{api}/sessions/{session_id}", "hints": {"allow": ["GET", "DELETE"]}},
        "refresh": {"href": f"{api}/sessions/{session_id}/lifecycle/refresh", "hints": {"allow": ["POST"]}},
        "user": {"name": user.display_name, "href": f"{api}/users/{user.id}", "hints": {"allow": ["GET"]}},
    }


async def test_authn_gives_a_session_token(start):
    okta = await start()
    answer = await okta.call("POST", "/api/v1/authn", token=None, json={"username": ALICE[0], "password": ALICE[1]})
    body = answer.json
    assert answer.status == 200 and body["status"] == "SUCCESS" and len(body["sessionToken"]) > 20
    assert parse_iso(body["expiresAt"]) - okta.org.clock.now() <= timedelta(minutes=5)
    user = body["_embedded"]["user"]
    assert user["id"] == okta.org.user(ALICE[0]).id and user["profile"]["login"] == ALICE[0]
    assert user["profile"]["firstName"] == "Alice"


@pytest.mark.parametrize("credentials", [(ALICE[0], BOB[1]), ("nobody@example.com", "x"), (ALICE[0], None)])
async def test_authn_failures_are_401_e0000004(start, credentials):
    okta = await start()
    answer = await okta.call("POST", "/api/v1/authn", token=None,
                             json={"username": credentials[0], "password": credentials[1]})
    assert_error(answer, 401, "E0000004", "Authentication failed")


async def test_authn_refuses_a_suspended_user_and_a_broken_body(start):
    okta = await start()
    okta.org.suspend_user(okta.org.user(ALICE[0]).id)
    answer = await okta.call("POST", "/api/v1/authn", token=None, json={"username": ALICE[0], "password": ALICE[1]})
    assert_error(answer, 401, "E0000004")
    assert_error(await okta.call("POST", "/api/v1/authn", token=None, data=b"{nope"), 400, "E0000003")


async def test_create_session_redeems_the_token_once_and_sets_no_cookie(start):
    okta = await start()
    token = await okta.session_token(*ALICE)
    answer = await okta.call("POST", "/api/v1/sessions", token=None, json={"sessionToken": token})
    assert answer.status == 200 and "Set-Cookie" not in answer.headers
    body = answer.json
    assert_session_object(okta, body, body["id"], ALICE[0])
    assert okta.org.session(body["id"]) is not None
    again = await okta.call("POST", "/api/v1/sessions", token=None, json={"sessionToken": token})
    assert_error(again, 401, "E0000004")


async def test_create_session_refuses_bad_and_expired_tokens(start):
    okta = await start()
    for body in [{"sessionToken": "00HiohZYpJgMSHwmL9TQy7RRzuY-q9soKp1SPmYYow"}, {}, {"sessionToken": 7}]:
        assert (await okta.call("POST", "/api/v1/sessions", token=None, json=body)).status == 401
    token = await okta.session_token(*ALICE)
    okta.org.clock.advance(5 * 60 + 1)
    assert (await okta.call("POST", "/api/v1/sessions", token=None, json={"sessionToken": token})).status == 401


async def test_get_session_by_id_answers_the_session_object(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    answer = await okta.call("GET", f"/api/v1/sessions/{session.id}")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert_session_object(okta, answer.json, session.id, ALICE[0])
    assert parse_iso(answer.json["expiresAt"]) - parse_iso(answer.json["createdAt"]) == timedelta(minutes=120)


async def test_an_unknown_session_is_404_e0000007(start):
    okta = await start()
    unknown = "idx" + "Q" * 22
    for method in ("GET", "DELETE"):
        answer = await okta.call(method, f"/api/v1/sessions/{unknown}")
        assert_error(answer, 404, "E0000007", f"Not found: Resource not found: {unknown} (Session)")
    answer = await okta.call("POST", f"/api/v1/sessions/{unknown}/lifecycle/refresh")
    assert_error(answer, 404, "E0000007", f"Not found: Resource not found: {unknown} (Session)")


async def test_get_by_id_is_not_activity(start):
    okta = await start(clock=frozen())
    session = okta.org.sign_in(ALICE[0])
    first = (await okta.call("GET", f"/api/v1/sessions/{session.id}")).json["expiresAt"]
    okta.org.clock.advance(600)
    assert (await okta.call("GET", f"/api/v1/sessions/{session.id}")).json["expiresAt"] == first


async def test_delete_session_ends_it(start):
    okta = await start()
    session, other = okta.org.sign_in(ALICE[0]), okta.org.sign_in(ALICE[0])
    answer = await okta.call("DELETE", f"/api/v1/sessions/{session.id}")
    assert answer.status == 204 and answer.text == ""
    assert (await okta.call("GET", f"/api/v1/sessions/{session.id}")).status == 404
    assert (await okta.call("DELETE", f"/api/v1/sessions/{session.id}")).status == 404
    assert okta.org.session(other.id) is other  # only that one


async def test_refresh_moves_expires_at_and_answers_the_session(start):
    okta = await start(clock=frozen())
    session = okta.org.sign_in(ALICE[0])
    before = parse_iso((await okta.call("GET", f"/api/v1/sessions/{session.id}")).json["expiresAt"])
    okta.org.clock.advance(600)
    answer = await okta.call("POST", f"/api/v1/sessions/{session.id}/lifecycle/refresh")
    assert answer.status == 200
    assert_session_object(okta, answer.json, session.id, ALICE[0])
    assert parse_iso(answer.json["expiresAt"]) == before + timedelta(seconds=600)


async def test_refresh_with_prefer_minimal_is_204(start):
    okta = await start(clock=frozen())
    session = okta.org.sign_in(ALICE[0])
    okta.org.clock.advance(60)
    answer = await okta.call("POST", f"/api/v1/sessions/{session.id}/lifecycle/refresh",
                             headers={"Prefer": "return=minimal"})
    assert (answer.status, answer.text, answer.headers["Preference-Applied"]) == (204, "", "return=minimal")
    assert session.last_activity == okta.org.clock.now()


async def test_the_deprecated_put_extends_like_refresh(start):
    okta = await start(clock=frozen())
    session = okta.org.sign_in(ALICE[0])
    okta.org.clock.advance(300)
    answer = await okta.call("PUT", f"/api/v1/sessions/{session.id}")
    assert answer.status == 200 and parse_iso(answer.json["expiresAt"]) == okta.org.clock.now() + timedelta(hours=2)


@pytest.mark.parametrize("authorization", [None, "SSWS wrong-token", f"Bearer {API_TOKEN}", "SSWS",
                                           f"ssws {API_TOKEN}"])
async def test_admin_calls_need_the_api_token(start, authorization):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [("GET", f"/api/v1/sessions/{session.id}"), ("DELETE", f"/api/v1/sessions/{session.id}"),
                         ("POST", f"/api/v1/sessions/{session.id}/lifecycle/refresh"),
                         ("DELETE", f"/api/v1/users/{session.user_id}/sessions")]:
        answer = await okta.call(method, path, token=None, headers=headers)
        assert_error(answer, 401, "E0000011", "Invalid token provided")
    assert okta.org.session(session.id) is session  # a refused call ends nothing


async def test_a_missing_token_can_be_made_to_answer_403_e0000005(start):
    okta = await start()
    okta.org.missing_token_403 = True
    session = okta.org.sign_in(ALICE[0])
    assert_error(await okta.call("GET", f"/api/v1/sessions/{session.id}", token=None), 403, "E0000005",
                 "Invalid session")
    assert_error(await okta.call("GET", f"/api/v1/sessions/{session.id}", token="wrong"), 401, "E0000011")


async def test_delete_user_sessions_ends_all_of_that_users_sessions(start):
    okta = await start()
    a1, a2, b = okta.org.sign_in(ALICE[0]), okta.org.sign_in(ALICE[0]), okta.org.sign_in(BOB[0])
    answer = await okta.call("DELETE", f"/api/v1/users/{a1.user_id}/sessions?oauthTokens=true&forgetDevices=false")
    assert answer.status == 204
    assert okta.org.session(a1.id) is None and okta.org.session(a2.id) is None and okta.org.session(b.id) is b
    unknown = "00u" + "Z" * 17
    assert_error(await okta.call("DELETE", f"/api/v1/users/{unknown}/sessions?oauthTokens=false"), 404, "E0000007",
                 f"Not found: Resource not found: {unknown} (User)")


async def test_get_user_and_lifecycle_over_the_api(start):
    okta = await start()
    alice = okta.org.user(ALICE[0])
    session = okta.org.sign_in(ALICE[0])
    answer = await okta.call("GET", f"/api/v1/users/{alice.id}")
    assert answer.status == 200 and answer.json["profile"]["login"] == ALICE[0] and answer.json["status"] == "ACTIVE"
    assert (await okta.call("POST", f"/api/v1/users/{alice.id}/lifecycle/suspend")).status == 200
    assert alice.status == "SUSPENDED" and okta.org.session(session.id) is None
    assert (await okta.call("POST", f"/api/v1/users/{alice.id}/lifecycle/deactivate")).status == 200
    assert alice.status == "DEPROVISIONED"
    assert (await okta.call("GET", "/api/v1/users/00uZZZZZZZZZZZZZZZZZ")).status == 404


async def test_classic_engine_ids_and_the_sid_cookie_value_is_a_valid_id(start):
    okta = await start(engine="classic")
    token = await okta.session_token(*ALICE)
    browser = okta.browser()
    async with browser.get(okta.url("/login/sessionCookieRedirect"), allow_redirects=False,
                           params={"token": token, "redirectUrl": okta.url("/")}) as r:
        assert r.status == 302
    sid = okta.cookie(browser, "sid")
    assert sid is not None and re.fullmatch(r"102[A-Za-z0-9_-]{22}", sid)
    assert (await okta.call("GET", f"/api/v1/sessions/{sid}")).json["id"] == sid


async def test_an_identity_engine_idx_cookie_value_is_not_a_session_id(start):
    okta = await start(engine="identity")
    token = await okta.session_token(*ALICE)
    browser = okta.browser()
    async with browser.get(okta.url("/login/sessionCookieRedirect"), allow_redirects=False,
                           params={"token": token, "redirectUrl": okta.url("/")}):
        pass
    idx = okta.cookie(browser, "idx")
    assert idx is not None and okta.cookie(browser, "sid") is None
    assert (await okta.call("GET", f"/api/v1/sessions/{idx}")).status == 404
    me = await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)
    assert re.fullmatch(r"idx[A-Za-z0-9_-]{22}", me.json["id"]) and me.json["id"] != idx
    assert (await okta.call("GET", f"/api/v1/sessions/{me.json['id']}")).status == 200


async def test_every_api_call_is_recorded_with_its_status(start):
    okta = await start()
    session = okta.org.sign_in(ALICE[0])
    await okta.call("GET", f"/api/v1/sessions/{session.id}")
    await okta.call("GET", f"/api/v1/sessions/{session.id}", token="wrong")
    await okta.call("GET", "/login/login.htm")  # a page is not an API call
    calls = [(c.method, c.path, c.status) for c in okta.org.api_calls]
    assert calls == [("GET", f"/api/v1/sessions/{session.id}", 200), ("GET", f"/api/v1/sessions/{session.id}", 401)]


async def test_serve_okta_serves_an_org_until_cleaned_up():
    port = free_port(OKTA_HOST)
    org = sandbox_org(port)
    session = org.sign_in(ALICE[0])
    runner = await serve_okta(OKTA_HOST, port, org)
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"{org.issuer}/api/v1/sessions/{session.id}", headers={"Authorization": f"SSWS {API_TOKEN}"}
        ) as r:
            assert r.status == 200 and (await r.json())["id"] == session.id
    finally:
        await runner.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"{org.issuer}/"):
            pass
