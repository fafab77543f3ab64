"""gateway/config/tables.py's [metrics]: the listener for Prometheus, an address like [server] listen's and never
the same one (with several workers, none of the ports they take); no table, no listener."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse
from gateway.settings import MetricsSettings

ROUTE = {"name": "app", "host": "*", "path": "/", "upstream": "http://127.0.0.1:9"}
REDIS = {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}  # workers > 1 need it


def metrics(table: dict[str, Any] | None, server: dict[str, Any] | None = None) -> MetricsSettings | None:
    data: dict[str, Any] = {"route": [ROUTE], "server": server or {"listen": "127.0.0.1:8080"}}
    if server and server.get("workers", 1) > 1:
        data["store"] = REDIS
    if table is not None:
        data["metrics"] = table
    return parse(data, "gw.toml").metrics


def error(table: dict[str, Any], server: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        metrics(table, server)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("gw.toml: metrics.")
    return message


def test_without_the_table_there_is_no_listener():
    assert metrics(None) is None


@pytest.mark.parametrize(("listen", "host", "port"), [
    ("0.0.0.0:9090", "0.0.0.0", 9090), ("127.0.0.1:9102", "127.0.0.1", 9102), ("[::]:9090", "::", 9090),
    ("localhost:9090", "localhost", 9090),
    ("10.0.0.5:8080", "10.0.0.5", 8080),  # the server's port on another address of the host: no collision
])
def test_the_listen_address(listen, host, port):
    assert metrics({"listen": listen}) == MetricsSettings(host, port)


def test_the_table_needs_an_address():
    message = error({})
    assert 'metrics.listen: expected an address "host:port" for Prometheus to scrape' in message


@pytest.mark.parametrize("listen", ["9090", ":9090", "0.0.0.0:", "0.0.0.0:http", "0.0.0.0:70000", "prometheus:9090",
                                    "0.0.0.0:9090/metrics"])
def test_a_listen_that_is_no_address_is_refused_as_servers_is(listen):
    message = error({"listen": listen})
    assert "metrics.listen: expected" in message and repr(listen) in message


def test_a_listen_that_is_no_string_is_refused():
    assert "metrics.listen: expected an address" in error({"listen": 9090})


def test_port_0_is_refused_since_prometheus_must_be_told_the_port():
    assert "expected a port from 1 to 65535 that Prometheus can be told, got '0.0.0.0:0'" in error(
        {"listen": "0.0.0.0:0"})


@pytest.mark.parametrize(("listen", "server"), [
    ("127.0.0.1:8080", "127.0.0.1:8080"), ("0.0.0.0:8080", "127.0.0.1:8080"), ("127.0.0.1:8080", "0.0.0.0:8080"),
    ("localhost:8080", "127.0.0.1:8080"), ("[::]:8080", "127.0.0.1:8080"), ("[::1]:8080", "[::1]:8080"),
])
def test_the_servers_own_address_is_refused(listen, server):
    message = error({"listen": listen}, {"listen": server})
    assert f"metrics.listen: expected an address other than [server] listen's ({server})" in message
    assert repr(listen) in message


def test_with_workers_each_takes_the_next_port_and_none_may_be_the_servers():
    assert metrics({"listen": "0.0.0.0:9090"}, {"listen": "127.0.0.1:8080", "workers": 4}) == MetricsSettings(
        "0.0.0.0", 9090)
    message = error({"listen": "0.0.0.0:8078"}, {"listen": "127.0.0.1:8080", "workers": 3})
    assert "the metrics listener takes ports 8078 to 8080, one a worker" in message
    assert metrics({"listen": "0.0.0.0:8081"}, {"listen": "127.0.0.1:8080", "workers": 3}) is not None


def test_with_workers_the_last_port_must_exist():
    message = error({"listen": "0.0.0.0:65535"}, {"listen": "127.0.0.1:8080", "workers": 2})
    assert "(with workers = 2, one port a worker up to 65536)" in message


def test_an_unknown_key_is_refused_with_a_did_you_mean():
    message = error({"listen": "0.0.0.0:9090", "lisen": "0.0.0.0:9091"})
    assert "metrics.lisen: expected one of listen (did you mean 'listen'?); this key is unknown" in message


def test_a_misspelt_listen_says_so():
    message = error({"lisen": "0.0.0.0:9090"})
    assert "it is missing, and lisen is an unknown key (a misspelling of listen?)" in message
