"""The server settings of `session-gateway run` itself (not the test server's): decompression and disconnects."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os

import aiohttp
from aiohttp import web

from conftest import route


async def test_a_gzip_upload_reaches_the_upstream_still_compressed(aiohttp_server, gateway_process):
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"sha": hashlib.sha256(body).hexdigest(),
                                  "encoding": request.headers.get("Content-Encoding")})

    app = web.Application()
    app.router.add_post("/up", echo)
    upstream = await aiohttp_server(app, auto_decompress=False)
    gateway = gateway_process([route(f"http://127.0.0.1:{upstream.port}")])
    body = gzip.compress(os.urandom(20_000))
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url("/up"), data=body, headers={"Content-Encoding": "gzip"}) as r:
            assert await r.json() == {"sha": hashlib.sha256(body).hexdigest(), "encoding": "gzip"}


async def test_clients_that_go_away_leave_no_traceback_in_the_log(aiohttp_server, gateway_process):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(5000):
            await response.write(b"x" * 65536)
        return response

    app = web.Application()
    app.router.add_get("/stream", endless)
    upstream = await aiohttp_server(app)
    gateway = gateway_process([route(f"http://127.0.0.1:{upstream.port}")], server={"log_level": "debug"})
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(300_000)
        writer.transport.abort()
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http, http.get(gateway.url("/.gateway/healthz")) as r:
        assert r.status == 200
    log = gateway.stop()
    assert "client went away" in log
    assert "Traceback" not in log and "Cannot write to closing transport" not in log and " ERROR " not in log


def test_at_info_the_gateway_says_when_it_listens_and_when_it_stops_and_names_no_secret(gateway_process, monkeypatch):
    from gateway import __version__

    monkeypatch.setenv("REDIS_PASSWORD", "redis-secret-9f8e7d")
    gateway = gateway_process([route("http://127.0.0.1:9", required_for_ready=False)],
                              store={"backend": "redis", "url": "redis://127.0.0.1:9/0",
                                     "password": "${REDIS_PASSWORD}"})
    output = gateway.stop()
    started = next(line for line in output.splitlines() if "listening on" in line)
    assert f"session-gateway {__version__} listening on 127.0.0.1:{gateway.port}" in started
    assert "routes: app (off)" in started and "store: redis at 127.0.0.1" in started
    assert "session-gateway stopped" in output
    assert "redis-secret-9f8e7d" not in output
