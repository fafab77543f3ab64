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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fleet_support import RedisFleet, start_replica
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from okta_sandbox_support import API_TOKEN, OKTA_HOST, Answer, Okta, Sandboxes, sandbox_org
from redis_support import RedisProcess
from stack_support import ADMIN_TOKEN, FAST_CACHE, HOOK_SECRET, KEYS, Browser

from gateway.config import Settings, parse
from gateway.sandbox.fleet import replica_config, replica_ports
from gateway.sandbox.stack import AppRoute, Stack, free_port, start_stack, start_world
from gateway.sandbox.toml import toml_text as write_toml
from gateway.server import build_app, serve_directly

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
        async def requests_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if await _closes_unasked(reader):
                writer.close()
                return
            await peer(reader, writer)

        server = await asyncio.start_server(requests_only, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def _closes_unasked(reader: asyncio.StreamReader) -> bool:
    """True for a connection closed before it sent a byte: readiness's TCP check (gateway/health.py), which a test's
    peer, counting connections or answering the first one, must not take for the gateway's request. Waits without
    consuming, through StreamReader's private wait (it has no public peek)."""
    if not reader._buffer and not reader.at_eof():  # type: ignore[attr-defined]
        await reader._wait_for_data("peek")  # type: ignore[attr-defined]
    return not reader._buffer  # type: ignore[attr-defined]


Action = Callable[[web.Request], Awaitable[Any]]


@pytest.fixture
def in_handler(start_upstream: Callable[..., Awaitable[TestServer]], http: Any) -> Callable[..., Awaitable[Answer]]:
    """Run `action(request)` inside a real handler on loopback, with the request as the client sent it, and answer
    what it returns (a response; anything else as JSON); gives what the client read. For the parts of the gateway
    that take an aiohttp request or write on a response."""

    async def run(action: Action, *, method: str = "GET", path: str = "/", **kwargs: Any) -> Answer:
        async def handler(request: web.Request) -> web.StreamResponse:
            result = await action(request)
            return result if isinstance(result, web.StreamResponse) else web.json_response(result)

        server = await start_upstream(handler)
        async with http.request(method, server.make_url(path), allow_redirects=False, **kwargs) as r:
            return Answer(r.status, r.headers, await r.text())

    return run


@pytest.fixture
def start_gateway(aiohttp_server: Any) -> Callable[..., Awaitable[TestServer]]:
    """Start the gateway as it runs in production (no request decompression, handler cancellation on)."""

    async def start(routes: list[dict[str, Any]] | dict[str, Any], **sections: dict[str, Any]) -> TestServer:
        app = build_app(settings(routes, **sections))
        server: TestServer = await aiohttp_server(
            app, auto_decompress=False, access_log=None  # TestServer sets handler_cancellation=True, as run.py does
        )
        assert server.runner is not None
        serve_directly(server.runner)  # no connection has been accepted yet: every one is served as run.py serves
        return server

    return start


@pytest.fixture
async def http() -> Any:
    """A client that keeps no cookies and decodes nothing, so tests see the bytes the gateway sent."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


def toml_text(routes: list[dict[str, Any]], **sections: dict[str, Any]) -> str:
    """A configuration file of these sections and routes (gateway/sandbox/toml.py writes it)."""
    return write_toml({**sections, "route": routes})


class GatewayProcess:
    """`session-gateway run` in its own process, as an operator starts it."""

    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, *, ready: bool = True) -> None:
        """Start it and wait until readyz answers 200 (`ready=False`: until healthz answers, for a gateway that is
        not meant to be ready)."""
        self.launch()
        self.wait(ready=ready)

    def launch(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def wait(self, *, ready: bool = True) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.output()}")
            try:
                with urllib.request.urlopen(self.url("/.gateway/readyz" if ready else "/.gateway/healthz"),
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the gateway did not {'become ready' if ready else 'answer'} within 20 s")

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
    """Start `session-gateway run` on a config made of these routes and sections (`wait=False`: return once it
    is launched, `GatewayProcess.wait` waits); stopped after the test."""
    started: list[GatewayProcess] = []

    def start(routes: list[dict[str, Any]], *, ready: bool = True, wait: bool = True,
              **sections: dict[str, Any]) -> GatewayProcess:
        port = free_port()
        # stop at once on the SIGTERM that ends the test, unless the test asks for a stop delay
        server = {"listen": f"127.0.0.1:{port}", "stop_delay": 0, **sections.pop("server", {})}
        config = tmp_path / f"gateway-{len(started)}.toml"
        config.write_text(toml_text(routes, server=server, **sections))
        process = GatewayProcess(config, port)
        started.append(process)
        if wait:
            process.start(ready=ready)
        else:
            process.launch()
        return process

    yield start
    for process in started:
        process.stop()


BINDING_KEY = "fOhJQXD8l0yZ0hn6cx6-d9Hkcb1wOlc6L5rbYJkp6Ls="  # a Fernet key for tests only


# --- the Okta sandbox on OKTA_HOST (tests/sandbox/okta_sandbox_support.py): every test that needs one gets it here --

StartOkta = Callable[..., Awaitable[Okta]]


@pytest.fixture
async def start_okta_sandbox(aiohttp_server: Any) -> AsyncIterator[StartOkta]:
    """Start an Okta sandbox org on OKTA_HOST with Alice and Bob: start_okta_sandbox(**options) takes OktaOrg's
    options (clock=, rate_limit_per_minute=, engine=, issuer=, ...) and users=False; its clients close after the
    test, its server with aiohttp_server."""
    async with Sandboxes(aiohttp_server) as sandboxes:
        yield sandboxes.start


@pytest.fixture
async def okta_sandbox(start_okta_sandbox: StartOkta) -> Okta:
    """The Okta sandbox as most tests want it: OktaOrg's defaults, Alice and Bob."""
    return await start_okta_sandbox()


@pytest.fixture(autouse=True)
def okta_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/gateway.example.toml reads its secrets from the environment, as every real configuration must."""
    monkeypatch.setenv("OKTA_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", BINDING_KEY)
    monkeypatch.setenv("OKTA_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)


# --- the whole stack: the Okta sandbox on OKTA_HOST, legacy apps, the gateway, and browsers (tests/e2e, hostile) --

StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def binding_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", KEYS[0])
    monkeypatch.setenv("OKTA_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    return KEYS


@pytest.fixture
async def start(binding_keys: list[str]) -> AsyncIterator[StartStack]:
    """Start a stack: start(AppRoute(...), ..., org_options={...}, okta={...}); its org is sandbox_org's (Alice,
    Bob), served by start_stack itself on OKTA_HOST."""
    stacks: list[Stack] = []

    async def make(*apps: AppRoute, org_options: dict[str, Any] | None = None, **kwargs: Any) -> Stack:
        port = free_port(OKTA_HOST)
        org = sandbox_org(port, **(org_options or {}))
        kwargs.setdefault("okta", FAST_CACHE)
        stack = await start_stack(list(apps) or [AppRoute("hr")], org=org, okta_host=OKTA_HOST, okta_port=port,
                                  **kwargs)
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


# --- Redis: real redis-server and redis-sentinel processes (tests/redis_support.py) -------------------------------


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """start_redis(replica_of=..., sentinel_of=...): a running redis-server (or sentinel), killed after the test."""
    started: list[RedisProcess] = []

    def start(**options: Any) -> RedisProcess:
        process = RedisProcess(tmp_path, **options).start()
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.kill()


@pytest.fixture
def redis_server(start_redis: Callable[..., RedisProcess]) -> RedisProcess:
    return start_redis()


# --- a fleet: several `session-gateway run` replicas sharing one redis-server (tests/e2e/fleet_support.py) --------

StartFleet = Callable[..., Awaitable[RedisFleet]]


@pytest.fixture
async def start_fleet(binding_keys: list[str], start_redis: Callable[..., RedisProcess],
                      tmp_path: Path) -> AsyncIterator[StartFleet]:
    """start_fleet(AppRoute(...), ..., replicas=3, okta={...}, store={...}, org_options={...}): the Okta sandbox and
    the apps in this process, `replicas` gateway processes with the Redis store, one redis-server."""
    fleets: list[RedisFleet] = []

    async def make(*apps: AppRoute, replicas: int = 3, org_options: dict[str, Any] | None = None,
                   store: dict[str, Any] | None = None, **kwargs: Any) -> RedisFleet:
        redis = start_redis()
        port = free_port(OKTA_HOST)
        org = sandbox_org(port, **(org_options or {}))
        kwargs.setdefault("okta", FAST_CACHE)
        kwargs["server"] = {"stop_delay": 0, **kwargs.get("server", {})}  # replicas stop at once after the test
        shared = {"backend": "redis", **({} if "sentinels" in (store or {}) else {"url": redis.url}), **(store or {})}
        world = await start_world(list(apps) or [AppRoute("hr")], org=org, okta_host=OKTA_HOST, okta_port=port,
                                  store=shared, admin=True, **kwargs)
        fleet = RedisFleet(world, replica_ports(world, replicas), redis)
        fleets.append(fleet)
        for i, listen in enumerate(fleet.ports):
            config = replica_config(world, listen)
            routes = config.pop("route")
            fleet.replicas.append(await start_replica(GatewayProcess, toml_text(routes, **config),
                                                      tmp_path / f"replica-{i}.toml", listen))
        return fleet

    yield make
    for fleet in fleets:
        for process in fleet.replicas:
            await asyncio.to_thread(process.stop)
        await fleet.world.close()
