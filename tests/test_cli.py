"""gateway/cli.py as an operator runs it: `python -m gateway.cli`, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from plugin_support import write_distribution
from policy_fleet_support import Gateway, PolicyFleet, fleet_settings
from stack_support import ADMIN_TOKEN
from store.links import wait_until

from gateway.store import redis as redis_link
from gateway.store.policies import MemoryPolicies

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "conf/gateway.example.toml"
GOOD_ROUTE = '[[route]]\nname = "a"\nupstream = "http://127.0.0.1:1"\n'


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --- check-config ---------------------------------------------------------------------------------------------


def test_check_config_on_the_example_exits_0():
    result = cli("check-config", "--config", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_check_config_says_the_file_is_valid():
    assert cli("check-config", "--config", EXAMPLE).stdout.splitlines()[0] == f"{EXAMPLE}: valid"


def test_check_config_prints_listen_address_and_prefix():
    line = cli("check-config", "--config", EXAMPLE).stdout.splitlines()[1]
    assert "127.0.0.1:8080" in line and "/.gateway/" in line


def test_check_config_prints_every_route_in_match_order():
    lines = cli("check-config", "--config", EXAMPLE).stdout.splitlines()
    assert lines[2].split()[:3] == ["route", "host", "path"]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == ["app-api", "app"]  # the longer prefix is tried first
    assert rows[0][:5] == ["app-api", "*", "/api", "http://127.0.0.1:9001", "/v2"]


def test_check_config_orders_routes_by_host_then_prefix(tmp_path):
    specs = [("star", "*", "/long/prefix"), ("exact", "a.example.com", "/"), ("wild", "*.example.com", "/")]
    config = write(tmp_path, "".join(
        f'[[route]]\nname = "{n}"\nhost = "{h}"\npath = "{p}"\nupstream = "http://127.0.0.1:1"\n'
        for n, h, p in specs))
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[3:]] == ["exact", "wild", "star"]


def test_check_config_on_a_bad_file_exits_2_with_one_line(tmp_path):
    bad = write(tmp_path, GOOD_ROUTE + "preserve_hots = true\n", "bad.toml")
    result = cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"{bad}: route[0] (a).preserve_hots: expected" in line and "preserve_host" in line
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_check_config_on_invalid_toml_exits_2_with_one_line(tmp_path):
    bad = write(tmp_path, "[server\n", "broken.toml")
    result = cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert str(bad) in one_line(result.stderr) and "Traceback" not in result.stderr


def test_check_config_on_a_missing_file_exits_2(tmp_path):
    missing = tmp_path / "nope.toml"
    result = cli("check-config", "--config", str(missing))
    assert result.returncode == 2
    assert str(missing) in one_line(result.stderr) and "Traceback" not in result.stderr


def cli_beside(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the distributions in `site` installed too (on PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(site)})


def test_check_config_naming_a_plugin_that_fails_to_load_exits_2_with_one_line(tmp_path):
    site = write_distribution(tmp_path / "site", "acme-plugins", {"acme": "acme_plugin.sources:Acme"})
    config = write(tmp_path, GOOD_ROUTE + 'sid_sources = ["saml", "acme"]\n')
    result = cli_beside(site, "check-config", "--config", str(config))
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result.stderr) == (
        f'session-gateway: {config}: route[0] (a).sid_sources: expected a loadable plugin; plugin "acme" (entry point '
        "acme_plugin.sources:Acme) failed to load: ModuleNotFoundError: No module named 'acme_plugin'")


def test_check_config_of_built_ins_only_is_valid_beside_a_plugin_that_fails_to_load(tmp_path):
    site = write_distribution(tmp_path / "site", "acme-plugins", {"acme": "acme_plugin.sources:Acme"})
    config = write(tmp_path, GOOD_ROUTE + 'sid_sources = ["saml", "cookie"]\napp_profile = "servlet"\n')
    result = cli_beside(site, "check-config", "--config", str(config))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[0] == f"{config}: valid"


def test_no_command_is_a_usage_error():
    result = cli()
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


# --- run ------------------------------------------------------------------------------------------------------


def test_run_with_a_bad_config_exits_2_without_traceback(tmp_path):
    bad = write(tmp_path, '[server]\nworkers = "two"\n' + GOOD_ROUTE, "bad.toml")
    result = cli("run", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}: server.workers: expected" in one_line(result.stderr) and "Traceback" not in result.stderr


def test_run_with_a_missing_config_exits_2(tmp_path):
    result = cli("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_run_on_a_port_in_use_exits_1_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write(tmp_path, f'[server]\nlisten = "127.0.0.1:{port}"\n' + GOOD_ROUTE)
        result = cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "in use" in one_line(result.stderr) and "Traceback" not in result.stderr
    assert "cannot listen on 127.0.0.1:" in result.stderr


def test_run_with_several_workers_on_a_port_in_use_exits_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write(tmp_path, f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n'
                                 '[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:9"\n' + GOOD_ROUTE)
        result = cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "in use" in result.stderr.splitlines()[-1] and "Traceback" not in result.stderr


# --- keygen ---------------------------------------------------------------------------------------------------


def test_keygen_prints_a_fresh_fernet_key_that_the_configuration_accepts(tmp_path: Path):
    from cryptography.fernet import Fernet

    first, second = cli("keygen"), cli("keygen")
    assert first.returncode == 0 and first.stdout != second.stdout
    key = one_line(first.stdout)
    Fernet(key)  # raises on anything that is not a key
    keys = write(tmp_path, key + "\n", "keys")
    config = write(tmp_path, f'[okta]\norg_url = "https://example.okta.com"\napi_token = "${{OKTA_API_TOKEN}}"\n'
                             f'[binding]\nkeys_file = "{keys}"\n{GOOD_ROUTE}')
    assert cli("check-config", "--config", str(config)).returncode == 0


# --- admin policy -------------------------------------------------------------------------------------------------


@pytest.fixture
async def gateways(aiohttp_server, redis_server, monkeypatch):
    """Two gateways on one Redis (tests/e2e/policy_fleet_support.py), and the operator token in the environment."""
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    made = PolicyFleet(aiohttp_server, redis_server.url, fleet_settings())
    yield made
    await made.close()


async def test_admin_policy_clear_returns_the_route_to_its_configured_policy_on_every_replica(gateways):
    a, b = await gateways.start(), await gateways.start()
    switched = await asyncio.to_thread(cli, "admin", "policy", "hr", "off", "--url", a.url())
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout == "route hr: policy enforce -> off (configured: enforce)\n"
    await wait_until(lambda: b.modes()["hr"] == "off")
    cleared = await asyncio.to_thread(cli, "admin", "policy", "hr", "--clear", "--url", b.url())
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout == "route hr: policy off -> enforce (the configured policy)\n" and cleared.stderr == ""
    await wait_until(lambda: a.modes()["hr"] == b.modes()["hr"] == "enforce")
    assert a.policies.override("hr") is None and b.policies.override("hr") is None


async def test_admin_policy_clear_works_on_one_gateway_with_the_memory_store(aiohttp_server, monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    gateway = Gateway(fleet_settings(), MemoryPolicies())
    gateway.server = await aiohttp_server(gateway.app)
    assert (await asyncio.to_thread(cli, "admin", "policy", "wiki", "enforce", "--url", gateway.url())).returncode == 0
    assert gateway.modes()["wiki"] == "enforce"
    cleared = await asyncio.to_thread(cli, "admin", "policy", "wiki", "--clear", "--url", gateway.url())
    assert cleared.stdout == "route wiki: policy enforce -> off (the configured policy)\n"
    assert gateway.modes()["wiki"] == "off"


@pytest.mark.parametrize("args", [("hr",), ("hr", "off", "--clear")])
def test_admin_policy_wants_a_mode_or_clear_not_both_nor_neither(args, monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    result = cli("admin", "policy", *args, "--url", "http://127.0.0.1:9/.gateway/")
    assert result.returncode == 2 and "either a mode" in one_line(result.stderr) and "Traceback" not in result.stderr


async def test_admin_policy_says_so_when_the_switch_reached_this_replica_only(gateways, redis_server):
    a = await gateways.start(timeout=0.2)
    redis_server.kill()
    result = await asyncio.to_thread(cli, "admin", "policy", "hr", "observe", "--url", a.url())
    assert result.returncode == 0 and result.stdout == "route hr: policy enforce -> observe (configured: enforce)\n"
    assert "this replica only" in one_line(result.stderr)


@pytest.mark.parametrize("suffix", ["", "/", "/.gateway", "/.gateway/"])
async def test_admin_takes_the_gateways_url_with_or_without_its_prefix(aiohttp_server, monkeypatch, suffix):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    gateway = Gateway(fleet_settings(), MemoryPolicies())
    gateway.server = await aiohttp_server(gateway.app)
    base = str(gateway.server.make_url("")).rstrip("/")
    result = await asyncio.to_thread(cli, "admin", "policy", "wiki", "observe", "--url", base + suffix)
    assert result.returncode == 0, result.stderr
    assert gateway.modes()["wiki"] == "observe"


async def test_admin_pointed_at_something_else_says_so_in_one_line(aiohttp_server, monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)

    async def not_the_gateway(request: web.Request) -> web.Response:
        return web.Response(text="<html>an app</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_the_gateway)
    server = await aiohttp_server(app)
    result = await asyncio.to_thread(cli, "admin", "policy", "hr", "off", "--url", str(server.make_url("/app/")))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "did not answer as the gateway's admin API does" in one_line(result.stderr)


def test_version_and_the_help_name_every_command():
    from gateway import __version__

    version = cli("--version")
    assert version.returncode == 0 and version.stdout == f"session-gateway {__version__}\n"
    shown = cli("--help").stdout
    for command in ("run", "reload", "check-config", "keygen", "admin", "sandbox", "demo"):
        assert f"\n    {command}" in shown, command
    assert "run | reload | check-config | keygen | admin | sandbox | demo" in " ".join(shown.split())
