"""Health: `healthz` (the process answers) and `readyz` (it can serve: upstream pools up, Okta accepting our token).

Readiness stays honest about the Okta token: `watch_credentials` checks it now and then, and a rejected token fails
`readyz` until Okta accepts it again. A shared store (Redis) is shown (`"store": "up"` or `"away"`) but never fails
readiness: every replica shares one Redis, so failing on it would take the whole app out of its load balancer for a
Redis blip, while the gateway serves safely without it (README: "Running several replicas").
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .okta.client import OktaClient
from .proxy.upstream import UpstreamPools
from .store.redis import RedisLink

_CREDENTIALS_RECHECK = (30.0, 300.0)  # seconds between checks of our Okta token: while in doubt, while good


class Health:
    def __init__(self, pools: UpstreamPools, okta: OktaClient | None, routes: int,
                 store: RedisLink | None = None) -> None:
        self._pools, self._okta, self._routes, self._store = pools, okta, routes, store
        self.stopping = False  # set at SIGTERM: readyz answers 503 at once, so that load balancers stop sending

    def follow(self, pools: UpstreamPools, routes: int) -> None:
        """A reload's generation: its pools and routes."""
        self._pools, self._routes = pools, routes

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = ["stopping"] if self.stopping else []
        if not self._pools.ready:
            problems.append("upstream pools are not up")
        if self._okta is not None and self._okta.credentials_ok is False:
            problems.append("Okta rejects the gateway's API token")
        status = "stopping" if self.stopping else "not ready" if problems else "ready"
        body: dict[str, object] = {"status": status, "routes": self._routes}
        if self._store is not None:
            body["store"] = "up" if self._store.up else "away"
        if problems:
            body["problems"] = problems
        return web.json_response(body, status=503 if problems else 200, headers={"Cache-Control": "no-store"})


async def watch_credentials(client: OktaClient) -> None:
    """Keep readiness honest about our Okta token: a rejected token fails /readyz until Okta accepts it again."""
    while True:
        ok = await client.check_credentials()
        await asyncio.sleep(_CREDENTIALS_RECHECK[1] if ok else _CREDENTIALS_RECHECK[0])
