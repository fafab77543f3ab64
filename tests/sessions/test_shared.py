"""gateway/sessions/shared.py: an answer written for the fleet reads back as itself, and anything else in its
place (garbage, another version, NaN, a session Okta's parser would refuse) reads as no answer, never an error."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.okta.model import OktaSession
from gateway.sessions.cache import ValidationCache
from gateway.sessions.shared import MAX_LENGTH, Shared, decode, encode
from gateway.settings import CachePolicy

T0 = 1_700_000_000.25
SESSION = OktaSession("idxffK-esRDSrC5m0ly-Kma9A", "00u0abcdefGHIJKLMNOP", "a@example.com", "ACTIVE",
                      expires_at=T0 + 3600.5, created_at=T0 - 10, amr=("pwd", "mfa"), idp_type="OKTA")


def cache() -> ValidationCache:
    return ValidationCache(CachePolicy(ttl=60, negative_ttl=30, revalidate=15))


def valid(**changes: Any) -> str:
    body = json.loads(encode(cache().store_alive(SESSION, T0)))
    body.update(changes)
    return json.dumps(body)


def test_a_live_answer_reads_back_as_itself():
    entry = cache().store_alive(SESSION, T0)
    assert decode(encode(entry), SESSION.id) == Shared(SESSION, T0, T0 + 60)


def test_a_bare_answer_reads_back_as_itself():
    bare = replace(SESSION, login="", created_at=None, amr=(), idp_type=None, status="MFA_REQUIRED")
    assert decode(encode(cache().store_alive(bare, T0)), bare.id) == Shared(bare, T0, T0 + 60)


def test_a_gone_answer_reads_back_as_gone():
    assert decode(encode(cache().store_gone(SESSION.id, T0)), SESSION.id) == Shared(None, T0, T0 + 30)


def test_a_value_holds_no_session_id_and_takes_the_id_it_is_read_for():
    value = encode(cache().store_alive(SESSION, T0))
    assert SESSION.id not in value
    other = "102" + "z" * 22
    answer = decode(value, other)
    assert answer is not None and answer.session is not None and answer.session.id == other


@pytest.mark.parametrize("raw", [
    "", "garbage", "[]", "null", '"text"', "{}",
    valid(v=2), valid(v=True), valid(v="1"),
    valid(fetchedAt="soon"), valid(fetchedAt=True), valid(freshUntil=None), valid(freshUntil=T0 - 1),
    valid(fetchedAt=-5), valid(fetchedAt=10**400), valid(fetchedAt=float("inf")),
    valid(session=None), valid(session=[]), valid(session={"userId": "00u0abcdefGHIJKLMNOP"}),
    valid(session={"userId": 5, "status": "ACTIVE", "expiresAt": "2030-01-01T00:00:00.000Z"}),
    valid(session={"userId": "u", "status": "ACTIVE", "expiresAt": "yesterday"}),
    valid(session={"id": "102" + "x" * 22, "userId": "u", "status": "ACTIVE", "expiresAt": "2030-01-01T00:00:00Z"}),
    valid(gone=True),  # both a session and gone: neither
    valid(gone=False, session=None),
    '{"v":1,"fetchedAt":NaN,"freshUntil":1e9,"gone":true}',
    '{"v":1,"fetchedAt":1e9,"freshUntil":Infinity,"gone":true}',
    '{"v":1,"fetchedAt":1e9,"freshUntil":2e9,"gone":true,"pad":"' + "x" * MAX_LENGTH + '"}',
    "[" * 3000 + "]" * 3000,
    '{"v":1,"fetchedAt":' + "9" * 5000 + ',"freshUntil":2e9,"gone":true}',
])
def test_anything_else_is_no_answer(raw):
    assert decode(raw, SESSION.id) is None


@given(st.text(max_size=300))
def test_no_text_makes_decode_raise(raw):
    decode(raw, SESSION.id)


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=4), max_leaves=20))
def test_no_json_in_place_of_the_session_makes_decode_raise(session):
    decode(valid(session=session), SESSION.id)
