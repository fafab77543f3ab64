"""`[metrics] listen` on `session-gateway run` itself: Prometheus scrapes /metrics there without a token, the
upstream latency of what was proxied included; nothing else is served there; the operator's /.gateway/metrics
still needs the token; with `workers = 2` each worker answers on its own port with its own counts; and the
addresses it cannot take are refused before anything listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, route, toml_text
from gateway.sandbox.stack import free_port


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET on a fresh connection (so that SO_REUSEPORT may pick any worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(url, headers=headers or {}) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        first = free_port()
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


async def upstream_app(aiohttp_server) -> str:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_prometheus_scrapes_the_metrics_listener_without_a_token(aiohttp_server, gateway_process):
    port = free_port()
    gateway = gateway_process([route(await upstream_app(aiohttp_server))], metrics={"listen": f"127.0.0.1:{port}"},
                              admin={"token": "${GATEWAY_ADMIN_TOKEN}"})
    for _ in range(3):
        assert (await get(gateway.url("/page")))[0] == 200
    status, content_type, text = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(text)
    assert found[("session_gateway_requests_total", (("route", "app"),))] == 3
    assert found[("session_gateway_upstream_latency_seconds_count", (("route", "app"),))] == 3
    assert found[("session_gateway_upstream_latency_seconds_bucket", (("le", "60.0"), ("route", "app")))] == 3
    assert 0 < found[("session_gateway_upstream_latency_seconds_sum", (("route", "app"),))] < 3
    assert all(name.startswith("session_gateway_") for name, _ in found)

    for path in ("/", "/.gateway/status", "/.gateway/status.json", "/.gateway/metrics", "/.gateway/readyz", "/page"):
        assert (await get(f"http://127.0.0.1:{port}{path}"))[0] == 404, path

    assert (await get(gateway.url("/.gateway/metrics")))[0] == 401  # the operator's stays behind the token
    token = os.environ["GATEWAY_ADMIN_TOKEN"]
    status, _, operators = await get(gateway.url("/.gateway/metrics"), {"Authorization": f"Bearer {token}"})
    assert status == 200 and "session_gateway_upstream_latency_seconds_bucket" in operators
    assert "Traceback" not in gateway.stop()


def test_without_the_table_nothing_listens_for_prometheus(gateway_process):
    port = free_port()
    gateway_process([route("http://127.0.0.1:9", required_for_ready=False)])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_with_two_workers_each_answers_on_its_own_port_with_its_own_counts(aiohttp_server, gateway_process,
                                                                                 redis_server):
    first = free_ports(2)
    gateway = gateway_process([route(await upstream_app(aiohttp_server))], server={"workers": 2},
                              store={"backend": "redis", "url": redis_server.url},
                              metrics={"listen": f"127.0.0.1:{first}"})
    sent = 40
    for _ in range(sent):
        assert (await get(gateway.url("/page")))[0] == 200  # a connection each: the kernel spreads them
    counts = []
    for port in (first, first + 1):
        status, _, text = await get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        found = samples(text)
        requests = found.get(("session_gateway_requests_total", (("route", "app"),)), 0.0)
        assert found.get(("session_gateway_upstream_latency_seconds_count", (("route", "app"),)), 0.0) == requests
        counts.append(requests)
    assert sum(counts) == sent  # every request counted once, by the worker that served it
    assert min(counts) > 0  # each port is a worker of its own (the kernel sends all 40 to one about once in 2**39)
    assert "Traceback" not in gateway.stop()


def run(tmp_path: Path, *sections: tuple[str, dict[str, object]],
        command: str = "run") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gateway.toml"
    config.write_text(toml_text([route("http://127.0.0.1:9")], **dict(sections)))
    return subprocess.run([sys.executable, "-m", "gateway.cli", command, "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_the_servers_own_address_is_a_configuration_error(tmp_path, command):
    port = free_port()
    done = run(tmp_path, ("server", {"listen": f"127.0.0.1:{port}"}), ("metrics", {"listen": f"0.0.0.0:{port}"}),
               command=command)
    assert done.returncode == 2
    assert done.stderr == (f"session-gateway: {tmp_path / 'gateway.toml'}: metrics.listen: expected an address other "
                           f"than [server] listen's (127.0.0.1:{port}): the metrics listener takes port {port}, got "
                           f"'0.0.0.0:{port}'\n")


def test_a_bad_listen_is_a_configuration_error(tmp_path):
    done = run(tmp_path, ("metrics", {"listen": "prometheus:9090"}))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "metrics.listen: expected an IP address (or \"localhost\") and a port" in done.stderr


def test_a_busy_metrics_port_fails_at_start_in_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        done = run(tmp_path, ("server", {"listen": f"127.0.0.1:{free_port()}"}),
                   ("metrics", {"listen": f"127.0.0.1:{port}"}))
    finally:
        busy.close()
    assert done.returncode == 1
    assert f"session-gateway: cannot listen on 127.0.0.1:{port}: Address already in use\n" in done.stderr
    assert "Traceback" not in done.stderr
