"""The request id: chosen when the gateway's handler starts, sent upstream, returned on every answer.

A trusted proxy's well-formed X-Request-Id is kept (headers.py has the rule), so that one id follows the request
from the edge to the app; otherwise the gateway makes one. Either way it is `logs.current`'s for the request's
lines, the upstream gets it on the proxied request and the WebSocket upgrade (`upstream_headers`), and the client
gets it on whatever the gateway's handlers answer: the app's answer, the gateway's own pages, the enforcer's
redirects (`stamp`: dispatch.py's handlers stamp what they return or raise, the forwarders what they stream). An
`on_response_prepare` hook would see every answer in one place, at twice the cost (7,400 instructions a request
under callgrind, against 3,300 for a stamp).

The stamp also closes the connection of every answer from a graceful stop on (`Stop`): an `on_response_prepare`
hook that did so cost 6,400 instructions a request under callgrind (433,400 with policy off, 427,000 without it).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from ..logs import REQUEST_ID_HEADER, RequestLog, begin, new_request_id
from ..settings import IPNetwork
from .headers import client_address, is_trusted, well_formed_request_id
from .relayed import RelayedAnswer


class Stop:
    """Whether the gateway is stopping (run.py's graceful stop sets it, through `Health.stopping`). From then on
    every answer stamped closes its connection: a client that keeps one open (or a balancer's pooled connection to
    this pod) reconnects, and reaches another replica, rather than go on sending here until the listener closes
    and its next request is lost unanswered. A WebSocket's 101 is left alone: its 1001 comes."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked = False


def begin_request(request: web.Request, trusted_proxies: Sequence[IPNetwork]) -> RequestLog:
    """The request's id and the fields every line about it carries, from now on in this task."""
    peer = request.remote
    if trusted_proxies and is_trusted(peer, trusted_proxies):
        given = request.headers.get(REQUEST_ID_HEADER)
        request_id = given if given is not None and well_formed_request_id(given) else new_request_id()
        client = client_address(peer, request.headers.items(), trusted_proxies)
    else:
        request_id, client = new_request_id(), peer or "-"
    return begin(request_id, client, request.method, request.raw_path)


def stamp(response: web.StreamResponse, entry: RequestLog | None, stop: Stop | None = None) -> web.StreamResponse:
    """The answer with the request's id on it (replacing any the app sent) and, once `stop` is asked, closing its
    connection; unless its head is already sent: the forwarders stamp what they stream before they send it."""
    if response.prepared:
        return response
    close = stop is not None and stop.asked and not isinstance(response, web.WebSocketResponse)
    if isinstance(response, RelayedAnswer):  # the app's answer: its headers stay bytes
        response.stamp(entry.request_id if entry is not None else None, close)
        return response
    if entry is not None:
        response.headers[REQUEST_ID_HEADER] = entry.request_id
    if close:
        response.force_close()
        response.headers["Connection"] = "close"
    return response
