"""Fixtures that start real servers on loopback: upstream apps, the gateway, the whole stack (Okta sandbox, legacy
apps, gateway) with browsers, and a client with no cookie jar."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from stack_support import ADMIN_TOKEN, ALICE, BOB, FAST_CACHE, HOOK_SECRET, KEYS, Browser

from gateway.config import Settings, parse
from gateway.sandbox.okta.org import OktaOrg
from gateway.sandbox.stack import AppRoute, Stack, free_port, start_stack
from gateway.server import build_app

REPO = Path(__file__).resolve().parent.parent

# Property tests: no per-example deadline (a loaded CI machine is slow, not wrong), a bounded number of examples so
# that the hostile-input suite stays within its minute, and no example database written into the checkout.
hypothesis_settings.register_profile(
    "gateway", deadline=None, max_examples=200, database=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def strict() -> bool:
    """In CI a missing dependency fails its tests instead of skipping them."""
    return os.environ.get("GATEWAY_TESTS_STRICT") == "1"


def origin(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


def route(upstream: TestServer | str, **overrides: Any) -> dict[str, Any]:
    target = upstream if isinstance(upstream, str) else origin(upstream)
    return {"name": "app", "host": "*", "path": "/", "upstream": target, **overrides}


def settings(routes: list[dict[str, Any]] | dict[str, Any], **sections: dict[str, Any]) -> Settings:
    if isinstance(routes, dict):
        routes = [routes]
    return parse({**sections, "route": routes}, "test.toml")


@pytest.fixture
def start_upstream(aiohttp_server: Any) -> Callable[..., Awaitable[TestServer]]:
    """Start an upstream app: an Application, or one handler that answers every path."""

    async def start(app: web.Application | Handler, **kwargs: Any) -> TestServer:
        if not isinstance(app, web.Application):
            handler, app = app, web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
        return await aiohttp_server(app, auto_decompress=False, **kwargs)  # type: ignore[no-any-return]

    return start


Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Peer], Awaitable[str]]]:
    """Start an upstream that is a plain asyncio peer (for malformed, slow or doubled answers); gives its origin."""
    servers: list[asyncio.base_events.Server] = []

    async def start(peer: Peer) -> str:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def start_gateway(aiohttp_server: Any) -> Callable[..., Awaitable[TestServer]]:
    """Start the gateway as it runs in production (no request decompression, handler cancellation on)."""

    async def start(routes: list[dict[str, Any]] | dict[str, Any], **sections: dict[str, Any]) -> TestServer:
        app = build_app(settings(routes, **sections))
        return await aiohttp_server(  # type: ignore[no-any-return]
            app, auto_decompress=False, access_log=None  # TestServer sets handler_cancellation=True, as run.py does
        )

    return start


@pytest.fixture
async def http() -> Any:
    """A client that keeps no cookies and decodes nothing, so tests see the bytes the gateway sent."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


def toml_text(routes: list[dict[str, Any]], **sections: dict[str, Any]) -> str:
    """A configuration file for the values the tests use (strings, numbers, booleans, lists of strings)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {value(v)}" for k, v in table.items())
    for r in routes:
        lines.append("[[route]]")
        lines.extend(f"{k} = {value(v)}" for k, v in r.items())
    return "\n".join(lines) + "\n"




class GatewayProcess:
    """`session-gateway run` in its own process, as an operator starts it."""

    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.output()}")
            try:
                with urllib.request.urlopen(self.url("/.gateway/readyz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway did not become ready within 20 s")

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> str:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output()

    def output(self) -> str:
        if self.process is None or self.process.stdout is None or self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode(errors="replace")


@pytest.fixture
def gateway_process(tmp_path: Path) -> Any:
    """Start `session-gateway run` on a config made of these routes and sections; stopped after the test."""
    started: list[GatewayProcess] = []

    def start(routes: list[dict[str, Any]], **sections: dict[str, Any]) -> GatewayProcess:
        port = free_port()
        server = {"listen": f"127.0.0.1:{port}", **sections.pop("server", {})}
        config = tmp_path / f"gateway-{len(started)}.toml"
        config.write_text(toml_text(routes, server=server, **sections))
        process = GatewayProcess(config, port)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


SANDBOX_HOST = "127.0.0.2"  # Okta's stand-in lives on another host than the gateway, as in production
API_TOKEN = "sandbox-api-token-for-tests"
BINDING_KEY = "fOhJQXD8l0yZ0hn6cx6-d9Hkcb1wOlc6L5rbYJkp6Ls="  # a Fernet key for tests only


class Sandbox:
    """A running Okta sandbox: its org (state the tests may arrange, as an Okta admin would) and its URL."""

    def __init__(self, org: Any, server: TestServer) -> None:
        self.org, self.server = org, server
        self.issuer = f"http://{SANDBOX_HOST}:{server.port}"

    def clock(self) -> float:
        """The org's clock in epoch seconds: the gateway under test keeps time with it."""
        return float(self.org.clock.now().timestamp())

    def calls(self, method: str, path_prefix: str) -> int:
        return sum(1 for c in self.org.api_calls if c.method == method and c.path.startswith(path_prefix))


@pytest.fixture
def start_sandbox(aiohttp_server: Any) -> Callable[..., Awaitable[Sandbox]]:
    from gateway.sandbox.okta.app import build_okta_app
    from gateway.sandbox.okta.org import OktaOrg

    async def start(**org_options: Any) -> Sandbox:
        port = free_port(SANDBOX_HOST)
        org = OktaOrg(issuer=f"http://{SANDBOX_HOST}:{port}", api_token=API_TOKEN, **org_options)
        server = await aiohttp_server(build_okta_app(org), host=SANDBOX_HOST, port=port)
        return Sandbox(org, server)

    return start


@pytest.fixture(autouse=True)
def okta_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/gateway.example.toml reads its secrets from the environment, as every real configuration must."""
    monkeypatch.setenv("OKTA_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", BINDING_KEY)
    monkeypatch.setenv("OKTA_HOOK_SECRET", "hook-secret-for-tests-0123456789")


# --- the whole stack: the Okta sandbox on 127.0.0.2, legacy apps, the gateway, and browsers (tests/e2e, hostile) --

StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def binding_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", KEYS[0])
    monkeypatch.setenv("OKTA_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    return KEYS


@pytest.fixture
async def start(binding_keys: list[str]) -> AsyncIterator[StartStack]:
    """Start a stack: start(AppRoute(...), ..., org_options={...}, okta={...}); org has Alice and Bob."""
    stacks: list[Stack] = []

    async def make(*apps: AppRoute, org_options: dict[str, Any] | None = None, **kwargs: Any) -> Stack:
        port = free_port("127.0.0.2")
        org = OktaOrg(issuer=f"http://127.0.0.2:{port}", api_token="sandbox-api-token-for-tests",
                      **(org_options or {}))
        org.add_user(*ALICE, first_name="Alice", last_name="Liddell")
        org.add_user(*BOB, first_name="Bob", last_name="Builder")
        kwargs.setdefault("okta", FAST_CACHE)
        stack = await start_stack(list(apps) or [AppRoute("hr")], org=org, okta_port=port, **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.close()


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[[Stack], Browser]]:
    made: list[Browser] = []

    def make(stack: Stack) -> Browser:
        browser = Browser(stack)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.close()
