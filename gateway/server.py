"""Build the aiohttp application: the gateway's own endpoints under its prefix, and the proxy for everything else.

The proxy is one catch-all handler rather than a route per app: matching is done by our own compiled route table
(gateway/routing.py), which knows hosts, wildcards and longest prefixes, and the Expect handler is a no-op so that
`100 Continue` is sent by the forwarder only once the request is known to be acceptable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import answers
from .config import Settings
from .proxy.http import Forwarder, error_response
from .proxy.upstream import UpstreamPools
from .proxy.websocket import WebSocketForwarder, is_websocket_upgrade

log = logging.getLogger("gateway")

SETTINGS = web.AppKey("settings", Settings)
POOLS = web.AppKey("pools", UpstreamPools)


def build_app(settings: Settings) -> web.Application:
    app = web.Application(handler_args={"max_field_size": 16384, "max_line_size": 16384})
    pools = UpstreamPools(settings.routes.routes, settings.proxy)
    app[SETTINGS] = settings
    app[POOLS] = pools
    app.cleanup_ctx.append(_pools_ctx)

    prefix = settings.server.prefix
    app.router.add_get(prefix + "healthz", healthz, allow_head=True)
    app.router.add_get(prefix + "readyz", readyz, allow_head=True)
    app.router.add_route("*", prefix + "{tail:.*}", not_found)
    app.router.add_route("*", "/{tail:.*}", _proxy_handler(settings, pools), expect_handler=_expect_later)
    return app


async def _pools_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[POOLS].start()
    yield
    await app[POOLS].close()


def _proxy_handler(settings: Settings, pools: UpstreamPools) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    table = settings.routes
    http = Forwarder(pools, settings.server)
    ws = WebSocketForwarder(pools, settings.server, settings.proxy)

    async def proxy(request: web.Request) -> web.StreamResponse:
        route = table.match(request.headers.get("Host", ""), request.path)
        if route is None:
            return error_response(request, 404, answers.NO_ROUTE)
        if is_websocket_upgrade(request):
            return await ws(request, route)
        return await http(request, route)

    return proxy


async def _expect_later(request: web.Request) -> None:
    """aiohttp would answer `100 Continue` before the handler runs; the forwarder decides instead."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[POOLS].ready
    body = {"status": "ready" if ready else "starting", "routes": len(request.app[SETTINGS].routes.routes)}
    return web.json_response(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})


async def not_found(request: web.Request) -> web.Response:
    return error_response(request, 404, "No such gateway endpoint.")
