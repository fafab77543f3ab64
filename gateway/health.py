"""Health: `healthz` (the process answers) and `readyz` (it can serve: upstream pools up, Okta accepting our token).

Readiness stays honest about the Okta token: `watch_credentials` checks it now and then, and a rejected token fails
`readyz` until Okta accepts it again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .okta.client import OktaClient
from .proxy.upstream import UpstreamPools

_CREDENTIALS_RECHECK = (30.0, 300.0)  # seconds between checks of our Okta token: while in doubt, while good


class Health:
    def __init__(self, pools: UpstreamPools, okta: OktaClient | None, routes: int) -> None:
        self._pools, self._okta, self._routes = pools, okta, routes

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = [] if self._pools.ready else ["upstream pools are not up"]
        if self._okta is not None and self._okta.credentials_ok is False:
            problems.append("Okta rejects the gateway's API token")
        body: dict[str, object] = {"status": "not ready" if problems else "ready", "routes": self._routes}
        if problems:
            body["problems"] = problems
        return web.json_response(body, status=503 if problems else 200, headers={"Cache-Control": "no-store"})


async def watch_credentials(client: OktaClient) -> None:
    """Keep readiness honest about our Okta token: a rejected token fails /readyz until Okta accepts it again."""
    while True:
        ok = await client.check_credentials()
        await asyncio.sleep(_CREDENTIALS_RECHECK[1] if ok else _CREDENTIALS_RECHECK[0])
