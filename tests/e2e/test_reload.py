"""Reloading a running `session-gateway run` process: SIGHUP, `session-gateway reload` and watch_config.

The gateway is a real process in front of the Okta sandbox and a legacy SAML app (as the fleet tests start it), with
Alice signed in through SAML; steady traffic from several client loops goes on while the configuration changes.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from fleet_support import start_replica
from okta_sandbox_support import ALICE, OKTA_HOST, sandbox_org
from stack_support import ADMIN_TOKEN, HOOK_SECRET, KEYS, SLOW_CACHE

from conftest import REPO, GatewayProcess, toml_text
from gateway.sandbox.browser import Browser
from gateway.sandbox.fleet import Fleet
from gateway.sandbox.stack import AppRoute, free_port, start_world

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.05)


async def text_of(url: str, **kwargs: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(url, allow_redirects=False, **kwargs) as r:
            return r.status, await r.text()


async def answering(start_upstream: Any, text: str) -> str:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text)

    server = await start_upstream(handler)
    return f"http://127.0.0.1:{server.port}"


class Traffic:
    """Client loops that each send requests one after the other, and count what failed."""

    def __init__(self) -> None:
        self.done = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, url: str, check: Callable[[int, str], bool], loops: int = 4, **kwargs: Any) -> None:
        for _ in range(loops):
            self._tasks.append(asyncio.get_running_loop().create_task(self._loop(url, check, kwargs)))

    async def _loop(self, url: str, check: Callable[[int, str], bool], kwargs: dict[str, Any]) -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                         timeout=aiohttp.ClientTimeout(total=20)) as http:
            while not self._stop.is_set():
                try:
                    async with http.get(url, allow_redirects=False, **kwargs) as r:
                        body = await r.text()
                        if not check(r.status, body):
                            self.failures.append(f"{url}: {r.status} {body[:80]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failures.append(f"{url}: {type(exc).__name__}: {exc}")
                self.done += 1

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def start_gateway(world: Any, config: dict[str, Any], path: Path, port: int) -> GatewayProcess:
    """`session-gateway run` of this configuration, started in a thread: this loop answers as Okta meanwhile."""
    routes = config.pop("route")
    process: GatewayProcess = await start_replica(GatewayProcess, toml_text(routes, **config), path, port)
    return process


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Replace the file as an editor saves it: a new file renamed over the old one."""
    config = dict(config)
    routes = config.pop("route")
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(toml_text(routes, **config))
    temporary.replace(path)


def reloads(metrics: str, result: str) -> float:
    found = re.search(rf'^session_gateway_config_reloads_total\{{result="{result}"\}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_reload_under_traffic_changes_routes_and_rotates_keys_and_a_broken_file_changes_nothing(
        binding_keys, start_upstream, tmp_path):
    one, two, new = [await answering(start_upstream, text) for text in ("one", "two", "new")]
    port = free_port(OKTA_HOST)
    world = await start_world([AppRoute("hr")], org=sandbox_org(port), okta_host=OKTA_HOST, okta_port=port,
                              okta=SLOW_CACHE, admin=True, server={"stop_delay": 0, "log_level": "info"})
    keys_file = tmp_path / "binding.keys"
    keys_file.write_text(KEYS[0] + "\n")
    config = {**world.config, "binding": {"keys_file": "binding.keys"}}
    echo = {"name": "echo", "host": "*", "path": "/echo/", "upstream": one}
    config["route"] = [*config["route"], echo]
    gateway_port = int(world.gateway_url.rpartition(":")[2])
    path = tmp_path / "gateway.toml"
    gateway = await start_gateway(world, dict(config), path, gateway_port)
    browser = Browser(Fleet(world, [gateway_port]))  # type: ignore[arg-type]
    traffic = Traffic()
    try:
        assert (await browser.sign_in(ALICE)).status == 200
        cookie = "; ".join(f"{m.key}={m.value}" for m in browser.http.cookie_jar if m["domain"] == "127.0.0.1")
        signed_in = {"headers": {"Cookie": cookie, "Accept": "application/json"}}
        traffic.start(gateway.url("/api/me"), lambda status, body: status == 200 and ALICE[0] in body, **signed_in)
        traffic.start(gateway.url("/echo/x"), lambda status, body: status == 200 and body in ("one", "two"))
        await asyncio.sleep(1.0)

        # one route added, one upstream changed, a new first binding key (the old one kept to open)
        keys_file.write_text(f"{KEYS[1]}\n{KEYS[0]}\n")
        reloaded = {**config, "route": [*config["route"][:-1], {**echo, "upstream": two},
                                        {"name": "new", "host": "*", "path": "/new/", "upstream": new}]}
        write_config(path, reloaded)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)

        async def new_route_answers() -> bool:
            return await text_of(gateway.url("/new/")) == (200, "new")

        await eventually(new_route_answers)
        assert await text_of(gateway.url("/echo/x")) == (200, "two")
        status, body = await text_of(gateway.url("/api/me"), **signed_in)  # sealed with the old key: still opens
        assert status == 200 and ALICE[0] in body
        await asyncio.sleep(1.0)
        await traffic.stop()
        assert traffic.done > 100 and traffic.failures == []

        # a broken file, then a bad value: nothing changes, one ERROR line each, counted
        path.write_text(path.read_text() + "\nthis is not toml\n")
        gateway.process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        write_config(path, {**reloaded, "route": [*reloaded["route"][:-1], {**reloaded["route"][-1],
                                                                            "read_timeout": -1}]})
        gateway.process.send_signal(signal.SIGHUP)

        async def counted() -> bool:
            status, text = await text_of(gateway.url("/.gateway/metrics"), headers=BEARER)
            return status == 200 and reloads(text, "failed") == 2

        await eventually(counted)
        assert await text_of(gateway.url("/new/")) == (200, "new")
        assert await text_of(gateway.url("/echo/x")) == (200, "two")
        status, body = await text_of(gateway.url("/api/me"), **signed_in)
        assert status == 200 and ALICE[0] in body
        status, text = await text_of(gateway.url("/.gateway/metrics"), headers=BEARER)
        assert reloads(text, "ok") == 1
    finally:
        await browser.close()
        if not traffic._stop.is_set():
            await traffic.stop()
        log = await asyncio.to_thread(gateway.stop)
        await world.close()
    reloaded_lines = [line for line in log.splitlines() if "configuration reloaded" in line]
    assert len(reloaded_lines) == 1, log
    line = reloaded_lines[0]
    assert "routes added: new" in line and "routes changed: echo" in line and "binding keys rotated" in line
    assert KEYS[0] not in log and KEYS[1] not in log
    failed = [line for line in log.splitlines() if " ERROR " in line]
    assert len(failed) == 2, log
    assert "expected valid TOML" in failed[0] and "nothing changed" in failed[0]
    assert "route[2].read_timeout" in failed[1] or "read_timeout" in failed[1]
    assert "Traceback" not in log


async def test_policy_overrides_survive_a_reload_and_the_status_shows_the_new_configured_policy(
        binding_keys, tmp_path):
    port = free_port(OKTA_HOST)
    world = await start_world([AppRoute("hr")], org=sandbox_org(port), okta_host=OKTA_HOST, okta_port=port,
                              okta=SLOW_CACHE, admin=True, server={"stop_delay": 0})
    path = tmp_path / "gateway.toml"
    config = dict(world.config)
    gateway = await start_gateway(world, dict(config), path, int(world.gateway_url.rpartition(":")[2]))
    try:
        async with aiohttp.ClientSession() as http:
            url = gateway.url("/.gateway/admin/routes/hr/policy")
            async with http.put(url, json={"mode": "off"}, headers=BEARER) as r:
                assert r.status == 200
            write_config(path, {**config, "route": [{**config["route"][0], "policy": "observe"}]})
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGHUP)

            async def configured_observe() -> bool:
                async with http.get(gateway.url("/.gateway/status.json"), headers=BEARER) as r:
                    routes = (await r.json())["routes"]
                    return bool(routes[0]["configured_policy"] == "observe")

            await eventually(configured_observe)
            async with http.get(gateway.url("/.gateway/status.json"), headers=BEARER) as r:
                route = (await r.json())["routes"][0]
            assert route["policy"] == "off" and route["configured_policy"] == "observe"
            assert route["policy_switch"] is not None
            async with http.get(gateway.url("/.gateway/status"), headers=BEARER) as r:
                page = await r.text()
            assert "observe" in page and "off" in page
    finally:
        await asyncio.to_thread(gateway.stop)
        await world.close()


def test_the_reload_command_validates_first_then_signals_the_gateway_that_runs_the_file(
        gateway_process, tmp_path):
    routes = [{"name": "a", "host": "*", "path": "/a/", "upstream": "http://127.0.0.1:9",
               "required_for_ready": False}]
    gateway = gateway_process(routes, server={"pid_file": "gateway.pid"})
    pid_file = gateway.config.parent / "gateway.pid"
    assert gateway.process is not None and pid_file.read_text().strip() == str(gateway.process.pid)

    def reload() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "reload", "--config", str(gateway.config)],
                              cwd=REPO, capture_output=True, text=True, timeout=30)

    text = gateway.config.read_text()
    gateway.config.write_text(text.replace('path = "/a/"', 'path = "/a/"\nread_timeout = "soon"'))
    refused = reload()
    assert refused.returncode == 2 and "read_timeout" in refused.stderr and "Traceback" not in refused.stderr
    gateway.config.write_text(text + '[[route]]\nname = "b"\nhost = "*"\npath = "/b/"\n'
                                     'upstream = "http://127.0.0.1:9"\n')
    done = reload()
    assert done.returncode == 0, done.stderr
    assert f"pid {gateway.process.pid}" in done.stdout
    deadline = time.monotonic() + 10
    while not _route_b_answers(gateway):
        assert time.monotonic() < deadline, "route b did not come"
        time.sleep(0.1)
    pid_file.chmod(0o666)
    untrusted = reload()
    assert untrusted.returncode == 1 and "not trusted" in untrusted.stderr
    pid_file.chmod(0o644)
    log = gateway.stop()
    assert "routes added: b" in log and not pid_file.exists()


def _route_b_answers(gateway: GatewayProcess) -> bool:
    """Whether /b/ reaches a route (its upstream refuses: 502) rather than none (404)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(gateway.url("/b/"), timeout=2) as r:
            return r.status != 404
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except OSError:
        return False


async def test_watch_config_reloads_once_per_save(gateway_process, start_upstream):
    first, second = await answering(start_upstream, "first"), await answering(start_upstream, "second")
    routes = [{"name": "a", "host": "*", "path": "/", "upstream": first}]
    gateway = await asyncio.to_thread(gateway_process, routes, server={"watch_config": True})
    assert await text_of(gateway.url("/")) == (200, "first")
    text = gateway.config.read_text()
    changed = text.replace(first, second)
    # an editor's save: a write, a rewrite and a rename within a few milliseconds
    temporary = gateway.config.with_name(gateway.config.name + "~")
    temporary.write_text(changed[:20])
    temporary.write_text(changed)
    temporary.replace(gateway.config)

    async def second_answers() -> bool:
        return await text_of(gateway.url("/")) == (200, "second")

    await eventually(second_answers)
    await asyncio.sleep(2.5)  # past the debounce: a second reload of the same save would have happened by now
    log = await asyncio.to_thread(gateway.stop)
    assert len([line for line in log.splitlines() if "configuration reloaded (file changed)" in line]) == 1, log


def test_with_several_workers_the_parent_passes_sighup_to_each_and_sigterm_stops_them_all(
        gateway_process, start_redis):
    redis = start_redis()
    routes = [{"name": "a", "host": "*", "path": "/a/", "upstream": "http://127.0.0.1:9",
               "required_for_ready": False}]
    gateway = gateway_process(routes, server={"workers": 2}, store={"backend": "redis", "url": redis.url})
    assert gateway.process is not None
    gateway.config.write_text(gateway.config.read_text() + '[[route]]\nname = "b"\nhost = "*"\npath = "/b/"\n'
                                                          'upstream = "http://127.0.0.1:9"\n')
    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while not _route_b_answers(gateway):
        assert time.monotonic() < deadline, "route b did not come"
        time.sleep(0.1)
    time.sleep(0.5)
    # each request on a new connection: SO_REUSEPORT spreads them over both workers
    assert all(_route_b_answers(gateway) for _ in range(40))
    assert gateway.process.poll() is None
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(15) == 0
    log = gateway.output()
    assert log.count("routes added: b") == 2 and log.count("session-gateway stopped") == 2, log


def test_a_sighup_that_comes_while_the_workers_start_reloads_each_of_them(gateway_process, start_redis):
    """The operator's SIGHUP reaches the parent as its workers are still building their apps: each worker keeps it
    and reloads once its reloader is in place, rather than serving the file as it was before the signal."""
    redis = start_redis()
    routes = [{"name": "a", "host": "*", "path": "/a/", "upstream": "http://127.0.0.1:9",
               "required_for_ready": False}]
    gateway = gateway_process(routes, wait=False, server={"workers": 2}, store={"backend": "redis", "url": redis.url})
    assert gateway.process is not None
    pid = gateway.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 20
    while len(children.read_text().split()) < 2:
        assert time.monotonic() < deadline and gateway.process.poll() is None, gateway.output()
        time.sleep(0.002)
    gateway.config.write_text(gateway.config.read_text() + '[[route]]\nname = "b"\nhost = "*"\npath = "/b/"\n'
                                                          'upstream = "http://127.0.0.1:9"\n')
    gateway.process.send_signal(signal.SIGHUP)
    gateway.wait(ready=False)  # route b's upstream, required for readiness, refuses
    deadline = time.monotonic() + 15
    while not _route_b_answers(gateway):
        assert time.monotonic() < deadline, "route b did not come"
        time.sleep(0.1)
    time.sleep(0.5)
    answers = [_route_b_answers(gateway) for _ in range(40)]
    assert all(answers), (answers, gateway.stop())  # both workers: a new connection each
    log = gateway.stop()
    assert log.count("routes added: b") == 2, log


async def test_watch_config_follows_each_configmap_update_not_only_the_first(start_upstream, tmp_path):
    """Kubernetes mounts a ConfigMap as gateway.toml -> ..data/gateway.toml, ..data -> ..<timestamp>/; an update
    writes a new timestamped directory, swaps ..data and removes the old directory. The watch must follow every
    update, not the directory it resolved at start (gone after the first), and a file beside it is no reload."""
    texts = [await answering(start_upstream, f"v{i}") for i in range(3)]
    port = free_port()
    mount = tmp_path / "mount"
    mount.mkdir()

    def publish(version: int) -> None:
        routes = [{"name": "a", "host": "*", "path": "/", "upstream": texts[version]}]
        data = mount / f"..2026_12_02_v{version}"
        data.mkdir()
        (data / "gateway.toml").write_text(toml_text(routes, server={"listen": f"127.0.0.1:{port}",
                                                                    "stop_delay": 0, "watch_config": True}))
        old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
        (mount / "..data_tmp").symlink_to(data.name)
        (mount / "..data_tmp").replace(mount / "..data")
        if old is not None:
            shutil.rmtree(mount / old)

    publish(0)
    (mount / "gateway.toml").symlink_to("..data/gateway.toml")
    gateway = GatewayProcess(mount / "gateway.toml", port)
    await asyncio.to_thread(gateway.start)
    try:
        assert await text_of(gateway.url("/")) == (200, "v0")
        for version in (1, 2):
            publish(version)

            async def answers_new(version: int = version) -> bool:
                return await text_of(gateway.url("/")) == (200, f"v{version}")

            await eventually(answers_new)
        (mount / "notes.txt").write_text("not the configuration")
        await asyncio.sleep(2.5)
    finally:
        log = await asyncio.to_thread(gateway.stop)
    assert log.count("configuration reloaded (file changed)") == 2, log


async def test_after_a_reload_a_dropped_binding_key_the_old_admin_token_and_the_old_hook_secret_open_nothing(
        binding_keys, tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_ADMIN_TOKEN_2", "a-second-operator-token-0123456789")
    monkeypatch.setenv("REVIEW_HOOK_SECRET_2", "a-second-hook-secret-0123456789")
    port = free_port(OKTA_HOST)
    world = await start_world([AppRoute("hr")], org=sandbox_org(port), okta_host=OKTA_HOST, okta_port=port,
                              okta={**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}}, admin=True,
                              server={"stop_delay": 0})
    keys_file = tmp_path / "binding.keys"
    keys_file.write_text(KEYS[0] + "\n")
    config = {**world.config, "binding": {"keys_file": "binding.keys"}}
    path = tmp_path / "gateway.toml"
    gateway = await start_gateway(world, dict(config), path, int(world.gateway_url.rpartition(":")[2]))
    browser = Browser(Fleet(world, [gateway.port]))  # type: ignore[arg-type]
    hooks = gateway.url("/.gateway/okta/events")

    async def hook_status(secret: str) -> int:
        async with aiohttp.ClientSession() as http, http.post(hooks, json={"data": {"events": []}},
                                                              headers={"Authorization": secret}) as r:
            return r.status

    try:
        assert (await browser.sign_in(ALICE)).status == 200
        cookie = "; ".join(f"{m.key}={m.value}" for m in browser.http.cookie_jar if m["domain"] == "127.0.0.1")
        signed_in = {"headers": {"Cookie": cookie, "Accept": "application/json"}}
        status, body = await text_of(gateway.url("/api/me"), **signed_in)
        assert status == 200 and ALICE[0] in body
        assert await hook_status(HOOK_SECRET) == 200
        keys_file.write_text(KEYS[1] + "\n")  # the old key dropped, not kept
        write_config(path, {**config, "admin": {"token": "${REVIEW_ADMIN_TOKEN_2}"},
                            "okta": {**config["okta"], "event_hook": {"secret": "${REVIEW_HOOK_SECRET_2}"}}})
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)

        async def new_token_works() -> bool:
            return (await text_of(gateway.url("/.gateway/status.json"), headers={
                "Authorization": "Bearer a-second-operator-token-0123456789"}))[0] == 200

        await eventually(new_token_works)
        assert (await text_of(gateway.url("/.gateway/status.json"), headers=BEARER))[0] == 401
        assert await hook_status(HOOK_SECRET) == 401
        assert await hook_status("a-second-hook-secret-0123456789") == 200
        status, body = await text_of(gateway.url("/api/me"), **signed_in)
        assert ALICE[0] not in body, (status, body)
    finally:
        await browser.close()
        log = await asyncio.to_thread(gateway.stop)
        await world.close()
    assert "binding keys rotated (1 keys, a new first key, 0 kept)" in log and "admin token changed" in log
    assert "event hook secret or header changed" in log and "Traceback" not in log


def test_the_reload_command_finds_a_gateway_started_with_config_equals_path(tmp_path):
    """`run --config=FILE` (a systemd unit's spelling) is the same gateway as `run --config FILE`."""
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(toml_text([{"name": "a", "host": "*", "path": "/", "upstream": "http://127.0.0.1:9",
                                  "required_for_ready": False}],
                                server={"listen": f"127.0.0.1:{port}", "stop_delay": 0, "pid_file": "gateway.pid"}))
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", f"--config={config}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "gateway.pid").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "reload", "--config", str(config)], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and f"pid {process.pid}" in done.stdout, done.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
