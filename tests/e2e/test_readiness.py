"""readyz as a load balancer reads it, end to end: `session-gateway run` in front of an upstream that refuses
connections and then listens, and a real redis-server killed and hung (shown always; failing readiness only with
`[store] required_for_ready = true`)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from aiohttp import web

from conftest import route
from gateway.sandbox.stack import free_port

READYZ = "/.gateway/readyz"


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def ask(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def until(url: str, wanted: Callable[[int, dict[str, Any]], bool], limit: float = 10.0) -> tuple[int, Any]:
    """readyz polled until it answers as wanted, or its last answer after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        status, body = await asyncio.to_thread(ask, url)
        if wanted(status, body) or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.1)


async def test_a_running_gateway_is_not_ready_while_its_upstream_refuses_and_ready_once_it_listens(
        gateway_process, start_upstream):
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    reports = f"http://127.0.0.1:{free_port()}"
    gateway = await asyncio.to_thread(
        gateway_process, [route(upstream), route(reports, name="reports", path="/reports", required_for_ready=False)],
        ready=False)
    status, body = await asyncio.to_thread(ask, gateway.url(READYZ))  # checked before it listened
    assert (status, body["status"]) == (503, "not ready")
    assert body["problems"] == [f"route app: upstream {upstream} is unreachable (connection refused)"]
    assert body["routes"]["reports"]["upstream_status"] == "unreachable"
    await start_upstream(ok, port=port)
    status, body = await until(gateway.url(READYZ), lambda status, _: status == 200)
    assert status == 200 and body["routes"]["app"]["upstream_status"] == "reachable"
    output = await asyncio.to_thread(gateway.stop)
    assert f"readiness: upstream {upstream} (route app) is unreachable: connection refused" in output
    assert f"readiness: upstream {upstream} (route app) is reachable again" in output


async def test_redis_away_is_shown_and_fails_readyz_only_with_the_switch_on(start_upstream, start_gateway,
                                                                             start_redis):
    upstream = await start_upstream(ok)
    lenient_redis, strict_redis = start_redis(), start_redis()
    lenient = await start_gateway(route(upstream), store={"backend": "redis", "url": lenient_redis.url})
    strict = await start_gateway(route(upstream), store={"backend": "redis", "url": strict_redis.url,
                                                         "required_for_ready": True})
    lenient_url, strict_url = str(lenient.make_url(READYZ)), str(strict.make_url(READYZ))
    for url in (lenient_url, strict_url):
        status, body = await until(url, lambda status, _: status == 200)
        assert (status, body["store"]) == (200, "up")

    lenient_redis.kill()
    strict_redis.kill()
    status, body = await until(lenient_url, lambda _, body: body["store"] == "away")
    assert (status, body["store"], "problems" in body) == (200, "away", False)
    status, body = await until(strict_url, lambda _, body: body["store"] == "away")
    assert (status, body["store"]) == (503, "away")
    assert body["problems"] == ["the store (redis) is away, and [store] required_for_ready = true"]

    strict_redis.start()
    status, body = await until(strict_url, lambda status, _: status == 200)
    assert (status, body["store"]) == (200, "up")


async def test_a_hung_redis_is_away_for_readyz_within_a_check_and_back_when_it_answers(start_upstream, start_gateway,
                                                                                      redis_server):
    upstream = await start_upstream(ok)
    gateway = await start_gateway(route(upstream), store={"backend": "redis", "url": redis_server.url,
                                                          "required_for_ready": True})
    url = str(gateway.make_url(READYZ))
    assert (await until(url, lambda status, _: status == 200))[0] == 200
    redis_server.hang()
    try:
        started = time.monotonic()
        status, body = await until(url, lambda status, _: status == 503)
        assert (status, body["store"]) == (503, "away")
        assert time.monotonic() - started < 5.0  # a check every 2 s, a command timeout of 0.25 s
    finally:
        redis_server.resume()
    assert (await until(url, lambda status, _: status == 200))[0] == 200
