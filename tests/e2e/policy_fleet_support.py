"""Gateways of one fleet for the policy tests: each built by build_app from one configuration (its enforcers are
what a request reads), with its operator endpoints over a RoutePolicies on its own link to one real redis-server
(gateway/store/redis_policies.py), served on a real aiohttp server."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from stack_support import ADMIN_TOKEN

from conftest import settings
from gateway.admin import Admin, Operator, RoutePolicies
from gateway.config import Settings
from gateway.enforcement.enforcer import Enforcer
from gateway.metrics import Metrics
from gateway.server import ENFORCERS, build_app
from gateway.sessions.sockets import OpenSockets
from gateway.settings import RedisSettings, StoreSettings
from gateway.store.policies import PolicyStore
from gateway.store.redis import RedisLink
from gateway.store.redis_policies import RedisPolicies

PREFIX = "/.gateway/"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sessions_route(name: str, path: str, policy: str) -> dict[str, Any]:
    return {"name": name, "host": "*", "path": path, "upstream": "http://127.0.0.1:9", "policy": policy,
            "app_profile": "servlet", "acs_path": f"{path.rstrip('/')}/saml/acs",
            "sign_in_url": f"{path.rstrip('/')}/login", "binding_cookie": {"name": f"gateway_binding_{name}"}}


def fleet_settings(*routes: dict[str, Any]) -> Settings:
    """By default hr (enforce) and wiki (off)."""
    return settings(list(routes) or [sessions_route("hr", "/", "enforce"), sessions_route("wiki", "/wiki", "off")],
                    okta={"org_url": "http://127.0.0.2:9", "api_token": "${OKTA_API_TOKEN}"},
                    binding={"keys": "${GATEWAY_BINDING_KEYS}"})


class Gateway:
    """One replica: build_app's enforcers, and the operator's endpoints over the policy store it is given."""

    def __init__(self, config: Settings, store: PolicyStore, link: RedisLink | None = None) -> None:
        self.link = link
        self.enforcers: dict[str, Enforcer] = build_app(config)[ENFORCERS]
        self.policies = RoutePolicies(config.routes.routes, self.enforcers, store)
        self.admin = Admin(Operator(ADMIN_TOKEN, PREFIX), PREFIX, config.routes.routes, self.enforcers, Metrics(),
                           None, OpenSockets(), policies=self.policies)
        self.app = web.Application()
        self.admin.add_routes(self.app.router)
        self.server: TestServer | None = None

    def url(self, path: str = "") -> str:
        assert self.server is not None
        return str(self.server.make_url(PREFIX + path))

    def modes(self) -> dict[str, str]:
        return {name: enforcer.mode.value for name, enforcer in self.enforcers.items()}

    async def close(self) -> None:
        await self.policies.close()
        if self.link is not None:
            await self.link.close()


class PolicyFleet:
    """start() another replica of one configuration on one Redis: its policies adopted before start() returns."""

    def __init__(self, aiohttp_server: Any, url: str, config: Settings) -> None:
        self._aiohttp_server, self._url, self.config = aiohttp_server, url, config
        self.gateways: list[Gateway] = []

    async def start(self, config: Settings | None = None, **redis: float) -> Gateway:
        store = StoreSettings("redis", "hr-app", 3600.0, RedisSettings(url=self._url, **redis))
        link = RedisLink(store, Metrics())
        gateway = Gateway(config or self.config, RedisPolicies(link), link)
        self.gateways.append(gateway)
        await link.start()  # as server.py does at start-up, before serving
        await gateway.policies.start()
        gateway.server = await self._aiohttp_server(gateway.app)
        return gateway

    async def close(self) -> None:
        for gateway in self.gateways:
            await gateway.close()
