"""The emulated org's aiohttp Application: the /api/v1 middleware and routes, the browser pages, and cleanup."""

from __future__ import annotations

from aiohttp import web

from .api import add_api_routes, api_middleware
from .common import ORG
from .org import OktaOrg
from .pages import add_page_routes
from .universal_logout import add_logout_routes


def build_okta_app(org: OktaOrg) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[ORG] = org
    add_api_routes(app.router)
    add_page_routes(app.router)
    add_logout_routes(app.router)
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    await app[ORG].close()
