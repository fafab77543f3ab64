"""A gigabyte each way through a real `session-gateway run` process, whose memory must stay flat."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from conftest import GatewayProcess, route

GIB = 2**30
BLOCK = os.urandom(2**20)
RSS_GROWTH_LIMIT = 64 * 2**20


async def sample_rss(gateway: GatewayProcess, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, gateway.rss_bytes())
        await asyncio.sleep(0.05)
    return max(peak, gateway.rss_bytes())


async def blocks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield BLOCK


async def big_app_server(aiohttp_server) -> tuple[object, dict[str, int]]:
    received: dict[str, int] = {}

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(GIB)})
        await response.prepare(request)
        for _ in range(GIB // len(BLOCK)):
            await response.write(BLOCK)
        return response

    async def upload(request: web.Request) -> web.Response:
        size, crc = 0, 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
        received.update(size=size, crc=crc)
        return web.json_response(received)

    app = web.Application()
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    return await aiohttp_server(app, auto_decompress=False), received


def expected_crc() -> int:
    crc = 0
    for _ in range(GIB // len(BLOCK)):
        crc = zlib.crc32(BLOCK, crc)
    return crc


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_one_gib_down_and_up_with_flat_gateway_memory(aiohttp_server, gateway_process):
    upstream, received = await big_app_server(aiohttp_server)
    gateway = gateway_process([route(f"http://127.0.0.1:{upstream.port}", max_request_body="2GiB")])
    timeout = aiohttp.ClientTimeout(total=200)
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as http:
        async with http.get(gateway.url("/warm-up")) as r:  # pools and code paths warm before the baseline
            await r.read()
        baseline = gateway.rss_bytes()

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(gateway, stop))
        size, crc = 0, 0
        async with http.get(gateway.url("/download")) as r:
            assert r.status == 200
            async for chunk in r.content.iter_any():
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
        stop.set()
        download_peak = await sampler
        assert (size, crc) == (GIB, expected_crc())

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(gateway, stop))
        headers = {"Content-Length": str(GIB)}
        async with http.post(gateway.url("/upload"), data=blocks(GIB // len(BLOCK)), headers=headers) as r:
            assert r.status == 200
        stop.set()
        upload_peak = await sampler
        assert received == {"size": GIB, "crc": expected_crc()}

    print(f"gateway RSS: baseline {baseline >> 20} MiB, download peak {download_peak >> 20} MiB, "
          f"upload peak {upload_peak >> 20} MiB")
    assert download_peak - baseline < RSS_GROWTH_LIMIT, f"download grew RSS by {download_peak - baseline} bytes"
    assert upload_peak - baseline < RSS_GROWTH_LIMIT, f"upload grew RSS by {upload_peak - baseline} bytes"
