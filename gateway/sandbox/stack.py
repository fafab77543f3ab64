"""The whole picture on loopback: the Okta sandbox, legacy SAML apps, and the gateway in front of them.

The demo, the end-to-end tests and the benchmarks all start it the same way. Okta lives on another address than the
gateway (127.0.0.2 against 127.0.0.1), as it lives on another host in production, so the gateway never sees Okta's
cookies. Each app is registered in the org as a SAML app whose ACS is the gateway's URL, sends the session id as
the attribute `okta_session_id` (Okta's expression `session.id`), and sits behind its own route, under a path
prefix of its own so that two apps' JSESSIONID cookies do not meet in one browser.

Secrets come as in production: the API token from $OKTA_API_TOKEN, the binding keys from $GATEWAY_BINDING_KEYS,
the hook secret from $OKTA_HOOK_SECRET and the operator token from $GATEWAY_ADMIN_TOKEN; the caller sets them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..config import Settings, parse
from ..run import handler_options
from ..server import build_app
from .legacy import LEGACY_STATE, LegacyAppConfig, LegacyState, build_legacy_app
from .okta.app import build_okta_app
from .okta.org import OktaOrg
from .run import start_app

SESSION_ATTRIBUTE = {"okta_session_id": "session.id"}
UNIVERSAL_LOGOUT = "/.gateway/okta/universal-logout"


@dataclass(frozen=True)
class AppRoute:
    """One legacy app behind one route. `prefix` is where the browser finds it on the gateway ("" for the root)."""

    name: str
    prefix: str = ""
    policy: str = "enforce"
    title: str = "Legacy HR"
    route: dict[str, Any] = field(default_factory=dict)  # more keys of the route's [[route]] table


@dataclass
class Stack:
    org: OktaOrg
    settings: Settings
    gateway_url: str
    apps: dict[str, LegacyState]
    gateway: web.Application
    runners: list[web.AppRunner]

    def url(self, path: str) -> str:
        return self.gateway_url + path

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def start_stack(
    apps: list[AppRoute], *, org: OktaOrg | None = None, okta_host: str = "127.0.0.2", okta_port: int = 0,
    gateway_host: str = "127.0.0.1", gateway_port: int = 0, okta: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None, clock: Callable[[], float] | None = None, admin: bool = False,
    store: dict[str, Any] | None = None,
) -> Stack:
    """Start everything; `org` may be made by the caller (users, policy, clock), else one is made with no users."""
    world = await start_world(apps, org=org, okta_host=okta_host, okta_port=okta_port, gateway_host=gateway_host,
                              gateway_port=gateway_port, okta=okta, server=server, admin=admin, store=store)
    try:
        settings = parse(world.config, "stack.toml")
        gateway = build_app(settings, clock=clock or world.org.clock.timestamp)
        host, port = settings.server.host, settings.server.port
        world.runners.append(await start_app(gateway, host, port, **handler_options(settings.server)))
    except BaseException:
        await world.close()
        raise
    return Stack(world.org, settings, world.gateway_url, world.apps, gateway, world.runners)


@dataclass
class World:
    """The Okta sandbox and the legacy apps, and the configuration of a gateway in front of them (a TOML table), for
    whoever starts the gateway: start_stack in this process, or a test or bench as `session-gateway run`."""

    org: OktaOrg
    gateway_url: str
    apps: dict[str, LegacyState]
    config: dict[str, Any]
    runners: list[web.AppRunner]

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()


async def start_world(
    apps: list[AppRoute], *, org: OktaOrg | None = None, okta_host: str = "127.0.0.2", okta_port: int = 0,
    gateway_host: str = "127.0.0.1", gateway_port: int = 0, okta: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None, admin: bool = False, store: dict[str, Any] | None = None,
) -> World:
    """Start the Okta sandbox and the apps; the gateway that fronts them is to listen on gateway_host:gateway_port."""
    okta_port = okta_port or free_port(okta_host)
    gateway_port = gateway_port or free_port(gateway_host)
    gateway_url = f"http://{gateway_host}:{gateway_port}"
    if org is None:
        org = OktaOrg(issuer=f"http://{okta_host}:{okta_port}", api_token=os.environ["OKTA_API_TOKEN"])
    org.add_trusted_origin(gateway_url)  # Okta's sign-out sends the browser back here after an app logout
    runners = [await start_app(build_okta_app(org), okta_host, okta_port)]
    try:
        routes, states = [], {}
        for spec in apps:
            port = free_port(gateway_host)
            app = build_legacy_app(_legacy_config(org, spec, gateway_url))
            runners.append(await start_app(app, gateway_host, port))
            states[spec.name] = app[LEGACY_STATE]
            routes.append(_route(spec, f"http://{gateway_host}:{port}"))
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        raise
    okta = dict(okta or {})
    if "universal_logout" in okta:  # its audience is this gateway's URL, known only now
        okta["universal_logout"] = {"endpoint_url": gateway_url + UNIVERSAL_LOGOUT, **okta["universal_logout"]}
    config: dict[str, Any] = {
        "server": {"listen": f"{gateway_host}:{gateway_port}", **(server or {})},
        "okta": {"org_url": org.issuer, "api_token": "${OKTA_API_TOKEN}", **okta},
        "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
        "route": routes,
        **({"admin": {"token": "${GATEWAY_ADMIN_TOKEN}"}} if admin else {}),
        **({"store": store} if store else {}),
    }
    return World(org, gateway_url, states, config, runners)


def _legacy_config(org: OktaOrg, spec: AppRoute, gateway_url: str) -> LegacyAppConfig:
    external = gateway_url + spec.prefix
    audience = f"urn:session-gateway:sandbox:{spec.name}"
    saml_app = org.add_saml_app(spec.name, f"{external}/saml/acs", audience, attributes=SESSION_ATTRIBUTE)
    return LegacyAppConfig(
        name=spec.title, external_url=external, idp_sso_url=f"{org.issuer}/app/{spec.name}/sso/saml",
        idp_certificate_pem=org.signing_certificate_pem, audience=audience, idp_issuer=saml_app.issuer,
        cookie_path=spec.prefix or "/", clock=org.clock.now,
    )


def _route(spec: AppRoute, upstream: str) -> dict[str, Any]:
    prefix = spec.prefix
    route: dict[str, Any] = {
        "name": spec.name, "host": "*", "path": prefix or "/", "upstream": upstream, "policy": spec.policy,
        "app_profile": "servlet", "acs_path": f"{prefix}/saml/acs", "sign_in_url": f"{prefix}/login",
        "logout_paths": [f"{prefix}/logout"], "app_logout_url": f"{prefix}/logout",
        "app_cookie_path": prefix or "/",
        "after_logout_url": f"{prefix}/",  # back to the app's own page, which asks for a sign-in
        "binding_cookie": {"name": f"gateway_binding_{spec.name}", "path": prefix or "/"},
    }
    if prefix:
        route["rewrite"] = "/"
    return {**route, **spec.route}
