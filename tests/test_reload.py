"""gateway/reload.py: what a new configuration changes, and a reload in a gateway served in this process (the
generations of dispatch.py: requests in flight and open WebSockets finish on what they started with)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from okta_sandbox_support import ALICE, OKTA_HOST, sandbox_org

from conftest import origin, route, settings, toml_text
from gateway.config import load
from gateway.dispatch import Generations
from gateway.reload import NoGateway, changes, gateway_pid, write_pid_file
from gateway.run import handler_options
from gateway.sandbox.browser import Browser
from gateway.sandbox.run import start_app
from gateway.sandbox.stack import AppRoute, Stack, free_port, start_world
from gateway.server import GENERATIONS, METRICS, RELOADER, build_app

OKTA = {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"}
KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def bound(name: str = "hr", **overrides: Any) -> dict[str, Any]:
    return route("http://127.0.0.1:9", name=name, path=f"/{name}/", policy="enforce", app_profile="servlet",
                 **overrides)


# --- changes(): pure ------------------------------------------------------------------------------------------


def test_changes_name_the_routes_added_removed_and_changed_and_the_rotated_keys_but_no_key(monkeypatch):
    monkeypatch.setenv("KEYS_BEFORE", KEY_A)
    monkeypatch.setenv("KEYS_AFTER", f"{KEY_B},{KEY_A}")
    old = settings([bound("hr"), bound("wiki")], okta=OKTA, binding={"keys": "${KEYS_BEFORE}"})
    new = settings([bound("hr", read_timeout=5), bound("crm")], okta=OKTA, binding={"keys": "${KEYS_AFTER}"},
                   server={"log_level": "debug"})
    found = changes(old, new)
    assert (found.added, found.removed, found.changed) == (("crm",), ("wiki",), ("hr",))
    summary = found.summary()
    assert "binding keys rotated (2 keys, a new first key, 1 kept)" in summary
    assert "log level info -> debug" in summary
    assert KEY_A not in summary and KEY_B not in summary
    assert found.restart == () and found.refused is None


def test_keys_read_once_at_start_are_named_as_needing_a_restart():
    old = settings(route("http://127.0.0.1:9"))
    new = settings(route("http://127.0.0.1:9"), server={"listen": "127.0.0.1:9999", "prefix": "/gw/",
                                                        "workers": 2},
                   store={"backend": "redis", "url": "redis://127.0.0.1:6379/0"})
    assert changes(old, new).restart == ("server.listen", "server.workers", "server.prefix", "store")
    assert changes(old, old).summary() == "nothing changed"


KEYS = {"keys": "${GATEWAY_BINDING_KEYS}"}


def test_the_okta_client_keys_need_a_restart_and_are_named_as_in_the_file_while_the_cache_applies():
    routes = [route("http://127.0.0.1:9")]
    old = settings(routes, okta=OKTA, binding=KEYS)
    new = settings(routes, okta={**OKTA, "timeout": 3, "rate_limit_stretch": 2, "cache_ttl": 5}, binding=KEYS)
    found = changes(old, new)
    assert found.restart == ("okta.timeout", "okta.rate_limit_stretch")
    assert "validation cache settings changed" in found.summary()


@pytest.mark.parametrize("before, after, why", [
    ({"okta": OKTA, "binding": KEYS}, {"okta": {**OKTA, "org_url": "https://other.okta.com"}, "binding": KEYS},
     "org_url changed"),
    ({}, {"okta": OKTA, "binding": KEYS}, "[okta] was added"),
])
def test_another_okta_org_refuses_the_reload_whole(before, after, why):
    routes = [route("http://127.0.0.1:9")]
    assert why in (changes(settings(routes, **before), settings(routes, **after)).refused or "")


# --- a reload in a gateway served here ------------------------------------------------------------------------


async def served(aiohttp_server: Any, path: Path, routes: list[dict[str, Any]], **sections: Any) -> Any:
    rewrite(path, routes, **sections)
    app = build_app(load(path))
    return await aiohttp_server(app, auto_decompress=False)


def rewrite(path: Path, routes: list[dict[str, Any]], **sections: Any) -> None:
    path.write_text(toml_text(routes, **sections))


async def test_a_bad_file_changes_nothing_and_is_counted_and_logged_in_one_line(
        aiohttp_server, start_upstream, http, tmp_path, caplog):
    upstream = await start_upstream(_answer("up"))
    path = tmp_path / "gateway.toml"
    gateway = await served(aiohttp_server, path, [route(upstream)])
    path.write_text(path.read_text() + "\n[server\n")
    with caplog.at_level(logging.INFO, logger="gateway"):
        assert await gateway.app[RELOADER].reload() is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage() and "expected valid TOML" in errors[0].message
    assert gateway.app[METRICS].value("session_gateway_config_reloads_total", result="failed") == 1
    async with http.get(gateway.make_url("/x")) as r:
        assert (r.status, await r.text()) == (200, "up")


async def test_a_key_that_needs_a_restart_is_named_in_a_warning_and_the_rest_takes_effect(
        aiohttp_server, start_upstream, http, tmp_path, caplog):
    one, two = await start_upstream(_answer("one")), await start_upstream(_answer("two"))
    path = tmp_path / "gateway.toml"
    gateway = await served(aiohttp_server, path, [route(one)], server={"listen": "127.0.0.1:1"})
    rewrite(path, [route(two)], server={"listen": "127.0.0.1:2", "log_level": "debug"})
    with caplog.at_level(logging.INFO, logger="gateway"):
        assert await gateway.app[RELOADER].reload() is True
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("server.listen" in w and "needs a restart" in w for w in warnings)
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger().setLevel(logging.WARNING)
    async with http.get(gateway.make_url("/x")) as r:
        assert await r.text() == "two"
    assert gateway.app[METRICS].value("session_gateway_config_reloads_total", result="ok") == 1


async def test_a_request_in_flight_finishes_on_its_generation_whose_pools_close_only_after_it(
        aiohttp_server, start_upstream, http, tmp_path):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="old")

    old_up, new_up = await start_upstream(slow), await start_upstream(_answer("new"))
    path = tmp_path / "gateway.toml"
    gateway = await served(aiohttp_server, path, [route(old_up)])
    generations: Generations = gateway.app[GENERATIONS]
    first = generations.current
    in_flight = asyncio.create_task(_get_text(http, gateway.make_url("/slow")))
    await started.wait()
    assert first.users == 1
    rewrite(path, [route(new_up)])
    assert await gateway.app[RELOADER].reload() is True
    assert generations.current is not first and first in generations.draining and first.pools.ready
    assert await _get_text(http, gateway.make_url("/x")) == "new"
    release.set()
    assert await in_flight == "old"
    for _ in range(100):
        if not first.pools.ready:
            break
        await asyncio.sleep(0.01)
    assert not first.pools.ready and not generations.draining


async def test_an_open_websocket_keeps_its_upstream_across_a_reload(aiohttp_server, start_upstream, http,
                                                                     tmp_path):
    def echo_app(tag: str) -> web.Application:
        async def ws(request: web.Request) -> web.WebSocketResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            async for message in socket:
                await socket.send_str(f"{tag}:{message.data}")
            return socket

        app = web.Application()
        app.router.add_get("/ws", ws)
        return app

    old_up, new_up = await start_upstream(echo_app("old")), await start_upstream(echo_app("new"))
    path = tmp_path / "gateway.toml"
    gateway = await served(aiohttp_server, path, [route(old_up)])
    async with http.ws_connect(gateway.make_url("/ws")) as before:
        rewrite(path, [route(new_up)])
        assert await gateway.app[RELOADER].reload() is True
        async with http.ws_connect(gateway.make_url("/ws")) as after:
            await after.send_str("b")
            assert (await after.receive(timeout=5)).data == "new:b"
        await before.send_str("a")
        assert (await before.receive(timeout=5)).data == "old:a"
    assert origin(old_up) != origin(new_up)


def _answer(text: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text)

    return handler


async def _get_text(http: aiohttp.ClientSession, url: Any) -> str:
    async with http.get(url) as r:
        return await r.text()


# --- the pid file ---------------------------------------------------------------------------------------------


def test_the_pid_file_is_written_through_no_symlink_another_user_planted_beside_it(tmp_path):
    """In a directory others may write (/run/shared, /tmp without protected_symlinks), a symlink planted at the
    temporary name must not make the gateway overwrite or chmod the file it points to."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    pid_file = tmp_path / "gateway.pid"
    (tmp_path / f".gateway.pid.{os.getpid()}").symlink_to(victim)
    write_pid_file(str(pid_file))
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert pid_file.read_text() == f"{os.getpid()}\n" and not pid_file.is_symlink()
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o644
    assert gateway_pid_ok(pid_file)


def test_a_pid_file_that_cannot_be_written_is_named_in_the_error(tmp_path):
    with pytest.raises(OSError) as caught:
        write_pid_file(str(tmp_path / "no-such-directory" / "gateway.pid"))
    assert caught.value.strerror == (f"cannot write the pid file {tmp_path}/no-such-directory/gateway.pid: "
                                     "No such file or directory")


def gateway_pid_ok(pid_file: Path) -> bool:
    """Whether `session-gateway reload` would trust the file (this process runs no gateway: it refuses later)."""
    try:
        gateway_pid(str(pid_file), "gateway.toml")
    except NoGateway as exc:
        return "is not session-gateway run" in str(exc)
    return True


async def test_two_hundred_reloads_under_traffic_leave_no_upstream_connection_nor_task_behind(
        aiohttp_server, start_upstream, http, tmp_path):
    upstream = await start_upstream(_answer("up"))
    path = tmp_path / "gateway.toml"
    gateway = await served(aiohttp_server, path, [route(upstream)])
    reloader = gateway.app[RELOADER]
    assert await _get_text(http, gateway.make_url("/x")) == "up"
    assert len(upstream.runner.server.connections) == 1  # the pool keeps it
    await asyncio.sleep(0.1)
    tasks_before = len(asyncio.all_tasks())
    for i in range(200):
        rewrite(path, [route(upstream, read_timeout=5 + i % 2)])
        assert await reloader.reload() is True
        assert await _get_text(http, gateway.make_url("/x")) == "up"
    for _ in range(200):
        if len(upstream.runner.server.connections) <= 2 and len(asyncio.all_tasks()) <= tasks_before + 2:
            break
        await asyncio.sleep(0.02)
    assert len(upstream.runner.server.connections) <= 2  # the current generation's idle one (and the client's)
    assert len(asyncio.all_tasks()) <= tasks_before + 2
    assert not gateway.app[GENERATIONS].draining


async def test_a_reload_that_removes_admin_keeps_the_token_until_a_restart_but_shows_the_new_routes(
        aiohttp_server, start_upstream, http, tmp_path, monkeypatch):
    """[admin] removed needs a restart (the token keeps working meanwhile, as the WARNING says); the rest of the
    file takes effect, the status page included: it must not go on showing the routes that no longer serve."""
    upstream = await start_upstream(_answer("up"))
    path = tmp_path / "gateway.toml"
    monkeypatch.setenv("REVIEW_ADMIN_TOKEN", "operator-token-0123456789")
    token = {"Authorization": "Bearer operator-token-0123456789"}
    gateway = await served(aiohttp_server, path, [route(upstream, name="old")],
                           admin={"token": "${REVIEW_ADMIN_TOKEN}"})
    rewrite(path, [route(upstream, name="new")])
    assert await gateway.app[RELOADER].reload() is True
    async with http.get(gateway.make_url("/.gateway/status.json"), headers=token) as r:
        assert r.status == 200
        assert [shown["name"] for shown in (await r.json())["routes"]] == ["new"]


async def test_a_reload_does_not_extend_every_active_okta_session_once_more(binding_keys, tmp_path):
    """extend_okta_on_activity refreshes an Okta session at most once an interval; the memo of when must outlive a
    reload, or every active user's next request after each reload costs one more call on the org's rate limit."""
    port = free_port(OKTA_HOST)
    world = await start_world([AppRoute("hr", route={"extend_okta_on_activity": 600})], org=sandbox_org(port),
                              okta_host=OKTA_HOST, okta_port=port, server={"stop_delay": 0})
    path = tmp_path / "gateway.toml"
    config = dict(world.config)
    path.write_text(toml_text(config.pop("route"), **config))
    settings = load(path)
    gateway = build_app(settings, clock=world.org.clock.timestamp)
    world.runners.append(await start_app(gateway, settings.server.host, settings.server.port,
                                         **handler_options(settings.server)))
    browser = Browser(Stack(world.org, settings, world.gateway_url, world.apps, gateway, world.runners))
    metrics = gateway[METRICS]

    async def extensions_after_a_page() -> float:
        assert (await browser.get("/page/1")).status == 200
        await asyncio.sleep(0.1)  # the background refresh lands
        return metrics.value("session_gateway_okta_extensions_total")

    try:
        assert (await browser.sign_in(ALICE)).status == 200
        once = await extensions_after_a_page()
        assert once >= 1 and await extensions_after_a_page() == once
        assert await gateway[RELOADER].reload() is True
        assert await extensions_after_a_page() == once
    finally:
        await browser.close()
        await world.close()
