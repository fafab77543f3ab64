"""Okta's Session object, parsed leniently but never guessed."""

from __future__ import annotations

import pytest

from gateway.okta.model import MalformedAnswer, parse_rate_limit, parse_session, parse_time

SEED_002 = {
    "id": "101W_juydrDRByB7fUdRyE2JQ", "login": "user@example.com", "userId": "00u0abcdefGHIJKLMNOP",
    "status": "ACTIVE", "createdAt": "2016-01-03T07:02:00.000Z", "expiresAt": "2016-01-03T09:13:17.000Z",
    "lastPasswordVerification": "2016-01-03T07:02:00.000Z", "lastFactorVerification": None, "amr": ["pwd"],
    "idp": {"id": "01a2bcdef3GHIJKLMNOP", "type": "OKTA"}, "mfaActive": False,
    "_links": {"self": {"href": "https://org/api/v1/sessions/101W_juydrDRByB7fUdRyE2JQ"}},
}


def test_the_seed_example_parses():
    session = parse_session(SEED_002)
    assert (session.id, session.user_id, session.login, session.status) == (
        "101W_juydrDRByB7fUdRyE2JQ", "00u0abcdefGHIJKLMNOP", "user@example.com", "ACTIVE")
    assert session.expires_at == parse_time("2016-01-03T09:13:17.000Z") == 1451812397.0
    assert session.amr == ("pwd",) and session.idp_type == "OKTA" and session.active


def test_unknown_and_missing_optional_fields_are_tolerated():
    data = {k: SEED_002[k] for k in ("id", "userId", "status", "expiresAt")} | {"somethingNew": {"x": 1}}
    session = parse_session(data)
    assert (session.login, session.created_at, session.amr, session.idp_type) == ("", None, (), None)


@pytest.mark.parametrize("status", ["MFA_REQUIRED", "MFA_ENROLL"])
def test_mfa_states_are_not_signed_in(status):
    assert not parse_session(SEED_002 | {"status": status}).active


@pytest.mark.parametrize("broken", [[], "x", {"id": "a"}, SEED_002 | {"expiresAt": "soon"},
                                    SEED_002 | {"expiresAt": "2016-01-03T09:13:17"}, SEED_002 | {"userId": 7}])
def test_an_unusable_answer_is_malformed_not_a_session(broken):
    with pytest.raises(MalformedAnswer):
        parse_session(broken)


def test_rate_limit_headers():
    limit = parse_rate_limit({"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "12",
                              "X-Rate-Limit-Reset": "1609459200"})
    assert limit is not None and (limit.limit, limit.remaining, limit.reset_at) == (600, 12, 1609459200.0)
    assert parse_rate_limit({"X-Rate-Limit-Limit": "x"}) is None
