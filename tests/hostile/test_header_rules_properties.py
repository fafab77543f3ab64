"""Properties of the header rules (gateway/proxy/headers.py) over arbitrary header lists: no exception escapes,
framing and routing headers are never dropped by a Connection header nor duplicated, hop-by-hop headers never
cross, and the gateway's own headers appear exactly once."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.headers import (
    HOP_BY_HOP,
    NEVER_HOP_BY_HOP,
    request_headers_for_upstream,
    response_headers_for_client,
)

pytestmark = pytest.mark.hostile

NAMES = sorted(HOP_BY_HOP | NEVER_HOP_BY_HOP | {"accept", "x-custom", "x-internal", "expect", "sec-websocket-key"})
name = st.one_of(
    st.sampled_from(NAMES).flatmap(lambda n: st.sampled_from([n, n.upper(), n.title()])),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1,
            max_size=12),
)
value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
connection_value = st.lists(st.one_of(name, st.sampled_from(["close", "keep-alive", " ", ""])), max_size=6).map(
    ", ".join)
header_list = st.lists(st.one_of(st.tuples(name, value), st.tuples(st.just("Connection"), connection_value)),
                       max_size=16)
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)
# headers the gateway sets itself, or whose client copy it replaces (X-Request-Id: proxy/http.py adds its own)
GATEWAYS_OWN = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}
KEPT_END_TO_END = NEVER_HOP_BY_HOP - GATEWAYS_OWN - {"content-length", "transfer-encoding", "forwarded", "x-real-ip"}


def count(headers: list[tuple[str, str]], lower: str) -> int:
    return sum(1 for k, _ in headers if k.lower() == lower)


def named_by_connection(headers: list[tuple[str, str]]) -> set[str]:
    return {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",") if t.strip()}


@given(header_list, st.sampled_from(["203.0.113.7", "10.1.2.3", None]), st.booleans())
def test_request_headers_for_upstream(headers, peer, preserve_host):
    out = request_headers_for_upstream(headers, peer=peer, scheme="https", host="app.example", upstream_host="up:80",
                                       preserve_host=preserve_host, trusted_proxies=TRUSTED)
    names = [k.lower() for k, _ in out]
    assert not set(names) & HOP_BY_HOP
    assert "content-length" not in names and "transfer-encoding" not in names  # the upstream client frames
    assert "expect" not in names
    for own in ("host", "x-forwarded-for", "x-forwarded-proto"):
        assert names.count(own) == 1, own
    assert "x-request-id" not in names  # a client's never goes upstream as it came
    for kept in KEPT_END_TO_END:  # a Connection header never removes them, nor is any added
        assert count(out, kept) == count(headers, kept), kept
    for dropped in named_by_connection(headers) - NEVER_HOP_BY_HOP:
        assert dropped not in names


@given(header_list)
def test_response_headers_for_client(headers):
    out = response_headers_for_client(headers)
    names = [k.lower() for k, _ in out]
    assert not set(names) & HOP_BY_HOP
    for kept in NEVER_HOP_BY_HOP - {"transfer-encoding"}:
        assert count(out, kept) == count(headers, kept), kept
    for dropped in named_by_connection(headers) - NEVER_HOP_BY_HOP:
        assert dropped not in names
    assert [h for h in out if h[0].lower() == "set-cookie"] == [h for h in headers if h[0].lower() == "set-cookie"]
