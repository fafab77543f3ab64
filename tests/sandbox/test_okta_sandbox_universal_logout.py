"""Universal Logout from the sandbox org over real loopback HTTP: the JWKS, the signed token as PyJWT sees it, key
rotation, both body formats, the call reaching an endpoint on 127.0.0.1, and the System Log."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from okta_sandbox_support import ALICE, Okta

from gateway.sandbox.okta import universal_logout
from gateway.sandbox.okta.org import Clock

ENDPOINT = "http://127.0.0.1:9999/okta/universal-logout"
TYPE = "global-token-revocation+jwt"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def okta(okta_sandbox: Okta) -> Okta:
    return okta_sandbox


async def published_keys(okta: Okta) -> jwt.PyJWKSet:
    answer = await okta.call("GET", "/oauth2/v1/keys", token=None)
    assert answer.status == 200
    return jwt.PyJWKSet.from_dict(answer.json)


def token_of(headers: dict[str, str]) -> str:
    scheme, token = headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    return token


def verify(token: str, keys: jwt.PyJWKSet, okta: Okta, audience: str = ENDPOINT) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, keys[kid].key, algorithms=["RS256"], audience=audience, issuer=okta.org.issuer,
                      options={"require": ["jti", "iss", "sub", "aud", "iat", "nbf", "exp"], "verify_exp": False,
                               "verify_iat": False, "verify_nbf": False})


@dataclass
class Endpoint:
    """An app's Universal Logout endpoint on 127.0.0.1: records each POST, answers `status` after `delay`."""

    status: int = 204
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status)


async def start_endpoint(aiohttp_server: Any, **options: Any) -> Endpoint:
    endpoint = Endpoint(**options)
    app = web.Application()
    app.router.add_post("/okta/universal-logout", endpoint.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    endpoint.url = f"http://127.0.0.1:{server.port}/okta/universal-logout"
    return endpoint


async def test_the_jwks_publishes_one_public_rs256_signing_key_apart_from_the_saml_key(okta):
    answer = await okta.call("GET", "/oauth2/v1/keys", token=None)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    [key] = answer.json["keys"]
    assert set(key) == {"kty", "alg", "use", "kid", "n", "e"}
    assert (key["kty"], key["alg"], key["use"], key["e"]) == ("RSA", "RS256", "sig", "AQAB")
    saml_public = okta.org.signing_key.private_key.public_key().public_numbers()
    assert jwt.PyJWK(key).key.public_numbers() != saml_public
    assert okta.org.api_calls == []  # not an /api/v1 call: no token, no rate limit


async def test_the_token_verifies_against_the_jwks_with_okta_claims(okta):
    app = okta.org.add_saml_app("legacy", "http://127.0.0.1:8080/acs", "urn:legacy")
    headers, _ = okta.org.universal_logout_request(ENDPOINT + "?tenant=1#top", ALICE[0])
    token = token_of(headers)
    header = jwt.get_unverified_header(token)
    assert header == {"typ": TYPE, "alg": "RS256", "kid": okta.org.logout_keys.current.kid}
    claims = verify(token, await published_keys(okta), okta)
    assert set(claims) == {"jti", "iss", "sub", "aud", "iat", "nbf", "exp"}
    assert (claims["iss"], claims["sub"], claims["aud"]) == (okta.org.issuer, app.id, ENDPOINT)
    assert abs(claims["iat"] - okta.org.clock.timestamp()) < 2
    assert (claims["nbf"], claims["exp"]) == (claims["iat"] - 300, claims["iat"] + 300)
    again = jwt.decode(token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0])[0]),
                       options={"verify_signature": False})
    assert again["jti"] != claims["jti"]


async def test_times_come_from_the_org_clock(start_okta_sandbox):
    okta = await start_okta_sandbox(clock=Clock(START, frozen=True))
    first = jwt.decode(token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0])[0]),
                       options={"verify_signature": False})
    okta.org.clock.advance(600)
    later = jwt.decode(token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0])[0]),
                       options={"verify_signature": False})
    assert first["iat"] == START.timestamp() and later["iat"] == first["iat"] + 600
    assert later["exp"] == START.timestamp() + 900


async def test_rotation_replaces_the_published_key(okta):
    before, _ = okta.org.universal_logout_request(ENDPOINT, ALICE[0])
    old_kid = okta.org.logout_keys.current.kid
    new_kid = okta.org.rotate_logout_key()
    keys = await published_keys(okta)
    assert new_kid != old_kid and [k.key_id for k in keys.keys] == [new_kid]
    with pytest.raises(KeyError):
        verify(token_of(before), keys, okta)
    after, _ = okta.org.universal_logout_request(ENDPOINT, ALICE[0])
    assert jwt.get_unverified_header(token_of(after))["kid"] == new_kid
    assert verify(token_of(after), keys, okta)["aud"] == ENDPOINT


async def test_both_body_formats_name_the_user(okta):
    alice = okta.org.user(ALICE[0])
    _, by_email = okta.org.universal_logout_request(ENDPOINT, alice)
    _, by_id = okta.org.universal_logout_request(ENDPOINT, alice.id, fmt="iss_sub")
    assert json.loads(by_email) == {"sub_id": {"format": "email", "email": ALICE[0]}}
    assert json.loads(by_id) == {"sub_id": {"format": "iss_sub", "iss": okta.org.issuer, "sub": alice.id}}
    with pytest.raises(ValueError):
        okta.org.universal_logout_request(ENDPOINT, alice, fmt="opaque")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        okta.org.universal_logout_request(ENDPOINT, "nobody@example.com")


async def test_overrides_make_the_bad_requests_tests_need(okta):
    keys = await published_keys(okta)
    headers, _ = okta.org.universal_logout_request(ENDPOINT, ALICE[0], aud="http://elsewhere/", exp=5, jti="j-1",
                                                   kid="other-kid", typ="JWT", app_id="0oaCustom")
    token = token_of(headers)
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "RS256", "kid": "other-kid"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["exp"], claims["jti"], claims["sub"]) == ("http://elsewhere/", 5, "j-1",
                                                                           "0oaCustom")
    left_out = token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0], jti=None, typ=None)[0])
    assert "jti" not in jwt.decode(left_out, options={"verify_signature": False})
    assert "typ" not in jwt.get_unverified_header(left_out)
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0], key=foreign)[0])
    with pytest.raises(jwt.InvalidSignatureError):
        verify(forged, keys, okta)
    unsigned = token_of(okta.org.universal_logout_request(ENDPOINT, ALICE[0], alg="none")[0])
    assert jwt.get_unverified_header(unsigned)["alg"] == "none" and unsigned.endswith(".")
    with pytest.raises(TypeError):
        okta.org.universal_logout_request(ENDPOINT, ALICE[0], audience="typo")


async def test_the_call_reaches_the_endpoint_as_okta_makes_it_and_is_logged(okta, aiohttp_server):
    endpoint = await start_endpoint(aiohttp_server)
    alice = okta.org.user(ALICE[0])
    assert await okta.org.send_universal_logout(endpoint.url, ALICE[0], fmt="iss_sub") == 204
    [(headers, body)] = endpoint.received
    assert headers["Content-Type"] == "application/json"
    assert verify(token_of(headers), await published_keys(okta), okta, endpoint.url)["aud"] == endpoint.url
    assert json.loads(body) == {"sub_id": {"format": "iss_sub", "iss": okta.org.issuer, "sub": alice.id}}
    event = okta.org.system_log[-1]
    assert event["eventType"] == "user.authentication.universal_logout"
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert [t["id"] for t in event["target"]] == [alice.id]


async def test_a_refusal_or_no_answer_is_the_status_and_a_failure_in_the_log(okta, aiohttp_server, monkeypatch):
    refusing = await start_endpoint(aiohttp_server, status=404)
    assert await okta.org.send_universal_logout(refusing.url, ALICE[0]) == 404
    assert okta.org.system_log[-1]["outcome"] == {"result": "FAILURE", "reason": "HTTP 404"}
    slow = await start_endpoint(aiohttp_server, delay=2.0)
    monkeypatch.setattr(universal_logout, "SEND_TIMEOUT", 0.2)
    assert await okta.org.send_universal_logout(slow.url, ALICE[0]) == 0
    assert await okta.org.send_universal_logout("http://127.0.0.1:9/nobody", ALICE[0]) == 0
    assert okta.org.system_log[-1]["outcome"] == {"result": "FAILURE", "reason": "no answer"}


async def test_get_user_takes_a_login_in_place_of_the_id(okta):
    alice = okta.org.user(ALICE[0])
    by_login = await okta.call("GET", f"/api/v1/users/{ALICE[0].upper()}")
    by_id = await okta.call("GET", f"/api/v1/users/{alice.id}")
    assert by_login.status == by_id.status == 200
    assert by_login.json["id"] == by_id.json["id"] == alice.id
    assert (await okta.call("GET", "/api/v1/users/nobody@example.com")).status == 404
