"""gateway/metrics_listener.py: GET /metrics for Prometheus without a token, in the format the scraper asks for,
and nothing else on that listener; it lives as long as the app whose cleanup context it is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from gateway.metrics_listener import serving
from gateway.run import listening_socket


@pytest.fixture
async def listener() -> AsyncIterator[tuple[str, Metrics]]:
    """The listener on a port of its own, serving a registry with one request counted; its base URL."""
    metrics = Metrics()
    metrics.requests.get("hr").inc()
    metrics.upstream_latency.get("hr").observe(0.003)
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    port = sock.getsockname()[1]
    lifetime = serving(sock, metrics, header_timeout=5)(web.Application())
    await anext(lifetime)
    yield f"http://127.0.0.1:{port}", metrics
    with pytest.raises(StopAsyncIteration):
        await anext(lifetime)


async def test_a_scrape_without_a_token_gets_the_prometheus_text(listener):
    url, _ = listener
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-store"
        families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    assert families["session_gateway_requests"].samples[0].value == 1.0
    latency = families["session_gateway_upstream_latency_seconds"]
    assert latency.type == "histogram"
    assert {s.name for s in latency.samples} == {"session_gateway_upstream_latency_seconds_bucket",
                                                  "session_gateway_upstream_latency_seconds_count",
                                                  "session_gateway_upstream_latency_seconds_sum"}


async def test_the_scrape_is_of_the_registry_as_it_is_now(listener):
    url, metrics = listener
    metrics.requests.get("hr").inc(4)
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics?name[]=x") as r:
        assert 'session_gateway_requests_total{route="hr"} 5.0' in await r.text()


async def test_a_scraper_that_asks_for_openmetrics_gets_it(listener):
    url, _ = listener
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers={"Accept": accept}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await r.text()).endswith("# EOF\n")


async def test_head_answers_as_get_without_the_body(listener):
    url, _ = listener
    async with aiohttp.ClientSession() as http, http.head(url + "/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert await r.read() == b""


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/metrics"), ("PUT", "/metrics"), ("DELETE", "/metrics"), ("OPTIONS", "/metrics"),
    ("GET", "/"), ("GET", "/metrics/"), ("GET", "/Metrics"), ("GET", "/%6detrics"), ("GET", "/metrics/../metrics"),
    ("GET", "/metrics.json"), ("GET", "//metrics"), ("GET", "/.gateway/status"), ("GET", "/.gateway/metrics"),
    ("GET", "/.gateway/status.json"), ("GET", "/.gateway/readyz"), ("POST", "/.gateway/admin/routes/hr/policy"),
])
async def test_nothing_else_is_served_there(listener, method, path):
    url, _ = listener
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rpartition(":")[2]))
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), answer
    assert body == b"Not found: this listener serves GET /metrics only.\n"


async def test_a_malformed_request_is_refused_without_a_traceback_in_the_log(listener, caplog):
    url, _ = listener
    with caplog.at_level(logging.INFO):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rpartition(":")[2]))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_the_listener_closes_with_its_app():
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    port = sock.getsockname()[1]
    lifetime = serving(sock, Metrics(), header_timeout=5)(web.Application())
    await anext(lifetime)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        assert r.status == 200
    with pytest.raises(StopAsyncIteration):
        await anext(lifetime)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.parametrize("version", [b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.9"])
async def test_only_http_1_0_and_1_1_are_served_there_as_on_the_gateway(listener, version):
    """aiohttp's parsers take these and answer them with that version in the status line ("HTTP/0.9 200 OK"),
    which no client of that version reads; the gateway itself refuses them (dispatch.py)."""
    url, _ = listener
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rpartition(":")[2]))
    writer.write(b"GET /metrics " + version + b"\r\nHost: t\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"session_gateway_" not in answer, answer
