"""The demo: the gateway, in one process with the built-in upstream app behind every loopback route.

When the configuration's Okta org is on a loopback address, the Okta sandbox is started there with the demo users
(the API token is whatever $OKTA_API_TOKEN says; the demo sets one when it is unset). The legacy SAML apps join in
a later issue.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from ..config import Settings
from ..server import build_app
from .run import DEMO_USERS, start_app, start_okta_sandbox, until_stopped
from .upstream import build_upstream_app


async def run_demo(settings: Settings) -> None:
    runners: list[web.AppRunner] = []
    try:
        for host, port in _loopback_upstreams(settings):
            runners.append(await start_app(build_upstream_app(), host, port))
            print(f"built-in upstream app   http://{host}:{port}/")
        okta = settings.okta
        if okta is not None and _is_loopback(okta.org_url.host or ""):
            _, runner = await start_okta_sandbox(okta.org_url.host or "", okta.org_url.port or 80, okta.api_token)
            runners.append(runner)
            print(f"Okta sandbox            {okta.org_url}/")
            for login, password in DEMO_USERS:
                print(f"  user {login}  password {password}")
        server = settings.server
        runners.append(await start_app(build_app(settings), server.host, server.port, auto_decompress=False))
        print(f"gateway                 http://{server.host}:{server.port}/")
        print(f"health                  http://{server.host}:{server.port}{server.prefix}healthz")
        for route in settings.routes.routes:
            print(f"route {route.name:<17} host {route.host} path {route.path} -> {route.upstream_origin}")
        print("Ctrl-C stops everything.", flush=True)
        await until_stopped()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def _loopback_upstreams(settings: Settings) -> list[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for route in settings.routes.routes:
        url = route.upstream
        if _is_loopback(url.host or "") and url.scheme == "http" and url.port:
            found.add((url.host or "127.0.0.1", url.port))
    return sorted(found)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
