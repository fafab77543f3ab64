"""Fixtures that start real servers on loopback: upstream apps, the gateway, and a client with no cookie jar."""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import Settings, parse
from gateway.server import build_app

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
