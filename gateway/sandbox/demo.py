"""The demo: the gateway, in one process with the built-in upstream app behind every loopback route.

For now it shows the proxy; the Okta sandbox and the legacy SAML apps join it in later issues.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal

from aiohttp import web

from ..config import Settings
from ..server import build_app
from .upstream import build_upstream_app


async def run_demo(settings: Settings) -> None:
    runners: list[web.AppRunner] = []
    try:
        for host, port in _loopback_upstreams(settings):
            runners.append(await _start(build_upstream_app(), host, port))
            print(f"built-in upstream app   http://{host}:{port}/")
        server = settings.server
        runners.append(await _start(build_app(settings), server.host, server.port, auto_decompress=False))
        print(f"gateway                 http://{server.host}:{server.port}/")
        print(f"health                  http://{server.host}:{server.port}{server.prefix}healthz")
        for route in settings.routes.routes:
            print(f"route {route.name:<17} host {route.host} path {route.path} -> {route.upstream_origin}")
        print("Ctrl-C stops everything.", flush=True)
        await _until_stopped()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def _loopback_upstreams(settings: Settings) -> list[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for route in settings.routes.routes:
        url = route.upstream
        try:
            loopback = ipaddress.ip_address(url.host or "").is_loopback
        except ValueError:
            loopback = url.host == "localhost"
        if loopback and url.scheme == "http" and url.port:
            found.add((url.host or "127.0.0.1", url.port))
    return sorted(found)


async def _start(app: web.Application, host: str, port: int, **kwargs: object) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, **kwargs)  # type: ignore[arg-type]
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
