"""Properties of the readers behind the pushed revocations and the logout: the event-hook body reader, the
Universal Logout body and token readers, and the after-logout target rule. For any input: no exception but the
module's own refusal escapes, and what the gateway reads is what the reference reader (json, PyJWT, a browser's
URL parser) reads, or the gateway refuses."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm
from yarl import URL

from gateway.okta.ids import is_session_id, is_user_id
from gateway.revocation.event_hooks import MAX_BODY, read_delivery
from gateway.revocation.events import revocation_of
from gateway.revocation.jwks import KeySet
from gateway.revocation.logout import after_logout_target, logout_form
from gateway.revocation.refusal import Refused
from gateway.revocation.tokens import TokenVerifier
from gateway.revocation.universal_logout import LogoutSubject, subject_from_body
from gateway.routing import plain_host
from gateway.settings import LogoutRules

pytestmark = pytest.mark.hostile

ISSUER = "https://example.okta.com"
AUDIENCE = "https://gateway.example.com/.gateway/okta/universal-logout"
NOW = 1_700_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {"keys": [{**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "RS256", "use": "sig"}]}

# --- JSON values, shaped like what each endpoint receives ------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=8)
odd = (scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)
       | st.sampled_from([10**400, -(10**400), 1e308, "\udcff", "\x00", "\u00b2"]))
session_ids = st.sampled_from(["102abcdefghijklmnopqrstuv", "idxffK-esRDSrC5m0ly-Kma9A", "10x", "102" + "a" * 60,
                               "../users/me", "idx\u00e9bcdefghijklmnopqrstu"]) | st.text(max_size=30)
user_ids = (st.sampled_from(["00u1a2b3c4d5e6f7g8h9", "00u1a2b3c4d5e6f7g8h", "00U1A2B3C4D5E6F7G8H9"])
            | st.text(max_size=22))
event_types = st.sampled_from(["user.session.end", "user.session.clear", "user.lifecycle.suspend",
                               "user.lifecycle.deactivate", "user.session.start", "user.authentication.sso"])
whos = st.fixed_dictionaries({}, optional={"id": user_ids | odd,
                                           "type": st.sampled_from(["User", "AppInstance"]) | odd,
                                           "alternateId": st.emails() | odd})
events = st.fixed_dictionaries({}, optional={
    "uuid": st.text(max_size=10) | odd,
    "eventType": event_types | odd,
    "published": st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=30) | odd,
    "actor": whos | odd,
    "target": st.lists(whos, max_size=3) | odd,
    "authenticationContext": st.fixed_dictionaries({}, optional={"externalSessionId": session_ids | odd})
    | odd,
    "debugContext": st.fixed_dictionaries({"debugData": st.fixed_dictionaries(
        {}, optional={"EndedSessionId": session_ids | odd}) | odd}) | odd,
})
deliveries = st.fixed_dictionaries({"data": st.fixed_dictionaries({"events": st.lists(events | json_values,
                                                                                      max_size=4)})}) | odd


def nested(depth: int, kind: str) -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)


# --- the event-hook body reader -------------------------------------------------------------------------------

@given(st.binary(max_size=2000))
def test_any_bytes_are_events_or_not_json(body):
    read = read_delivery(body)
    assert read is None or all(isinstance(e, dict) for e in read)


@settings(max_examples=100)
@given(deliveries)
def test_a_json_delivery_reads_as_json_reads_it(delivery):
    body = json.dumps(delivery).encode()
    data = delivery.get("data") if isinstance(delivery, dict) else None
    listed = data.get("events") if isinstance(data, dict) else None
    expected = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    assert read_delivery(body) == expected


@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["list", "dict"]))
def test_nesting_of_any_depth_is_read_or_refused_never_raised(depth, kind):
    body = nested(depth, kind)
    assume(len(body) <= MAX_BODY)
    read = read_delivery(body)
    assert read is None or read == []


@settings(max_examples=100)
@given(events)
def test_an_event_revokes_only_what_it_names_with_okta_shaped_ids(event):
    revocation = revocation_of(event)
    if revocation is None:
        return
    assert revocation.source == "event_hook"
    if revocation.session_id is not None:
        debug = event.get("debugContext", {})
        debug = debug.get("debugData", {}) if isinstance(debug, dict) else {}
        context = event.get("authenticationContext", {})
        named = {debug.get("EndedSessionId") if isinstance(debug, dict) else None,
                 context.get("externalSessionId") if isinstance(context, dict) else None}
        assert is_session_id(revocation.session_id) and revocation.session_id in named
        assert event["eventType"] == "user.session.end"
    else:
        assert is_user_id(revocation.user_id) and event["eventType"] != "user.session.end"
    assert revocation.user_id is None or is_user_id(revocation.user_id)
    assert revocation.happened_at is None or math.isfinite(revocation.happened_at)


# --- the Universal Logout body reader -------------------------------------------------------------------------

sub_ids = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["email", "iss_sub", "phone", "EMAIL"]) | odd,
    "email": st.emails() | st.text(max_size=40) | odd,
    "iss": st.sampled_from([ISSUER, ISSUER + "/", "https://evil.example"]) | odd,
    "sub": user_ids | odd,
})
logout_bodies = st.fixed_dictionaries({"sub_id": sub_ids | odd}) | json_values


def read_subject(body: bytes) -> LogoutSubject | None:
    try:
        return subject_from_body(body, ISSUER)
    except Refused as refused:
        assert refused.status == 400 and len(refused.message) < 80
        return None


@given(st.binary(max_size=2000))
def test_any_bytes_are_a_subject_or_a_400(body):
    read_subject(body)


@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["list", "dict"]))
def test_any_nesting_is_a_subject_or_a_400(depth, kind):
    assert read_subject(nested(depth, kind)) is None


@settings(max_examples=100)
@given(logout_bodies)
def test_a_subject_is_what_the_json_names(document):
    subject = read_subject(json.dumps(document).encode())
    if subject is None:
        return
    sub_id = document["sub_id"]
    if subject.login is not None:
        assert sub_id["format"] == "email" and subject.login == sub_id["email"].lower() and subject.user_id is None
    else:
        assert sub_id["format"] == "iss_sub" and subject.user_id == sub_id["sub"] and is_user_id(subject.user_id)
        assert sub_id["iss"].rstrip("/") == ISSUER


# --- the Universal Logout token reader ------------------------------------------------------------------------

def verifier() -> TokenVerifier:
    async def fetch() -> dict[str, Any]:
        return JWKS

    keys = KeySet(fetch, clock=lambda: NOW)
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, clock=lambda: NOW)


def verify(authorization: str | None) -> dict[str, Any] | None:
    async def run() -> dict[str, Any] | None:
        try:
            return await verifier().verify(authorization)
        except Refused as refused:
            assert refused.status == 401 and len(refused.message) < 80
            return None

    return asyncio.run(run())


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


headers = st.fixed_dictionaries({}, optional={
    "alg": st.sampled_from(["RS256", "none", "HS256", "rs256"]) | odd,
    "typ": st.sampled_from(["global-token-revocation+jwt", "application/global-token-revocation+jwt", "JWT"])
    | odd,
    "kid": st.sampled_from(["k1", "k2", ""]) | odd,
}) | odd


@settings(max_examples=100)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_authorization_header_is_claims_or_a_401(authorization):
    assert verify(authorization) is None
    assert verify("Bearer " + authorization) is None


@settings(max_examples=100)
@given(headers, json_values, st.binary(max_size=64))
def test_any_unsigned_token_is_a_401(header, payload, signature):
    assert verify(f"Bearer {b64(header)}.{b64(payload)}.{b64(signature)}") is None


times = st.sampled_from([NOW, NOW - 300, NOW + 300, int(NOW), 10**400, -(10**400), 1e308, -1e308, float("inf"),
                         float("nan"), True, str(int(NOW))])
claim_values = st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | odd
MISSING = object()
GOOD = {"h.kid": "k1", "h.typ": "global-token-revocation+jwt", "c.jti": "jti-1", "c.iss": ISSUER, "c.sub": "0oa1",
        "c.aud": AUDIENCE, "c.iat": NOW, "c.nbf": NOW - 300, "c.exp": NOW + 300}
BAD = {
    "h.kid": st.sampled_from(["k2", ""]) | odd, "h.typ": st.just("JWT") | odd,
    "c.jti": st.text(max_size=300) | odd, "c.iss": st.sampled_from([ISSUER + "/", "https://evil.example"]) | odd,
    "c.sub": odd, "c.aud": st.sampled_from([AUDIENCE + "/", [AUDIENCE], [AUDIENCE, "x"]]) | odd,
    "c.iat": st.one_of(times, times, claim_values), "c.nbf": st.one_of(times, times, claim_values),
    "c.exp": st.one_of(times, times, claim_values),
}


def split(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    kept = {k: v for k, v in fields.items() if v is not MISSING}
    return ({k[2:]: v for k, v in kept.items() if k[0] == "h"}, {k[2:]: v for k, v in kept.items() if k[0] == "c"})


# a good token with one or two of its fields made bad (or left out): every rule is met alone, on its own path
signed_tokens = st.lists(st.sampled_from(sorted(BAD)), min_size=1, max_size=2, unique=True).flatmap(
    lambda names: st.tuples(*(st.just(MISSING) | BAD[n] for n in names)).map(
        lambda values: split({**GOOD, **dict(zip(names, values, strict=True))})))


def signed(header: dict[str, Any], payload: Any) -> str:
    """A token signed with the org's key whatever its JSON says (PyJWT's encoder would refuse odd claims)."""
    signing_input = f"{b64({'alg': 'RS256', **header})}.{b64(payload)}"
    signature = KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


@given(signed_tokens)
@example(split({**GOOD, "c.exp": 10**400}))  # a JSON integer no float holds: once an OverflowError, a 500
@example(split({**GOOD, "c.iat": float("nan")}))
def test_a_signed_token_is_accepted_only_when_every_rule_holds(token_fields):
    header, payload = token_fields
    token = signed(header, payload)
    accepted = verify("Bearer " + token)
    if accepted is None:
        return
    assert accepted["iss"] == ISSUER and accepted["aud"] == AUDIENCE
    assert isinstance(accepted["jti"], str) and 0 < len(accepted["jti"]) <= 256
    for name in ("exp", "iat"):
        assert isinstance(accepted[name], int | float) and not isinstance(accepted[name], bool)
    assert accepted["exp"] > NOW - 60 and accepted["iat"] <= NOW + 60
    assert "nbf" not in accepted or accepted["nbf"] <= NOW + 60
    assert jwt.get_unverified_header(token).get("kid") == "k1"


# --- the after-logout target -------------------------------------------------------------------------------------

PREFIXES = ("https://app.example.com/goodbye/", "http://127.0.0.1:8080/", "https://www.example.com/hr/")
ORIGIN = "https://app.example.com"
DEFAULT = ORIGIN + "/signed-out"
RULES = LogoutRules(after_logout_url="/signed-out", allowed=PREFIXES)
tricky = st.lists(st.sampled_from(list("/\\.%@:?#;&=+ \t\r\n\x00e2Ef5cC\u3002\uff0e")
                                  + ["%2e", "%2E", "%2f", "%5c", "..", "//", "%00", "%0a"]), max_size=12).map("".join)
asked_urls = (st.sampled_from(PREFIXES).flatmap(lambda p: tricky.map(lambda rest: p + rest))
              | st.sampled_from(PREFIXES).flatmap(lambda p: st.text(max_size=30).map(lambda rest: p + rest))
              | st.text(max_size=60) | tricky)


def inside(target: str, prefix: str) -> bool:
    """Where a browser (yarl; urllib for the authority) goes with `target`: the prefix's origin and under its path."""
    want, got = URL(prefix), URL(target)
    if urlsplit(target).netloc != urlsplit(prefix).netloc or got.user is not None:
        return False
    if (got.scheme, got.host, got.port) != (want.scheme, want.host, want.port):
        return False
    return got.path.startswith(want.path)  # yarl has resolved dot segments in the path


@given(asked_urls)
def test_the_after_logout_target_is_the_default_or_inside_an_allowed_prefix(asked):
    target = after_logout_target(RULES, {"return": asked}, ORIGIN)
    if target == DEFAULT:
        return
    assert target == asked
    assert any(target.startswith(p) and inside(target, p) for p in PREFIXES), target
    assert "\\" not in target and target.isprintable() and not any(c.isspace() for c in target)


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=4), st.text(max_size=30))
def test_without_an_allowed_prefix_the_target_is_always_the_routes(query, param):
    rules = LogoutRules(after_logout_url="/signed-out", allowed=(), param=param or "return")
    assert after_logout_target(rules, query, ORIGIN) == DEFAULT


# --- the logout path and the Host ---------------------------------------------------------------------------------

@given(st.text(max_size=80))
def test_a_logout_form_is_a_clean_lower_case_absolute_path(raw):
    form = logout_form(raw)
    assert form.startswith("/") and "//" not in form and form == form.lower()
    assert all(segment not in (".", "..") for segment in form.split("/"))
    assert logout_form(form) == form or "%" in form or ";" in form  # what is left decodes no further


@given(st.text(max_size=60))
def test_a_plain_host_is_only_a_host_and_a_port(value):
    host = plain_host(value)
    if host is None:
        return
    url = URL(f"http://{host}/")
    assert host == value.lower() and url.user is None and url.path == "/"
    assert url.raw_authority.lower() == host or url.raw_authority.lower() + ":80" == host
