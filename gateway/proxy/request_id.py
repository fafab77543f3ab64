"""The request id: chosen when the gateway's handler starts, sent upstream, returned on every answer.

A trusted proxy's well-formed X-Request-Id is kept (headers.py has the rule), so that one id follows the request
from the edge to the app; otherwise the gateway makes one. Either way it is `logs.current`'s for the request's
lines, the upstream gets it on the proxied request and the WebSocket upgrade (`upstream_headers`), and the client
gets it on whatever answers: the app's answer, the gateway's own pages, the enforcer's redirects (`returned`, an
`on_response_prepare` hook, sees every answer aiohttp sends for a handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ..logs import REQUEST_ID_HEADER, RequestLog, begin, current, new_request_id
from ..settings import IPNetwork
from .headers import client_address, is_trusted, well_formed_request_id


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


def returned(trusted_proxies: Sequence[IPNetwork]) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The hook that puts the request's id on its answer, replacing any the app sent. An answer given before the
    gateway's handler ran (aiohttp's 417 for an odd Expect) begins the request's fields there, for its access line."""

    async def put_request_id(request: web.Request, response: web.StreamResponse) -> None:
        entry = current.get() or begin_request(request, trusted_proxies)
        response.headers[REQUEST_ID_HEADER] = entry.request_id

    return put_request_id
