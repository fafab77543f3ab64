"""Which strings may reach an Okta API URL: Okta's own id forms and nothing else."""

from __future__ import annotations

import pytest

from gateway.okta.ids import is_session_id, is_user_id


@pytest.mark.parametrize("good",
                         ["102zS5WxhaCQ0C2ywWz-Y7Y3w", "101W_juydrDRByB7fUdRyE2JQ", "idxffK-esRDSrC5m0ly-Kma9A"])
def test_okta_session_ids_pass(good):
    assert is_session_id(good)


@pytest.mark.parametrize(
    "hostile",
    [
        "../users/me", "%2e%2e", "102/../../users/me", "me", "", "102" + "a" * 10_000, "idx" + "é" * 22,
        "idxffK-esRDSrC5m0ly-Kma9A\n", "idxffK-esRDSrC5m0ly-Kma9A?x=1", "idxffK-esRDSrC5m0ly-Kma9A/lifecycle",
        "abcffK-esRDSrC5m0ly-Kma9A", "idx%2F", None, 102,
    ],
)
def test_anything_else_is_no_session(hostile):
    assert not is_session_id(hostile)


def test_user_ids():
    assert is_user_id("00u0abcdefGHIJKLMNOP")
    assert not is_user_id("00u0abcdefGHIJKLMNO/")
    assert not is_user_id("../../../api/v1/users")
