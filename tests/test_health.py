"""healthz and readyz, under the gateway's prefix: readyz lists every problem, from what background checks found
(each route's upstream by a TCP connect, or a recent proxied answer; the Okta token), and does no I/O itself.
Real upstreams on loopback; a refused one is a free port with nothing listening."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from yarl import URL

from conftest import route
from gateway.health import Health, UpstreamChecks, tcp_connect
from gateway.routing import Route
from gateway.sandbox.stack import free_port
from gateway.server import CHECKS, HEALTH, POOLS

READYZ = "/.gateway/readyz"


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(http: Any, gateway: Any) -> tuple[int, dict[str, Any]]:
    async with http.get(gateway.make_url(READYZ)) as r:
        return r.status, await r.json()


async def until(http: Any, gateway: Any, wanted: Callable[[int, dict[str, Any]], bool],
                limit: float = 10.0) -> tuple[int, dict[str, Any]]:
    """readyz polled until it answers as wanted (the checks run every 2 s), or the last answer after `limit`."""
    deadline = time.monotonic() + limit
    while True:
        status, body = await readyz(http, gateway)
        if wanted(status, body) or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.05)


def checked(status: int, body: dict[str, Any]) -> bool:
    return all(r["upstream_status"] != "checking" for r in body["routes"].values())


async def test_healthz_and_readyz_answer_under_the_prefix(start_upstream, start_gateway, http):
    upstream = await start_upstream(ok)
    gateway = await start_gateway(route(upstream))
    async with http.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200
        assert (await r.json())["status"] == "alive"
    status, body = await readyz(http, gateway)  # the first checks ran before the gateway listened
    assert status == 200
    assert body == {"status": "ready", "configuration": "loaded", "routes": {
        "app": {"upstream": f"http://127.0.0.1:{upstream.port}", "required": True, "upstream_status": "reachable"}}}
    async with http.get(gateway.make_url(READYZ)) as r:
        assert r.headers["Cache-Control"] == "no-store"
    async with http.head(gateway.make_url(READYZ)) as r:
        assert (r.status, r.headers["Cache-Control"], await r.read()) == (200, "no-store", b"")


async def test_a_refused_upstream_fails_readyz_naming_the_route_and_it_turns_200_once_the_upstream_listens(
        start_upstream, start_gateway, http):
    port = free_port()
    gateway = await start_gateway(route(f"http://127.0.0.1:{port}"))
    status, body = await readyz(http, gateway)
    assert status == 503 and body["status"] == "not ready"
    assert body["routes"]["app"]["upstream_status"] == "unreachable"
    [problem] = body["problems"]
    assert problem == f"route app: upstream http://127.0.0.1:{port} is unreachable (connection refused)"
    assert body["routes"]["app"]["error"] == "connection refused"
    async with http.head(gateway.make_url(READYZ)) as r:
        assert r.status == 503
    await start_upstream(ok, port=port)
    started = time.monotonic()
    status, body = await until(http, gateway, lambda status, _: status == 200)
    assert status == 200 and body["routes"]["app"]["upstream_status"] == "reachable" and "problems" not in body
    assert time.monotonic() - started < 5.0  # one check interval, and some


async def test_a_route_not_required_for_ready_is_shown_but_never_fails_readyz(start_upstream, start_gateway, http):
    upstream = await start_upstream(ok)
    down = f"http://127.0.0.1:{free_port()}"
    gateway = await start_gateway([route(upstream), route(down, name="reports", path="/reports",
                                                          required_for_ready=False)])
    status, body = await until(http, gateway, checked)
    assert status == 200 and "problems" not in body
    assert body["routes"]["reports"] == {"upstream": down, "required": False, "upstream_status": "unreachable",
                                         "error": body["routes"]["reports"]["error"]}
    assert body["routes"]["reports"]["error"]


async def test_every_problem_is_listed_at_once(start_okta_sandbox, start_gateway, http, monkeypatch):
    okta = await start_okta_sandbox()
    monkeypatch.setenv("OKTA_API_TOKEN", "not-the-orgs-token")
    one, two = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    gateway = await start_gateway([route(one), route(two, name="hr", path="/hr")],
                                  okta={"org_url": okta.issuer, "api_token": "${OKTA_API_TOKEN}"},
                                  binding={"keys": "${GATEWAY_BINDING_KEYS}"})

    def all_known(status: int, body: dict[str, Any]) -> bool:
        return checked(status, body) and body["okta"] != "not known yet"

    status, body = await until(http, gateway, all_known)
    assert status == 503 and body["okta"] == "token rejected"
    problems = body["problems"]
    assert len(problems) == 3, problems
    assert problems[0] == "Okta rejects the gateway's API token"
    assert problems[1].startswith(f"route app: upstream {one} is unreachable")
    assert problems[2].startswith(f"route hr: upstream {two} is unreachable")
    await gateway.app[POOLS].close()
    gateway.app[HEALTH].stopping = True
    status, body = await readyz(http, gateway)
    assert status == 503 and body["status"] == "stopping"
    assert body["problems"][:2] == ["the gateway is stopping", "upstream pools are not up"]
    assert len(body["problems"]) == 5
    async with http.get(gateway.make_url("/.gateway/healthz")) as r:
        assert r.status == 200


async def test_a_flood_of_readyz_does_not_reach_the_upstream(start_gateway, http):
    accepted = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    try:
        gateway = await start_gateway(route(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"))
        assert (await until(http, gateway, checked))[0] == 200
        await asyncio.gather(*(readyz(http, gateway) for _ in range(300)))
        assert accepted <= 3  # the first check, and one each further 2 s at most
    finally:
        server.close()


# --- the checks themselves ------------------------------------------------------------------------------------


def a_route(upstream: str, name: str = "app") -> Route:
    return Route(name=name, host="*", path="/" + name, upstream=URL(upstream), rewrite=None,
                 preserve_host=False, connect_timeout=1.0, read_timeout=1.0, max_request_body=None)


def counting(connect: Callable[[str, int], Awaitable[None]] = tcp_connect) -> tuple[list[int], Any]:
    ports: list[int] = []

    async def connect_counted(host: str, port: int) -> None:
        ports.append(port)
        await connect(host, port)

    return ports, connect_counted


async def test_a_recent_proxied_answer_counts_as_proof_so_a_busy_gateway_adds_no_connects(start_upstream,
                                                                                         start_gateway, http):
    upstream = await start_upstream(ok)
    gateway = await start_gateway(route(upstream))
    ports, connect = counting()
    checks = UpstreamChecks(gateway.app[CHECKS].routes, gateway.app[POOLS], connect=connect)
    await checks.check()
    assert ports == [upstream.port]  # the first check has no answer to go by
    async with http.get(gateway.make_url("/page")) as r:
        assert r.status == 200
    await checks.check()
    assert ports == [upstream.port]  # an answer since the last check: no connect
    await checks.check()
    assert ports == [upstream.port] * 2  # none since: a connect
    assert checks.reach(checks.routes[0]) is not None and checks.reach(checks.routes[0]).up


async def test_an_upstream_name_that_does_not_resolve_says_so():
    async def unresolved(host: str, port: int) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")  # no DNS lookup leaves loopback

    checks = UpstreamChecks([a_route("http://hr-app.internal:8080")], connect=unresolved)
    await checks.check()
    reach = checks.reach(checks.routes[0])
    assert reach is not None and (reach.up, reach.error) == (False, "cannot resolve hr-app.internal: Name or service "
                                                                    "not known")


async def test_an_upstream_that_does_not_accept_in_time_is_unreachable():
    async def black_hole(host: str, port: int) -> None:
        await asyncio.sleep(60)

    checks = UpstreamChecks([a_route("http://10.255.255.1:80")], timeout=0.1, connect=black_hole)
    started = time.monotonic()
    await checks.check()
    assert time.monotonic() - started < 2.0
    reach = checks.reach(checks.routes[0])
    assert reach is not None and (reach.up, reach.error) == (False, "no TCP connect within 0.1 s")


async def test_one_check_per_origin_and_an_update_checks_new_routes_at_once_and_forgets_old_origins(start_upstream):
    first, second = await start_upstream(ok), await start_upstream(ok)
    a, b = f"http://127.0.0.1:{first.port}", f"http://127.0.0.1:{second.port}"
    ports, connect = counting()
    checks = UpstreamChecks([a_route(a, "app"), a_route(a, "api")], every=60.0, connect=connect)
    await checks.start()
    try:
        await until_true(lambda: len(ports) == 1)
        new = a_route(b, "hr")
        checks.update([checks.routes[0], new])
        assert checks.reach(new) is None  # "checking" until its first check: never counted before
        await until_true(lambda: checks.reach(new) is not None)
        assert checks.reach(new).up and sorted(ports) == sorted([first.port, first.port, second.port])
        checks.update([new])
        await until_true(lambda: checks.reach(a_route(a)) is None)
    finally:
        await checks.close()


async def until_true(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.01)


def test_a_route_still_checking_fails_readiness_only_when_required():
    class Pools:
        ready = True

    required, optional = a_route("http://127.0.0.1:9", "app"), a_route("http://127.0.0.1:9", "reports")
    optional = dataclasses.replace(optional, required_for_ready=False)
    health = Health(UpstreamChecks([required, optional], Pools()), None)  # type: ignore[arg-type]
    body, problems = health.readiness()
    assert problems == ["route app: upstream http://127.0.0.1:9 not checked yet"]
    assert {name: r["upstream_status"] for name, r in body["routes"].items()} == {  # type: ignore[attr-defined]
        "app": "checking", "reports": "checking"}


def test_after_a_reload_readiness_follows_the_new_generation_of_pools():
    class Pools:
        def __init__(self, ready: bool) -> None:
            self.ready = ready

    checks = UpstreamChecks([], Pools(True))  # type: ignore[arg-type]
    health = Health(checks, None)
    assert health.readiness()[1] == []
    checks.update([], Pools(False))  # type: ignore[arg-type]
    assert health.readiness()[1] == ["upstream pools are not up"]
    checks.update([])  # the same pools
    assert health.readiness()[1] == ["upstream pools are not up"]


async def test_the_checks_stop_when_closed_right_after_an_update_as_a_reload_ending_in_a_stop_does():
    """A reload in flight when the gateway stops ends (its update() wakes the loop) just before the checks are
    closed. asyncio.wait_for of Python 3.11 returns the woken event's result instead of the cancellation that came
    with it, so the loop ran on and the stop hung until the gateway was killed."""
    ports, connect = counting()
    checks = UpstreamChecks([a_route("http://127.0.0.1:9")], every=60.0, connect=connect)
    await checks.start()
    checks.update(checks.routes)
    await asyncio.wait_for(checks.close(), 5)


async def test_once_stopping_every_answer_closes_its_connection_streamed_or_whole_the_gateway_s_own_too(
        start_upstream, start_gateway, http):
    """The stamp closes them (proxy/request_id.py's `Stop`): the app's streamed and whole answers, the gateway's
    endpoints and its 404; before the stop they were kept alive."""

    async def whole(request: web.Request) -> web.Response:
        return web.Response(text="whole")

    async def streamed(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()
        await answer.prepare(request)
        await answer.write(b"x" * 1000)
        await asyncio.sleep(0.05)  # the head comes without the whole body: the gateway streams the answer
        await answer.write(b"y" * 1000)
        await answer.write_eof()
        return answer

    upstream = web.Application()
    upstream.router.add_get("/whole", whole)
    upstream.router.add_get("/streamed", streamed)
    gateway = await start_gateway(route(await start_upstream(upstream)))
    paths = ("/whole", "/streamed", "/.gateway/healthz", "/.gateway/nothing")

    async def connections() -> list[str]:
        found = []
        for path in paths:
            async with http.get(gateway.make_url(path)) as r:
                await r.read()
                found.append(f"{r.status} {r.headers.get('Connection')}")
        return found

    assert await connections() == ["200 None", "200 None", "200 None", "404 None"]
    gateway.app[HEALTH].stopping = True
    assert await connections() == ["200 close", "200 close", "200 close", "404 close"]
