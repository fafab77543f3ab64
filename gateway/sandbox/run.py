"""Serving the sandboxes from the command line: start apps in this loop, print where they are, stop on a signal."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from typing import Any

from aiohttp import web

DEMO_USERS = (("alice@example.com", "Alice-demo-1"), ("bob@example.com", "Bob-demo-2"))


async def start_app(app: web.Application, host: str, port: int, **kwargs: Any) -> web.AppRunner:
    """Serve `app` on host:port; `kwargs` go to aiohttp's runner (for the gateway: `run.handler_options`)."""
    runner = web.AppRunner(app, **{"access_log": None, "handler_cancellation": True, **kwargs})
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def start_okta_sandbox(
    host: str, port: int, api_token: str, engine: str = "identity"
) -> tuple[Any, web.AppRunner]:
    """An emulated Okta org with the demo users, serving on host:port; returns (org, runner)."""
    from .okta.app import build_okta_app
    from .okta.org import OktaOrg

    org = OktaOrg(issuer=f"http://{host}:{port}", api_token=api_token, engine=engine)  # type: ignore[arg-type]
    for login, password in DEMO_USERS:
        org.add_user(login, password)
    return org, await start_app(build_okta_app(org), host, port)


async def run_okta_sandbox(host: str, port: int, engine: str) -> None:
    token = os.environ.get("OKTA_API_TOKEN") or secrets.token_urlsafe(24)
    _, runner = await start_okta_sandbox(host, port, token, engine)
    try:
        print(f"Okta sandbox ({engine} engine)  http://{host}:{port}/")
        print("API token: $OKTA_API_TOKEN" if os.environ.get("OKTA_API_TOKEN") else f"API token: {token}")
        for login, password in DEMO_USERS:
            print(f"user {login}  password {password}")
        print("Ctrl-C stops it.", flush=True)
        await until_stopped()
    finally:
        await runner.cleanup()
