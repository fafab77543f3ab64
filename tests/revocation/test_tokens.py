"""The Universal Logout token: checks of tokens signed here with keys made here, behind a plain async `fetch_jwks`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from revocation.jwt_support import AUDIENCE, ISSUER, KEY, OTHER_KEY, TYPE, claims_at, token

from gateway.revocation.jwks import KeySet
from gateway.revocation.refusal import Refused
from gateway.revocation.tokens import TokenVerifier


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

