"""The Universal Logout endpoint: token checks with tokens signed here (revocation/jwt_support.py), the body formats,
the answers of `handle`, and one run over loopback HTTP against the sandbox org."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from okta_sandbox_support import ALICE, BOB, Sandboxes
from revocation.jwt_support import AUDIENCE, ISSUER, KEY, OTHER_KEY, TYPE, claims_at, token

from gateway.revocation.jwks import KeySet, jwks_fetcher
from gateway.revocation.refusal import Refused
from gateway.revocation.universal_logout import (
    LogoutSubject,
    TokenVerifier,
    handle,
    subject_from_body,
)
from gateway.sandbox.stack import free_port

USER_ID = "00u1a2b3c4d5e6f7g8h9"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key_as_secret(now: float) -> str:
    """The alg-confusion attack: HS256 keyed with the RSA public key (PyJWT refuses to make one, so by hand)."""
    secret = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': TYPE, 'kid': 'k1'}).encode())}." \
                    f"{b64(json.dumps(claims_at(now)).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"



async def refusal(verifier: TokenVerifier, authorization: str | None) -> Refused:
    with pytest.raises(Refused) as caught:
        await verifier.verify(authorization)
    assert caught.value.status == 401
    return caught.value


# --- the token ---------------------------------------------------------------------------------------------------

async def test_a_good_token_gives_its_claims(verifier, clock):
    claims = await verifier.verify(f"Bearer {token(clock.now, jti='abc')}")
    assert (claims["jti"], claims["iss"], claims["aud"]) == ("abc", ISSUER, AUDIENCE)


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "SSWS token"])
async def test_no_bearer_token_is_401(verifier, authorization):
    assert (await refusal(verifier, authorization)).message == "bearer token required"


@pytest.mark.parametrize("value", ["not-a-jwt", "a.b.c", "e30", "Zm9v.YmFy.YmF6", "e30.e30.e30.e30"])
async def test_a_malformed_token_is_401(verifier, value):
    assert (await refusal(verifier, f"Bearer {value}")).message == "malformed token"


async def test_alg_none_is_refused_before_any_key_is_looked_up(verifier, org, clock):
    unsigned = jwt.encode(claims_at(clock.now), "", algorithm="none", headers={"kid": "k1", "typ": TYPE})
    assert (await refusal(verifier, f"Bearer {unsigned}")).message == "algorithm not allowed"
    assert org.calls == 0


async def test_hs256_keyed_with_the_public_key_is_refused(verifier, org, clock):
    forged = hs256_with_public_key_as_secret(clock.now)
    assert (await refusal(verifier, f"Bearer {forged}")).message == "algorithm not allowed"
    assert org.calls == 0


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None])
async def test_a_wrong_or_missing_typ_is_401(verifier, clock, typ):
    assert (await refusal(verifier, f"Bearer {token(clock.now, typ=typ)}")).message == "wrong token type"


async def test_typ_compares_as_a_media_type(verifier, clock):
    assert await verifier.verify(f"Bearer {token(clock.now, typ='application/Global-Token-Revocation+JWT')}")


async def test_a_missing_kid_is_401(verifier, clock):
    assert (await refusal(verifier, f"Bearer {token(clock.now, kid=None)}")).message == "no key id"


async def test_an_unknown_kid_is_401_after_one_refetch(verifier, org, clock):
    await verifier.verify(f"Bearer {token(clock.now)}")
    clock.now += 31
    assert (await refusal(verifier, f"Bearer {token(clock.now, kid='k9')}")).message == "unknown signing key"
    assert org.calls == 2


async def test_a_token_signed_by_another_key_is_401(verifier, clock):
    forged = token(clock.now, key=OTHER_KEY)
    assert (await refusal(verifier, f"Bearer {forged}")).message == "bad signature"


async def test_a_tampered_payload_is_401(verifier, clock):
    header, _, signature = token(clock.now).split(".")
    other_payload = token(clock.now, sub="0oaEvil").split(".")[1]
    assert (await refusal(verifier, f"Bearer {header}.{other_payload}.{signature}")).message == "bad signature"


@pytest.mark.parametrize("iss", ["https://evil.okta.com", ISSUER + "/oauth2/default", ISSUER.upper()])
async def test_a_wrong_issuer_is_401(verifier, clock, iss):
    assert (await refusal(verifier, f"Bearer {token(clock.now, iss=iss)}")).message == "wrong issuer"


@pytest.mark.parametrize("aud", ["https://other.example.com/okta/universal-logout", AUDIENCE + "?x=1", AUDIENCE + "/",
                                 [AUDIENCE], [AUDIENCE, "https://other.example.com/"]])
async def test_an_audience_other_than_the_endpoint_is_401(verifier, clock, aud):
    assert (await refusal(verifier, f"Bearer {token(clock.now, aud=aud)}")).message == "wrong audience"


@pytest.mark.parametrize("claim", ["jti", "iss", "sub", "aud", "iat", "exp"])
async def test_a_missing_claim_is_401(verifier, clock, claim):
    assert (await refusal(verifier, f"Bearer {token(clock.now, **{claim: None})}")).message == f"claim {claim} missing"


async def test_nbf_may_be_left_out(verifier, clock):
    assert "nbf" not in await verifier.verify(f"Bearer {token(clock.now, nbf=None)}")


async def test_an_expired_token_is_401_beyond_the_leeway(verifier, clock):
    assert await verifier.verify(f"Bearer {token(clock.now, exp=int(clock.now) - 59)}")
    late = token(clock.now, exp=int(clock.now) - 60)
    assert (await refusal(verifier, f"Bearer {late}")).message == "token expired"


async def test_a_token_not_yet_valid_is_401(verifier, clock):
    early = token(clock.now, nbf=int(clock.now) + 61, iat=int(clock.now))
    assert (await refusal(verifier, f"Bearer {early}")).message == "token not yet valid"


async def test_a_token_issued_in_the_future_is_401(verifier, clock):
    future = token(clock.now, iat=int(clock.now) + 61, exp=int(clock.now) + 600)
    assert (await refusal(verifier, f"Bearer {future}")).message == "token issued in the future"


@pytest.mark.parametrize(("claim", "value"), [("exp", "soon"), ("iat", True), ("nbf", [1])])
async def test_a_time_that_is_not_a_number_is_401(verifier, clock, claim, value):
    assert (await refusal(verifier, f"Bearer {token(clock.now, **{claim: value})}")).message == f"{claim} is not a time"


@pytest.mark.parametrize("jti", ["", 12, "x" * 257])
async def test_a_bad_jti_is_401(verifier, clock, jti):
    assert (await refusal(verifier, f"Bearer {token(clock.now, jti=jti)}")).status == 401


async def test_a_replayed_token_is_401_until_and_after_it_expires(verifier, clock):
    once = f"Bearer {token(clock.now)}"
    await verifier.verify(once)
    assert (await refusal(verifier, once)).message == "token replayed"
    clock.now += 300 + 60
    assert (await refusal(verifier, once)).message == "token expired"


async def test_the_same_jti_in_a_new_token_is_a_replay(verifier, clock):
    await verifier.verify(f"Bearer {token(clock.now, jti='same')}")
    clock.now += 1
    assert (await refusal(verifier, f"Bearer {token(clock.now, jti='same')}")).message == "token replayed"


async def test_the_subject_must_be_the_configured_app_when_one_is(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock)
    verifier = TokenVerifier(issuer=ISSUER + "/", audience=AUDIENCE, keys=keys, clock=clock, app_id="0oaMine")
    assert await verifier.verify(f"Bearer {token(clock.now, sub='0oaMine')}")
    assert (await refusal(verifier, f"Bearer {token(clock.now, sub='0oaOther')}")).message == "wrong subject"


# --- the body ----------------------------------------------------------------------------------------------------

def test_the_email_format_names_the_login_lower_cased():
    body = json.dumps({"sub_id": {"format": "email", "email": "Alice@Example.COM"}}).encode()
    assert subject_from_body(body, ISSUER) == LogoutSubject(user_id=None, login="alice@example.com")


def test_the_iss_sub_format_names_the_user_id():
    body = json.dumps({"sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": USER_ID}}).encode()
    assert subject_from_body(body, ISSUER + "/") == LogoutSubject(user_id=USER_ID, login=None)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"sub_id"', b"\xff\xfe", b"[" * 20_000 + b"]" * 20_000,
    b'{"sub_id": "alice@example.com"}', b'{"subject": {"format": "email", "email": "a@example.com"}}',
    b'{"sub_id": {"format": "opaque", "id": "x"}}', b'{"sub_id": {"email": "a@example.com"}}',
    b'{"sub_id": {"format": "email"}}', b'{"sub_id": {"format": "email", "email": "no-at-sign"}}',
    b'{"sub_id": {"format": "email", "email": " a@example.com"}}', b'{"sub_id": {"format": "email", "email": 5}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://example.okta.com"}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://evil.okta.com", "sub": "00u1a2b3c4d5e6f7g8h9"}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://example.okta.com", "sub": "../sessions/me"}}',
    json.dumps({"sub_id": {"format": "email", "email": "a@example.com"}, "pad": "x" * 16_384}).encode(),
])
def test_a_malformed_body_is_400(body):
    with pytest.raises(Refused) as caught:
        subject_from_body(body, ISSUER)
    assert caught.value.status == 400


# --- the endpoint ------------------------------------------------------------------------------------------------

class Revocations:
    def __init__(self, *, known: bool = True, error: Exception | None = None) -> None:
        self.known, self.error = known, error
        self.calls: list[LogoutSubject] = []

    async def revoke(self, subject: LogoutSubject, claims: dict[str, Any]) -> bool:
        self.calls.append(subject)
        if self.error is not None:
            raise self.error
        return self.known


async def endpoint_client(aiohttp_client: Any, verifier: TokenVerifier, revocations: Revocations) -> Any:
    async def route(request: web.Request) -> web.Response:
        return await handle(request, verifier, ISSUER, revocations.revoke)

    app = web.Application()
    app.router.add_post("/okta/universal-logout", route)
    return await aiohttp_client(app)


EMAIL_BODY = json.dumps({"sub_id": {"format": "email", "email": "alice@example.com"}}).encode()


async def post(client: Any, authorization: str | None, body: bytes = EMAIL_BODY) -> tuple[int, str, str | None]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    async with client.post("/okta/universal-logout", data=body, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers.get("Cache-Control")


@pytest.mark.parametrize(("revocations", "status"), [(Revocations(), 204), (Revocations(known=False), 404),
                                                      (Revocations(error=Refused(422, "user locked")), 422),
                                                      (Revocations(error=RuntimeError("db password=hunter2")), 422)])
async def test_the_answer_follows_revoke(aiohttp_client, verifier, clock, revocations, status):
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    answered, text, cache = await post(client, f"Bearer {token(clock.now)}")
    assert (answered, cache) == (status, "no-store")
    assert revocations.calls == [LogoutSubject(None, "alice@example.com")]
    assert len(text) < 40 and "hunter2" not in text and "Traceback" not in text


async def test_a_bad_token_is_401_and_nothing_is_revoked(aiohttp_client, verifier, clock):
    revocations = Revocations()
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    assert (await post(client, None))[::2] == (401, "no-store")
    assert (await post(client, f"Bearer {token(clock.now, aud='https://other/')}"))[:2] == (401, "wrong audience\n")
    assert revocations.calls == []


async def test_the_token_is_checked_before_the_body(aiohttp_client, verifier):
    client = await endpoint_client(aiohttp_client, verifier, Revocations())
    assert (await post(client, None, b"not json"))[0] == 401


async def test_a_bad_or_oversized_body_is_400(aiohttp_client, verifier, clock):
    revocations = Revocations()
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    assert (await post(client, f"Bearer {token(clock.now)}", b"{}"))[::2] == (400, "no-store")
    assert (await post(client, f"Bearer {token(clock.now)}", b"x" * 100_000))[:2] == (400, "body too large\n")
    assert revocations.calls == []


# --- over loopback, against the sandbox org ----------------------------------------------------------------------

async def test_a_universal_logout_from_the_sandbox_org_over_loopback(aiohttp_server):
    port = free_port("127.0.0.1")
    endpoint = f"http://127.0.0.1:{port}/okta/universal-logout"
    known_logins = {ALICE[0]}
    revoked: list[LogoutSubject] = []
    async with Sandboxes(aiohttp_server) as sandboxes, aiohttp.ClientSession() as http:
        okta = await sandboxes.start()
        org = okta.org
        carol = org.add_user("carol@example.com", "Carol-pw-3")
        bob = org.user(BOB[0])
        known_ids = {bob.id}
        fetches: list[float] = []
        fetch = jwks_fetcher(http, f"{org.issuer}/oauth2/v1/keys")

        async def counted_fetch() -> dict[str, Any]:
            fetches.append(org.clock.timestamp())
            return await fetch()

        on_org_clock = org.clock.timestamp
        verifier = TokenVerifier(issuer=org.issuer, audience=endpoint, keys=KeySet(counted_fetch, clock=on_org_clock),
                                 clock=on_org_clock)

        async def revoke(subject: LogoutSubject, claims: dict[str, Any]) -> bool:
            revoked.append(subject)
            return subject.login in known_logins or subject.user_id in known_ids

        await aiohttp_server(_endpoint_app(verifier, org.issuer, revoke), host="127.0.0.1", port=port)

        assert await org.send_universal_logout(endpoint, ALICE[0]) == 204
        assert await org.send_universal_logout(endpoint, BOB[0], fmt="iss_sub") == 204
        assert revoked == [LogoutSubject(None, ALICE[0]), LogoutSubject(bob.id, None)]
        assert await org.send_universal_logout(endpoint, carol) == 404

        org.rotate_logout_key()
        org.clock.advance(30)
        assert await org.send_universal_logout(endpoint, ALICE[0]) == 204
        assert len(fetches) == 2

        foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert await _post(http, endpoint, *org.universal_logout_request(endpoint, ALICE[0], key=foreign)) == 401
        assert await _post(http, endpoint, *org.universal_logout_request(endpoint, ALICE[0], key=foreign,
                                                                         kid="foreign-kid")) == 401
        assert len(fetches) == 2  # the unknown kid came within min_refetch of the last fetch

        replayed = org.universal_logout_request(endpoint, ALICE[0])
        assert await _post(http, endpoint, *replayed) == 204
        assert await _post(http, endpoint, *replayed) == 401
        assert [e["outcome"]["result"] for e in org.system_log
                if e["eventType"] == "user.authentication.universal_logout"] == ["SUCCESS", "SUCCESS", "FAILURE",
                                                                                   "SUCCESS"]


def _endpoint_app(verifier: TokenVerifier, issuer: str,
                  revoke: Callable[[LogoutSubject, dict[str, Any]], Any]) -> web.Application:
    async def route(request: web.Request) -> web.Response:
        return await handle(request, verifier, issuer, revoke)

    app = web.Application()
    app.router.add_post("/okta/universal-logout", route)
    return app


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes) -> int:
    async with http.post(url, data=body, headers=headers) as answer:
        return answer.status
