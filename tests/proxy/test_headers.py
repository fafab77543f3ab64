"""Header rules, both directions, with plain values."""

from __future__ import annotations

import ipaddress

from gateway.proxy.headers import (
    connection_tokens,
    forwarded_headers,
    request_headers_for_upstream,
    response_headers_for_client,
)

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def upstream(headers, peer="192.0.2.1", preserve_host=False, drop=frozenset()):
    return request_headers_for_upstream(
        headers, peer=peer, scheme="https", host="app.example.com", upstream_host="10.1.1.1:8080",
        preserve_host=preserve_host, trusted_proxies=TRUSTED, drop=drop,
    )


def names(headers):
    return [k.lower() for k, _ in headers]


def test_hop_by_hop_and_connection_named_headers_are_removed_going_up():
    sent = [("Connection", "keep-alive, X-Hop"), ("connection", "x-other"), ("X-Hop", "1"), ("X-Other", "2"),
            ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "keep-alive"), ("Trailer", "X"),
            ("Expect", "100-continue"), ("Accept", "*/*")]
    assert names(upstream(sent)) == ["accept", "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]


def test_host_is_the_upstreams_unless_preserved():
    assert ("Host", "10.1.1.1:8080") in upstream([("Host", "app.example.com")])
    assert ("Host", "app.example.com") in upstream([("Host", "app.example.com")], preserve_host=True)


def test_repeated_headers_stay_apart_and_in_order():
    got = response_headers_for_client([("Set-Cookie", "a=1"), ("X", "y"), ("Set-Cookie", "b=2")])
    assert got == [("Set-Cookie", "a=1"), ("X", "y"), ("Set-Cookie", "b=2")]


def test_hop_by_hop_headers_are_removed_coming_down():
    got = response_headers_for_client([("Connection", "close, X-Up"), ("X-Up", "1"), ("Keep-Alive", "t=1"),
                                       ("Transfer-Encoding", "chunked"), ("Proxy-Authenticate", "Basic"),
                                       ("Content-Type", "text/html")])
    assert got == [("Content-Type", "text/html")]


def test_untrusted_peer_cannot_forge_forwarded_headers():
    got = dict(upstream([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "http"),
                         ("X-Forwarded-Host", "evil.test")]))
    assert got["X-Forwarded-For"] == "192.0.2.1"
    assert got["X-Forwarded-Proto"] == "https"
    assert got["X-Forwarded-Host"] == "app.example.com"


def test_trusted_peer_extends_the_chain():
    sent = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "public.example.com")]
    got = dict(forwarded_headers(sent, peer="10.0.0.2", scheme="https", host="inner", trusted_proxies=TRUSTED))
    assert got == {"X-Forwarded-For": "203.0.113.7, 10.9.9.9, 10.0.0.2", "X-Forwarded-Proto": "http",
                   "X-Forwarded-Host": "public.example.com"}


def test_ipv6_peer_and_unknown_peer():
    got = dict(forwarded_headers([("X-Forwarded-For", "1.1.1.1")], peer="::1", scheme="http", host="h",
                                 trusted_proxies=TRUSTED))
    assert got["X-Forwarded-For"] == "1.1.1.1, ::1"
    got = dict(forwarded_headers([("X-Forwarded-For", "1.1.1.1")], peer=None, scheme="http", host="",
                                 trusted_proxies=TRUSTED))
    assert got == {"X-Forwarded-For": "unknown", "X-Forwarded-Proto": "http"}


def test_drop_removes_named_headers():
    assert "sec-websocket-key" not in names(upstream([("Sec-WebSocket-Key", "k")], drop=frozenset({"sec-websocket-key"})))


def test_connection_tokens_are_case_insensitive_and_merged():
    assert connection_tokens([("Connection", "Close, X-A"), ("CONNECTION", " x-b ,")]) == {"close", "x-a", "x-b"}
