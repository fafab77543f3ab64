"""Serving the sandboxes from the command line: start apps in this loop, print where they are, stop on a signal."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..server import PROXY, serve_directly

DEMO_USERS = (("alice@example.com", "Alice-demo-1"), ("bob@example.com", "Bob-demo-2"))


async def start_app(app: web.Application, host: str, port: int, **kwargs: Any) -> web.AppRunner:
    """Serve `app` on host:port; `kwargs` go to aiohttp's runner (for the gateway: `run.handler_options`)."""
    runner = web.AppRunner(app, **{"access_log": None, "handler_cancellation": True, **kwargs})
    await runner.setup()
    if PROXY in app:  # the gateway, served as run.py serves it
        serve_directly(runner)
    await web.TCPSite(runner, host, port).start()
    return runner


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, or when the GNU make that runs this process is interrupted; installed
    first thing, since a process started in the background of a non-interactive shell inherits SIGINT ignored.

    make passes SIGTERM on to the command it runs, but on SIGINT it only waits for the command to end (a Ctrl-C
    reaches the whole process group anyway); so `kill -INT <make's pid>` reaches nothing else. make's handler
    resets its SIGINT disposition to the default as it starts: under make (MAKELEVEL set, the parent named make)
    that change, seen in /proc, counts as a SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    interrupted = _make_interrupted()
    if interrupted is not None:
        async def watch() -> None:
            while not stop.is_set():
                if interrupted():
                    stop.set()
                await asyncio.sleep(0.2)

        task = loop.create_task(watch())
        stop.watching = task  # type: ignore[attr-defined]  # kept alive as long as the event
    return stop


async def until_stopped() -> None:
    await stop_on_signals().wait()


def _make_interrupted() -> Callable[[], bool] | None:
    """A check of whether the GNU make that started this process was interrupted, or None when none did."""
    parent = os.getppid()
    try:
        name = Path(f"/proc/{parent}/comm").read_text().strip()
    except OSError:
        return None
    if "MAKELEVEL" not in os.environ or name not in ("make", "gmake"):
        return None
    sigint = 1 << (signal.SIGINT - 1)
    if not (_caught_signals(parent) or 0) & sigint:
        return None  # make ignores SIGINT itself (started in a shell's background): nothing to watch for

    def interrupted() -> bool:
        return os.getppid() != parent or not (_caught_signals(parent) or 0) & sigint

    return interrupted


def _caught_signals(pid: int) -> int | None:
    """The mask of signals a process catches (SigCgt in /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


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
