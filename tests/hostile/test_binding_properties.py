"""Properties of the binding codec (gateway/sessions/binding.py) under hostile cookie values: whatever a browser sends
as a binding cookie never raises and never opens unless one of our keys sealed it for this route and this app
session cookie; every valid binding survives the round trip."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.fernet import Fernet
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.sessions.binding import Binding, BindingCodec, Opened

pytestmark = pytest.mark.hostile

KEYS = ["fOhJQXD8l0yZ0hn6cx6-d9Hkcb1wOlc6L5rbYJkp6Ls=", "q3Pp2pz8m7s6b5Kx9yW1vT0uR4eE8iI2oO6aA0sS3dU="]
CODEC = BindingCodec(KEYS)
ROUTE = "hr"

fields = st.text(max_size=300)  # any text, lone surrogates included
times = st.floats(min_value=0, max_value=1e10, allow_nan=False, allow_infinity=False)
bindings = st.builds(Binding, fields, fields, fields, fields, times, times)
routes = st.text(min_size=1, max_size=40)
app_cookies = st.tuples(st.text(min_size=1, max_size=40), st.text(max_size=200))


def as_sealed(b: Binding) -> Binding:
    """What a binding is once sealed: its login at most 256 characters, its times to the millisecond."""
    return replace(b, login=b.login[:256], bound_at=round(b.bound_at, 3), last_activity=round(b.last_activity, 3))


@given(st.text(max_size=1500))
def test_any_text_as_a_binding_cookie_opens_nothing_and_raises_nothing(value):
    assert CODEC.open(value) is None
    assert CODEC.open_for(value, ROUTE, "JSESSIONID", "abc") is None


@given(st.binary(max_size=3000))
def test_any_bytes_as_a_binding_cookie_open_nothing(raw):
    for value in (raw.decode("latin-1"), raw.decode("utf-8", "surrogateescape"),
                  base64.urlsafe_b64encode(raw).decode()):
        assert CODEC.open(value) is None


@given(bindings, routes, st.binary(min_size=32, max_size=32))
def test_a_binding_sealed_with_any_other_key_does_not_open(binding, route, key):
    stranger = base64.urlsafe_b64encode(key).decode()
    assume(stranger not in KEYS)
    assert CODEC.open(BindingCodec([stranger]).seal(binding, route)) is None


@given(bindings, routes)
def test_every_valid_binding_survives_the_round_trip(binding, route):
    assert CODEC.open(CODEC.seal(binding, route)) == Opened(as_sealed(binding), 0, route)
    older = BindingCodec(KEYS[1:]).seal(binding, route)  # sealed with a key that is no longer the first
    assert CODEC.open(older) == Opened(as_sealed(binding), 1, route)


@given(bindings, routes, routes, app_cookies, app_cookies)
def test_a_binding_opens_only_for_its_route_and_its_app_session_cookie(binding, route, other_route, app, other_app):
    sealed = CODEC.seal(replace(binding, app_fingerprint=CODEC.fingerprint(*app)), route)
    opened = CODEC.open_for(sealed, route, *app)
    assert opened is not None and opened.route == route and opened.binding.session_id == binding.session_id
    assert (CODEC.open_for(sealed, other_route, *app) is None) is (other_route != route)
    assert (CODEC.open_for(sealed, route, *other_app) is None) is (other_app != app)


@given(bindings, routes, st.data())
def test_a_sealed_binding_with_any_byte_changed_does_not_open(binding, route, data):
    raw = bytearray(base64.urlsafe_b64decode(CODEC.seal(binding, route)))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    assert CODEC.open(base64.urlsafe_b64encode(bytes(raw)).decode()) is None


@given(st.dictionaries(st.sampled_from(["sid", "uid", "login", "fp", "at", "last", "r", "x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                      st.integers(), max_size=2))))
def test_a_genuine_token_with_any_body_raises_nothing(session):
    # only a holder of our key can make these; whatever is inside, the codec answers rather than raise
    token = Fernet(KEYS[0]).encrypt(json.dumps({"created": 1, "session": session}).encode()).decode()
    opened = CODEC.open(token)
    if opened is not None:
        assert all(isinstance(v, str) for v in (opened.binding.session_id, opened.binding.user_id,
                                                opened.binding.login, opened.binding.app_fingerprint))
        assert opened.route is None or isinstance(opened.route, str)
        assert CODEC.open_for(token, ROUTE, "JSESSIONID", "abc") is None or opened.route == ROUTE
