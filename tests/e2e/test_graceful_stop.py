"""Stopping a running `session-gateway run` process under traffic: SIGTERM with a stop delay, and SIGINT without.

readyz turns 503 at once, requests during the stop delay are served, a slow answer in flight arrives whole, an
open WebSocket is closed with 1001 (going away), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
from aiohttp import web

from conftest import route

SLOW_BODY = b"s" * 200_000


async def upstream_app(start_upstream: Any) -> str:
    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(SLOW_BODY))})
        await response.prepare(request)
        for i in range(0, len(SLOW_BODY), 20_000):  # ten pieces over 2.5 s: in flight across the stop delay
            await response.write(SLOW_BODY[i:i + 20_000])
            await asyncio.sleep(0.25)
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(message.data)
        return socket

    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    server = await start_upstream(app)
    return f"http://127.0.0.1:{server.port}"


async def status_of(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.json()


async def test_sigterm_keeps_serving_through_the_stop_delay_then_finishes_what_is_in_flight(
        gateway_process, start_upstream):
    upstream = await upstream_app(start_upstream)
    gateway = await asyncio.to_thread(gateway_process, [route(upstream)], server={"stop_delay": 2})
    assert gateway.process is not None
    failures: list[str] = []
    served_during_delay = 0
    stop_sending = asyncio.Event()

    async def client_loop() -> None:
        nonlocal served_during_delay
        async with aiohttp.ClientSession() as http:
            while not stop_sending.is_set():
                try:
                    async with http.get(gateway.url("/fast")) as r:
                        if (r.status, await r.text()) != (200, "fast"):
                            failures.append(f"fast: {r.status}")
                        elif signalled:
                            served_during_delay += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"fast: {type(exc).__name__}")

    async def slow_request() -> bytes:
        async with aiohttp.ClientSession() as http, http.get(gateway.url("/slow")) as r:
            assert r.status == 200
            return await r.read()

    signalled = False
    async with aiohttp.ClientSession() as ws_http:
        socket = await ws_http.ws_connect(gateway.url("/ws").replace("http", "ws"))
        await socket.send_str("hello")
        assert (await socket.receive(timeout=5)).data == "hello"
        loops = [asyncio.create_task(client_loop()) for _ in range(4)]
        slow = asyncio.create_task(slow_request())
        await asyncio.sleep(0.3)
        gateway.process.send_signal(signal.SIGTERM)
        signalled, sent_at = True, time.monotonic()
        status, body = await status_of(gateway.url("/.gateway/readyz"))
        assert (status, body["status"]) == (503, "stopping") and time.monotonic() - sent_at < 1.0
        await asyncio.sleep(1.2)  # well inside the 2 s stop delay: still accepting, still serving
        stop_sending.set()
        await asyncio.gather(*loops)
        closing = await socket.receive(timeout=10)  # after the delay, as the listener closes
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.GOING_AWAY
        assert time.monotonic() - sent_at >= 1.9
        assert await slow == SLOW_BODY  # in flight across the stop: not cut mid-answer
    code = await asyncio.to_thread(gateway.process.wait, 15)
    log = gateway.output()
    assert code == 0, log
    assert failures == [] and served_during_delay > 10
    assert "stopping (SIGTERM)" in log and "session-gateway stopped" in log and "Traceback" not in log


async def test_sigint_stops_without_the_delay_and_still_finishes_the_answer_in_flight(
        gateway_process, start_upstream):
    upstream = await upstream_app(start_upstream)
    gateway = await asyncio.to_thread(gateway_process, [route(upstream)], server={"stop_delay": 30})
    assert gateway.process is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url("/slow")) as r:
            first = await r.content.readexactly(20_000)
            sent_at = time.monotonic()
            gateway.process.send_signal(signal.SIGINT)
            rest = await r.read()
    assert first + rest == SLOW_BODY
    code = await asyncio.to_thread(gateway.process.wait, 15)
    assert code == 0 and time.monotonic() - sent_at < 10  # not the 30 s stop delay
    try:
        async with aiohttp.ClientSession() as http, http.get(gateway.url("/fast")) as r:
            raise AssertionError(f"still answering: {r.status}")
    except aiohttp.ClientConnectionError:
        pass


async def test_a_keep_alive_client_is_told_to_close_during_the_stop_delay_so_its_next_request_goes_elsewhere(
        gateway_process, start_upstream):
    """A client (or an L4 balancer's connection) that keeps one connection open would go on sending on it through
    the stop delay, and its next request, sent as the listener closes, would be lost unanswered (a POST cannot be
    retried). Every answer from SIGTERM on says Connection: close."""
    upstream = await upstream_app(start_upstream)
    gateway = await asyncio.to_thread(gateway_process, [route(upstream)], server={"stop_delay": 2})
    assert gateway.process is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    request = b"GET /fast HTTP/1.1\r\nHost: app\r\n\r\n"
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"connection: close" not in head.lower()
        await asyncio.wait_for(reader.readexactly(4), 5)
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        writer.write(request)  # within the stop delay, on the kept-alive connection: served, and closed after
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and b"\r\nconnection: close\r\n" in head.lower()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"fast"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once, not at the end of the delay
    finally:
        writer.close()
    async with aiohttp.ClientSession() as http, http.get(gateway.url("/fast")) as r:  # a new connection: served
        assert (r.status, await r.text()) == (200, "fast")
    assert await asyncio.to_thread(gateway.process.wait, 15) == 0


async def test_requests_still_open_when_shutdown_timeout_runs_out_are_cut_then_counted_in_a_warning_exit_0(
        gateway_process):
    """A stop asked for and carried out as configured exits 0 (systemd and Kubernetes read anything else as a
    failure); but an operator must be able to tell a clean stop from one that cut answers."""
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(60)

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    upstream = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    gateway = await asyncio.to_thread(gateway_process, [route(upstream, read_timeout=600)],
                                      server={"shutdown_timeout": 3}, ready=False)
    assert gateway.process is not None
    try:
        async with aiohttp.ClientSession() as http:
            waiting = asyncio.create_task(http.get(gateway.url("/x")))
            await asyncio.sleep(0.5)
            sent_at = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(gateway.process.wait, 15)
            try:
                await waiting
            except aiohttp.ClientError:
                pass
    finally:
        silent.close()
    log = gateway.output()
    assert code == 0, log
    # within shutdown_timeout, as documented (aiohttp alone waits it twice: for the handler, then for it to
    # heed a cancellation it only sends to the request body)
    assert time.monotonic() - sent_at < 5.5
    warnings = [line for line in log.splitlines() if " WARNING " in line and "shutdown_timeout" in line]
    assert len(warnings) == 1 and "1 " in warnings[0] and "cut" in warnings[0], log
    assert "Traceback" not in log and " ERROR " not in log, log


async def test_a_stop_that_meets_reloads_in_flight_still_exits_0(gateway_process):
    """SIGHUPs (a ConfigMap update during a rollout, a reload script) around a SIGTERM: the reload in flight is
    finished, and the process exits, rather than hang until it is killed."""
    routes = [{"name": "a", "host": "*", "path": "/", "upstream": "http://127.0.0.1:9", "required_for_ready": False}]
    gateway = await asyncio.to_thread(gateway_process, routes, server={"log_level": "warning"})
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGHUP)
    gateway.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while gateway.process.poll() is None and time.monotonic() < deadline:
        gateway.process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.002)
    assert gateway.process.poll() == 0, "still running 15 s after SIGTERM"
    assert "Traceback" not in gateway.output()
