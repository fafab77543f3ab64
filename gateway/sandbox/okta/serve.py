"""Serve an org on host:port in the running event loop (benchmarks, the demo); the caller cleans the runner up."""

from __future__ import annotations

from aiohttp import web

from .app import build_okta_app
from .org import OktaOrg


async def serve_okta(host: str, port: int, org: OktaOrg) -> web.AppRunner:
    runner = web.AppRunner(build_okta_app(org), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
