"""headers.py's rules, each now one pass over the headers, give what the two- and three-pass rules they replaced
gave (kept below as the reference), over arbitrary header lists."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import AnyStr

from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.headers import (
    _CONNECTION_EITHER,
    _HOP_BY_HOP_EITHER,
    _NOT_FORWARDED_FROM_CLIENTS,
    _NOT_FORWARDED_UP,
    _PLAIN_CONNECTION,
    HOP_BY_HOP,
    NEVER_HOP_BY_HOP,
    WEBSOCKET_OWN,
    connection_tokens,
    is_trusted,
    request_headers_for_upstream,
    response_headers_for_client,
)

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)
NAMES = sorted(HOP_BY_HOP | NEVER_HOP_BY_HOP | WEBSOCKET_OWN | {"accept", "x-custom", "expect"})
name = st.one_of(st.sampled_from(NAMES).flatmap(lambda n: st.sampled_from([n, n.upper(), n.title()])),
                 st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                         min_size=1, max_size=12))
value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
connection_value = st.lists(st.one_of(name, st.sampled_from(["close", "keep-alive", " ", ""])), max_size=6).map(
    ", ".join)
header_list = st.lists(st.one_of(st.tuples(name, value), st.tuples(st.just("Connection"), connection_value)),
                       max_size=16)
drops = st.sampled_from([frozenset(), frozenset({"cookie"}), WEBSOCKET_OWN, WEBSOCKET_OWN | {"cookie"}])


# --- the rules as they were (main 634eed2) ---------------------------------------------------------------------

@functools.cache
def _reference_skip_set(trusted: bool, drop: frozenset[str]) -> frozenset[str]:
    return (_NOT_FORWARDED_UP if trusted else _NOT_FORWARDED_FROM_CLIENTS) | drop


def _first(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def reference_request_headers(headers: Sequence[tuple[str, str]], *, peer: str | None, scheme: str, host: str,
                              upstream_host: str, preserve_host: bool, trusted_proxies: Sequence[ipaddress.IPv4Network],
                              drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    trusted = is_trusted(peer, trusted_proxies)
    named = connection_tokens(headers)
    skip = _reference_skip_set(trusted, drop)
    if named:
        skip = skip | named
    out = [(k, v) for k, v in headers if k.lower() not in skip]
    out.append(("Host", host if preserve_host and host else upstream_host))
    prior_for = [v for k, v in headers if k.lower() == "x-forwarded-for"] if trusted else []
    chain = ", ".join([*prior_for, peer or "unknown"])
    proto = _first(headers, "x-forwarded-proto") if trusted else None
    fhost = _first(headers, "x-forwarded-host") if trusted else None
    out.extend([("X-Forwarded-For", chain), ("X-Forwarded-Proto", proto or scheme)])
    if fhost or host:
        out.append(("X-Forwarded-Host", fhost or host))
    return out


def reference_response_headers(headers: Sequence[tuple[AnyStr, AnyStr]]) -> list[tuple[AnyStr, AnyStr]]:
    kept = [h for h in headers if h[0].lower() not in _HOP_BY_HOP_EITHER]
    if len(kept) == len(headers):
        return kept
    values = [v for k, v in headers if k.lower() in _CONNECTION_EITHER]
    if all(v.lower() in _PLAIN_CONNECTION for v in values):
        return kept
    raw = isinstance(values[0], bytes)
    named: Iterable[str | bytes] = connection_tokens(
        [("Connection", v.decode("latin-1") if isinstance(v, bytes) else v) for v in values]) - HOP_BY_HOP
    if raw:
        named = frozenset(n.encode("latin-1") for n in named)  # type: ignore[union-attr]
    return [h for h in kept if h[0].lower() not in named]


# --- the properties --------------------------------------------------------------------------------------------

@given(header_list, st.sampled_from(["203.0.113.7", "10.1.2.3", None]), st.booleans(), drops,
       st.sampled_from(["app.example", ""]))
def test_request_headers_are_what_the_reference_gives(headers, peer, preserve_host, drop, host):
    options = {"peer": peer, "scheme": "https", "host": host, "upstream_host": "up:80",
               "preserve_host": preserve_host, "trusted_proxies": TRUSTED, "drop": drop}
    assert request_headers_for_upstream(headers, **options) == reference_request_headers(headers, **options)


@given(header_list)
def test_response_headers_are_what_the_reference_gives_as_text_and_as_bytes(headers):
    assert response_headers_for_client(headers) == reference_response_headers(headers)
    raw = [(k.encode(), v.encode()) for k, v in headers]
    assert response_headers_for_client(raw) == reference_response_headers(raw)
