"""gateway/proxy/headers.py: the header rules of the proxy, both directions, with plain tuples."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.proxy.headers import (
    HOP_BY_HOP,
    NEVER_HOP_BY_HOP,
    WEBSOCKET_OWN,
    connection_tokens,
    forwarded_headers,
    is_trusted,
    request_headers_for_upstream,
    response_headers_for_client,
)

REPO = Path(__file__).resolve().parent.parent.parent
LOCAL = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
RFC9110_HOP_BY_HOP = ("Connection", "Proxy-Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade")


def upstream(headers: Sequence[tuple[str, str]], **options: Any) -> list[tuple[str, str]]:
    """request_headers_for_upstream with plain defaults: an untrusted peer, plain http."""
    args: dict[str, Any] = {"peer": "203.0.113.7", "scheme": "http", "host": "app.example.com",
                            "upstream_host": "127.0.0.1:9000", "preserve_host": False, "trusted_proxies": ()}
    args.update(options)
    return request_headers_for_upstream(headers, **args)


def values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def names(headers: Sequence[tuple[str, str]]) -> list[str]:
    return [k.lower() for k, _ in headers]


# --- hop-by-hop, request direction ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", RFC9110_HOP_BY_HOP)
def test_rfc9110_hop_by_hop_headers_are_not_sent_upstream(name):
    out = upstream([(name, "x"), ("Accept", "*/*")])
    assert values(out, name) == [] and values(out, "Accept") == ["*/*"]


@pytest.mark.parametrize("name", ["Trailer", "Proxy-Authorization", "Proxy-Authenticate"])
def test_other_hop_by_hop_headers_are_not_sent_upstream(name):
    assert values(upstream([(name, "x")]), name) == []


def test_hop_by_hop_names_are_case_insensitive_upstream():
    out = upstream([("TRANSFER-ENCODING", "chunked"), ("keep-alive", "timeout=5"), ("uPgRaDe", "h2c")])
    assert {"transfer-encoding", "keep-alive", "upgrade"}.isdisjoint(names(out))


def test_headers_named_by_connection_are_not_sent_upstream():
    out = upstream([("Connection", "close, X-Internal"), ("X-Internal", "1"), ("X-Other", "2")])
    assert values(out, "X-Internal") == [] and values(out, "X-Other") == ["2"]


def test_connection_tokens_are_case_insensitive_upstream():
    out = upstream([("connection", " x-INTERNAL ,close"), ("X-Internal", "1")])
    assert values(out, "X-Internal") == []


def test_several_connection_headers_all_count_upstream():
    out = upstream([("Connection", "X-A"), ("Connection", "X-B"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")])
    assert names(out)[:1] == ["x-c"] and values(out, "X-A") == values(out, "X-B") == []


def test_end_to_end_headers_are_sent_upstream_in_order():
    given = [("Accept", "text/html"), ("Cookie", "a=1"), ("Authorization", "Bearer t"), ("Content-Type", "a/b")]
    assert upstream(given)[:4] == given


def test_framing_is_left_to_the_upstream_client():
    out = upstream([("Content-Length", "3"), ("Transfer-Encoding", "chunked"), ("Accept", "*/*")])
    assert values(out, "Content-Length") == values(out, "Transfer-Encoding") == []


@pytest.mark.parametrize("name", sorted(NEVER_HOP_BY_HOP))
def test_connection_never_removes_framing_routing_or_the_gateways_own_headers(name):
    out = upstream([("Connection", f"close, {name.title()}, X-A"), (name, "v"), ("X-A", "1")], drop=frozenset())
    assert values(out, "X-A") == []
    assert connection_tokens([("Connection", name.upper())]) == frozenset()
    answer = response_headers_for_client([("Connection", name), (name, "v"), ("X-A", "1")])
    if name != "transfer-encoding":  # hop-by-hop itself: the gateway frames the answer
        assert values(answer, name) == ["v"]


def test_repeated_request_headers_stay_apart_and_in_order():
    out = upstream([("X-Tag", "a"), ("Accept", "*/*"), ("X-Tag", "b")])
    assert out[:3] == [("X-Tag", "a"), ("Accept", "*/*"), ("X-Tag", "b")]


def test_drop_removes_named_headers():
    given = [("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "chat")]
    out = upstream(given, drop=WEBSOCKET_OWN)
    assert values(out, "Sec-WebSocket-Key") == values(out, "Sec-WebSocket-Version") == []
    assert values(out, "Sec-WebSocket-Protocol") == ["chat"]


def test_drop_works_alongside_connection_tokens():
    out = upstream([("Connection", "X-A"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")], drop=frozenset({"x-b"}))
    assert values(out, "X-A") == values(out, "X-B") == [] and values(out, "X-C") == ["3"]


# --- Expect and Host ------------------------------------------------------------------------------------------


def test_expect_is_never_sent_upstream():
    assert values(upstream([("Expect", "100-continue")]), "Expect") == []
    assert values(upstream([("EXPECT", "100-continue")]), "Expect") == []


def test_host_is_replaced_by_the_upstream_host():
    out = upstream([("Host", "app.example.com"), ("Accept", "*/*")])
    assert values(out, "Host") == ["127.0.0.1:9000"]


def test_host_is_kept_with_preserve_host():
    out = upstream([("Host", "app.example.com:8443")], host="app.example.com:8443", preserve_host=True)
    assert values(out, "Host") == ["app.example.com:8443"]


def test_preserve_host_without_a_client_host_uses_the_upstream_host():
    assert values(upstream([], host="", preserve_host=True), "Host") == ["127.0.0.1:9000"]


def test_several_client_host_headers_become_one():
    out = upstream([("Host", "a.example.com"), ("host", "b.example.com")])
    assert values(out, "Host") == ["127.0.0.1:9000"]


# --- X-Forwarded-* --------------------------------------------------------------------------------------------


FORGED = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test")]


def test_untrusted_peer_forged_forwarded_headers_are_replaced():
    out = upstream(FORGED, peer="203.0.113.7", scheme="http", host="app.example.com", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["203.0.113.7"]
    assert values(out, "X-Forwarded-Proto") == ["http"]
    assert values(out, "X-Forwarded-Host") == ["app.example.com"]


def test_forged_forwarded_headers_in_other_case_are_replaced_too():
    out = upstream([("x-forwarded-for", "6.6.6.6"), ("X-FORWARDED-HOST", "evil.test")], peer="203.0.113.7")
    assert values(out, "X-Forwarded-For") == ["203.0.113.7"] and values(out, "X-Forwarded-Host") == ["app.example.com"]


def test_without_trusted_proxies_nobody_is_trusted():
    out = upstream(FORGED, peer="127.0.0.1", trusted_proxies=())
    assert values(out, "X-Forwarded-For") == ["127.0.0.1"]


def test_trusted_peer_forwarded_for_is_extended():
    out = upstream([("X-Forwarded-For", "1.2.3.4")], peer="127.0.0.1", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]


def test_trusted_peer_several_forwarded_for_headers_are_joined_in_order():
    given = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8, 9.9.9.9")]
    out = upstream(given, peer="127.0.0.1", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1"]


def test_trusted_peer_proto_and_host_are_kept():
    out = upstream(FORGED, peer="127.0.0.1", scheme="http", host="inner:8080", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-Proto") == ["https"] and values(out, "X-Forwarded-Host") == ["evil.test"]


def test_trusted_peer_without_forwarded_headers_gets_ours():
    out = upstream([], peer="127.0.0.1", scheme="https", host="app.example.com", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(out, "X-Forwarded-Proto") == ["https"] and values(out, "X-Forwarded-Host") == ["app.example.com"]


def test_ipv6_trusted_peer():
    out = upstream([("X-Forwarded-For", "2001:db8::1")], peer="::1", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["2001:db8::1, ::1"]


def test_ipv6_untrusted_peer():
    out = upstream([("X-Forwarded-For", "6.6.6.6")], peer="2001:db8::7", trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["2001:db8::7"]


def test_a_network_in_trusted_proxies():
    nets = (ipaddress.ip_network("10.0.0.0/8"),)
    assert values(upstream([("X-Forwarded-For", "1.2.3.4")], peer="10.20.30.40", trusted_proxies=nets),
                  "X-Forwarded-For") == ["1.2.3.4, 10.20.30.40"]
    assert values(upstream([("X-Forwarded-For", "1.2.3.4")], peer="11.0.0.1", trusted_proxies=nets),
                  "X-Forwarded-For") == ["11.0.0.1"]


def test_peer_none_is_unknown_and_untrusted():
    out = upstream(FORGED, peer=None, trusted_proxies=LOCAL)
    assert values(out, "X-Forwarded-For") == ["unknown"] and values(out, "X-Forwarded-Host") == ["app.example.com"]


def test_no_forwarded_host_without_a_host():
    out = upstream([], host="")
    assert values(out, "X-Forwarded-Host") == []


def test_forwarded_headers_are_sent_once_each():
    out = upstream(FORGED + FORGED, peer="127.0.0.1", trusted_proxies=LOCAL)
    assert [names(out).count(n) for n in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "host")] == [
        1, 1, 1, 1]


def test_forwarded_headers_directly():
    out = forwarded_headers([], peer="192.0.2.1", scheme="https", host="h", trusted_proxies=())
    assert out == [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "h")]


@pytest.mark.parametrize(("peer", "trusted"), [("127.0.0.1", True), ("::1", True), ("127.0.0.2", False),
                                               (None, False), ("", False), ("not-an-ip", False), ("[::1]", False)])
def test_is_trusted(peer, trusted):
    assert is_trusted(peer, LOCAL) is trusted


def test_nobody_is_trusted_by_an_empty_list():
    assert is_trusted("127.0.0.1", ()) is False


# --- hop-by-hop, response direction ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RFC9110_HOP_BY_HOP)
def test_rfc9110_hop_by_hop_headers_are_not_sent_to_the_client(name):
    out = response_headers_for_client([("Content-Type", "text/plain"), (name, "x")])
    assert out == [("Content-Type", "text/plain")]


def test_hop_by_hop_names_are_case_insensitive_downstream():
    out = response_headers_for_client([("KEEP-ALIVE", "timeout=5"), ("transfer-encoding", "chunked"), ("ETag", "1")])
    assert out == [("ETag", "1")]


def test_headers_named_by_connection_are_not_sent_to_the_client():
    out = response_headers_for_client([("Connection", "X-Debug"), ("x-debug", "1"), ("ETag", "1")])
    assert out == [("ETag", "1")]


def test_several_connection_headers_all_count_downstream():
    given = [("connection", "X-A"), ("CONNECTION", "x-b, close"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")]
    assert response_headers_for_client(given) == [("X-C", "3")]


def test_two_set_cookie_headers_stay_apart_and_in_order():
    given = [("Set-Cookie", "a=1; Path=/"), ("Content-Type", "text/html"), ("Set-Cookie", "b=2; HttpOnly")]
    assert response_headers_for_client(given) == given


def test_set_cookie_stays_apart_when_hop_by_hop_headers_are_removed():
    given = [("Set-Cookie", "a=1"), ("Connection", "keep-alive"), ("Set-Cookie", "b=2"), ("Keep-Alive", "timeout=5")]
    assert response_headers_for_client(given) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_response_without_hop_by_hop_headers_is_unchanged():
    given = [("Content-Length", "5"), ("Content-Type", "text/plain")]
    assert response_headers_for_client(given) == given


# --- connection_tokens ----------------------------------------------------------------------------------------


def test_connection_tokens():
    given = [("Connection", "Close, X-A ,, "), ("connection", "KEEP-ALIVE"), ("X-Connection", "X-Z")]
    assert connection_tokens(given) == frozenset({"close", "x-a", "keep-alive"})


def test_hop_by_hop_set_is_lower_case():
    assert all(name == name.lower() for name in HOP_BY_HOP | WEBSOCKET_OWN)


# --- purity ---------------------------------------------------------------------------------------------------


def test_headers_module_imports_no_aiohttp():
    code = "import sys, gateway.proxy.headers; print(sorted(m for m in sys.modules if 'aiohttp' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_other_client_address_headers_are_dropped_unless_from_a_trusted_proxy():
    sent = [("Forwarded", "for=6.6.6.6"), ("X-Real-IP", "6.6.6.6")]
    from_client = upstream(sent)
    assert values(from_client, "Forwarded") == [] and values(from_client, "X-Real-IP") == []
    from_proxy = upstream(sent, peer="127.0.0.1", trusted_proxies=LOCAL)
    assert values(from_proxy, "Forwarded") == ["for=6.6.6.6"] and values(from_proxy, "X-Real-IP") == ["6.6.6.6"]
