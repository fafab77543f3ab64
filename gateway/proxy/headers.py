"""Header rules of the proxy, both directions.

Rules of this module:
- Pure: plain strings and tuples in and out, no aiohttp import, so every rule is tested with plain values.
- Hop-by-hop headers (RFC 9110 section 7.6.1, and those that a Connection header names) never cross the gateway.
- A Connection header never removes a header that frames, routes or gives meaning to a message, nor one the
  gateway sets or reads (`NEVER_HOP_BY_HOP`): RFC 9110 forbids naming end-to-end headers there, and honouring it
  would let a client strip Content-Length from what goes upstream (request smuggling). Such tokens are ignored.
- The gateway speaks for itself on the client side: `Expect` is answered by the gateway, and the client's framing
  (Content-Length, Transfer-Encoding) never goes upstream: the upstream client writes Content-Length or chunked
  from what it sends.
- X-Forwarded-For/-Proto/-Host: what the client sent is kept and extended only when the peer is a trusted
  proxy; from anyone else those headers are replaced, and `Forwarded` and `X-Real-IP` dropped, since they would
  otherwise be forgeable. The same reading names the client a budget is kept for (`client_address`).
- X-Request-Id: the gateway sends its own upstream, the one every log line of the request carries; a trusted
  proxy's is kept as that id when it is well formed (`well_formed_request_id`), anyone else's is replaced.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import AnyStr

from ..settings import IPNetwork

Header = tuple[str, str]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# headers a Connection header may not declare hop-by-hop: framing, routing, the gateway's own, and those whose
# absence would make the next hop read the message otherwise than the gateway did
NEVER_HOP_BY_HOP = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "cookie",
        "set-cookie",
        "authorization",
        "content-type",
        "content-encoding",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)
_NOT_FORWARDED_UP = HOP_BY_HOP | {
    "expect", "host", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"
}
MAX_REQUEST_ID = 128
# the other ways of naming a client's address, as forgeable as X-Forwarded-For when they come from a client
_NOT_FORWARDED_FROM_CLIENTS = _NOT_FORWARDED_UP | {"forwarded", "x-real-ip"}
WEBSOCKET_OWN = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"})
# the answer's headers come as text or as the bytes the upstream sent: a set of names in both spellings serves both
_HOP_BY_HOP_EITHER: frozenset[str | bytes] = HOP_BY_HOP | {name.encode() for name in HOP_BY_HOP}
_CONNECTION_EITHER: frozenset[str | bytes] = frozenset({"connection", b"connection"})
_PLAIN_CONNECTION: frozenset[str | bytes] = frozenset({"close", "keep-alive", b"close", b"keep-alive"})


def connection_tokens(headers: Iterable[Header]) -> frozenset[str]:
    """The header names that Connection headers declare hop-by-hop (`close`, `keep-alive` among them), less those
    that may never be (`NEVER_HOP_BY_HOP`)."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return frozenset(tokens) - NEVER_HOP_BY_HOP if tokens else frozenset()


def request_headers_for_upstream(
    headers: Sequence[Header],
    *,
    peer: str | None,
    scheme: str,
    host: str,
    upstream_host: str,
    preserve_host: bool,
    trusted_proxies: Sequence[IPNetwork],
    drop: frozenset[str] = frozenset(),
) -> list[Header]:
    """The headers to send upstream: the client's, less hop-by-hop ones and framing, with Host and X-Forwarded-*
    set (the upstream client adds the framing of the body it sends).

    `drop` names further headers to leave out, in lower case.
    """
    trusted = is_trusted(peer, trusted_proxies)
    skip = _skip_set(trusted, drop)
    out: list[Header] = []
    connection: list[Header] | None = None
    for name, value in headers:  # one pass: Connection, never forwarded itself, is noted on the way
        lower = name.lower()
        if lower not in skip:
            out.append((name, value))
        elif lower == "connection":
            if connection is None:
                connection = []
            connection.append(("Connection", value))
    if connection is not None and (named := connection_tokens(connection)):
        out = [h for h in out if h[0].lower() not in named]
    out.append(("Host", host if preserve_host and host else upstream_host))
    out.extend(_forwarded(headers, trusted, peer=peer, scheme=scheme, host=host))
    return out


def _skip_set(trusted: bool, drop: frozenset[str]) -> frozenset[str]:
    """The headers never forwarded, with the caller's own."""
    base = _NOT_FORWARDED_UP if trusted else _NOT_FORWARDED_FROM_CLIENTS
    return _with_dropped(base, drop) if drop else base


@functools.cache
def _with_dropped(base: frozenset[str], drop: frozenset[str]) -> frozenset[str]:
    """A handful of fixed sets (the Cookie header the enforcer replaces, the WebSocket's own): built once each."""
    return base | drop


def forwarded_headers(
    headers: Sequence[Header], *, peer: str | None, scheme: str, host: str, trusted_proxies: Sequence[IPNetwork]
) -> list[Header]:
    """X-Forwarded-For/-Proto/-Host as the upstream must see them."""
    return _forwarded(headers, is_trusted(peer, trusted_proxies), peer=peer, scheme=scheme, host=host)


def _forwarded(headers: Sequence[Header], trusted: bool, *, peer: str | None, scheme: str, host: str) -> list[Header]:
    if not trusted:
        out = [("X-Forwarded-For", peer or "unknown"), ("X-Forwarded-Proto", scheme)]
        if host:
            out.append(("X-Forwarded-Host", host))
        return out
    chain = ", ".join([*(v for k, v in headers if k.lower() == "x-forwarded-for"), peer or "unknown"])
    fhost = _first(headers, "x-forwarded-host") or host
    out = [("X-Forwarded-For", chain), ("X-Forwarded-Proto", _first(headers, "x-forwarded-proto") or scheme)]
    if fhost:
        out.append(("X-Forwarded-Host", fhost))
    return out


def response_headers_for_client(headers: Sequence[tuple[AnyStr, AnyStr]]) -> list[tuple[AnyStr, AnyStr]]:
    """The upstream's answer headers less hop-by-hop ones; repeated headers (Set-Cookie) stay apart. As text, or
    as the bytes the upstream sent (the proxy relays those, without decoding them)."""
    kept: list[tuple[AnyStr, AnyStr]] = []
    connection: list[AnyStr] | None = None
    for header in headers:  # one pass: Connection, never relayed itself, is noted on the way
        lower = header[0].lower()
        if lower not in _HOP_BY_HOP_EITHER:
            kept.append(header)
        elif lower in _CONNECTION_EITHER:
            if connection is None:
                connection = []
            connection.append(header[1])
    if connection is None:
        return kept
    named = _named_hop_by_hop(connection)
    return [h for h in kept if h[0].lower() not in named] if named else kept


def _named_hop_by_hop(values: list[AnyStr]) -> frozenset[str | bytes]:
    """The names that Connection headers of these values declare hop-by-hop beyond those that always are (most
    answers' Connection says only `close` or `keep-alive`: then none), spelled as the headers are."""
    if all(v.lower() in _PLAIN_CONNECTION for v in values):
        return frozenset()
    raw = isinstance(values[0], bytes)
    named = connection_tokens([("Connection", v.decode("latin-1") if isinstance(v, bytes) else v)
                               for v in values]) - HOP_BY_HOP
    return frozenset(name.encode("latin-1") for name in named) if raw else named


def is_trusted(peer: str | None, trusted_proxies: Sequence[IPNetwork]) -> bool:
    if not peer or not trusted_proxies:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in trusted_proxies)


def client_address(peer: str | None, headers: Iterable[Header], trusted_proxies: Sequence[IPNetwork]) -> str:
    """Who is asking: the peer, or when the peer is a trusted proxy, the last X-Forwarded-For hop that is not one
    of them (each trusted proxy appends the address it was reached from; what comes before the last untrusted hop
    is the client's to write). At most 64 characters; "-" when aiohttp knows no peer (a Unix socket)."""
    peer = peer or "-"
    if not is_trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for k, v in headers if k.lower() == "x-forwarded-for" for h in v.split(",")]
    return next((h for h in reversed(hops) if h and not is_trusted(h, trusted_proxies)), peer)[:64]


def well_formed_request_id(value: str) -> bool:
    """An X-Request-Id fit to be logged and sent on: 1 to MAX_REQUEST_ID visible ASCII characters (no space, no
    control character: nothing that could start another log line or header)."""
    return 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable() and " " not in value


def _first(headers: Sequence[Header], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None
