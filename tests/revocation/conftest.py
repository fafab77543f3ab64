"""Fixtures of the Universal Logout tests: the clock, the fake org's JWKS and a verifier over both."""

from __future__ import annotations

import pytest
from revocation.jwt_support import AUDIENCE, ISSUER, Clock, Org

from gateway.revocation.jwks import KeySet
from gateway.revocation.tokens import TokenVerifier


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org() -> Org:
    return Org()


@pytest.fixture
def verifier(org: Org, clock: Clock) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=KeySet(org.fetch_jwks, clock=clock), clock=clock)
