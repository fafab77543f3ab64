"""gateway/config/ (load, parse): TOML → frozen, validated settings.

Every error is one ConfigError whose message names the file, the key path and what was expected; these tests
check all three on every error they provoke. Plain dicts go through `parse()`; real files through `load()`.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from gateway.config import ConfigError, load, parse
from gateway.plugin import SourceOptions
from gateway.settings import (
    CookieSettings,
    EventHookSettings,
    LogoutRules,
    MetricsSettings,
    Mode,
    RouteSessions,
    SessionRules,
    Unbound,
    UniversalLogoutSettings,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "conf" / "gateway.example.toml"
SOURCE = "gw.toml"


def one_route(**overrides: Any) -> dict[str, Any]:
    return {"route": [{"name": "app", "upstream": "http://127.0.0.1:9000", **overrides}]}


def with_server(**server: Any) -> dict[str, Any]:
    return {"server": server, **one_route()}


def with_proxy(**proxy: Any) -> dict[str, Any]:
    return {"proxy": proxy, **one_route()}


def routes(*tables: dict[str, Any]) -> dict[str, Any]:
    return {"route": [{"upstream": "http://127.0.0.1:9000", **t} for t in tables]}


def error_of(data: dict[str, Any], where: str) -> str:
    """The message of the ConfigError that `data` raises; it must start with file, key path and 'expected'."""
    with pytest.raises(ConfigError) as caught:
        parse(data, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: {where}: expected"), message
    return message


# --- defaults -------------------------------------------------------------------------------------------------


def test_server_defaults():
    server = parse(one_route()).server
    assert (server.host, server.port, server.workers, server.prefix) == ("127.0.0.1", 8080, 1, "/.gateway/")
    assert (server.trusted_proxies, server.access_log, server.log_level, server.shutdown_timeout) == (
        (), False, "info", 10.0)


def test_proxy_defaults():
    proxy = parse(one_route()).proxy
    assert (proxy.pool_size, proxy.keepalive_timeout, proxy.websocket_max_message) == (256, 4.0, 16 * 2**20)


def test_route_defaults():
    route = parse(one_route()).routes.routes[0]
    assert (route.name, route.host, route.path, route.rewrite, route.preserve_host) == ("app", "*", "/", None, False)
    assert (route.connect_timeout, route.read_timeout, route.max_request_body) == (5.0, 60.0, 2**30)
    assert str(route.upstream) == "http://127.0.0.1:9000"
    assert route.required_for_ready is True
    assert parse(one_route(required_for_ready=False)).routes.routes[0].required_for_ready is False


def test_proxy_section_sets_the_route_defaults():
    settings = parse({"proxy": {"connect_timeout": 1, "read_timeout": 2.5, "max_request_body": "1KiB"}, **one_route()})
    route = settings.routes.routes[0]
    assert (route.connect_timeout, route.read_timeout, route.max_request_body) == (1.0, 2.5, 1024)


def test_a_route_overrides_the_proxy_defaults():
    settings = parse({"proxy": {"read_timeout": 2}, **one_route(read_timeout=9)})
    assert settings.routes.routes[0].read_timeout == 9.0


def test_source_is_kept():
    assert parse(one_route(), "somewhere.toml").source == "somewhere.toml"


def test_no_route_at_all_is_refused():
    error_of({}, "route")


def test_an_empty_route_array_is_refused():
    error_of({"route": []}, "route")


# --- the example file -----------------------------------------------------------------------------------------


def test_the_example_file_loads_so_every_key_in_it_is_known():
    settings = load(EXAMPLE)  # unknown keys are errors, so this proves each key in the example is real
    assert settings.source == str(EXAMPLE)
    assert [r.name for r in settings.routes.routes] == ["app", "app-api"]


def test_the_example_file_values():
    settings = load(EXAMPLE)
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.server.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert settings.proxy.websocket_max_message == 16 * 2**20
    assert settings.metrics == MetricsSettings("0.0.0.0", 9090)
    api = settings.routes.routes[1]
    assert (api.path, api.rewrite, api.connect_timeout, api.read_timeout, api.max_request_body) == (
        "/api", "/v2", 2.0, 30.0, 10 * 2**20)


def test_the_example_file_loads_from_a_str_path():
    assert load(str(EXAMPLE)).routes.routes[0].name == "app"


# --- unknown keys ---------------------------------------------------------------------------------------------


def test_unknown_route_key_gets_a_did_you_mean():
    message = error_of(one_route(preserve_hots=True), "route[0] (app).preserve_hots")
    assert "did you mean 'preserve_host'?" in message


def test_unknown_top_level_table_gets_a_did_you_mean():
    message = error_of({"sevrer": {"listen": "127.0.0.1:1"}, **one_route()}, "sevrer")
    assert "did you mean 'server'?" in message


def test_unknown_server_key_gets_a_did_you_mean():
    message = error_of(with_server(listn="127.0.0.1:1"), "server.listn")
    assert "did you mean 'listen'?" in message


def test_unknown_proxy_key_gets_a_did_you_mean():
    message = error_of(with_proxy(pool_sise=3), "proxy.pool_sise")
    assert "did you mean 'pool_size'?" in message


def test_unknown_key_far_from_any_known_key_lists_the_known_keys():
    message = error_of(with_server(zzzzzz=1), "server.zzzzzz")
    assert "did you mean" not in message and "listen" in message and "trusted_proxies" in message


def test_unknown_key_message_does_not_show_its_value():
    message = error_of(one_route(api_tokne="s3cr3t-value"), "route[0] (app).api_tokne")
    assert "s3cr3t-value" not in message


# --- wrong types ----------------------------------------------------------------------------------------------


def test_string_for_a_number_is_refused():
    error_of(with_server(workers="2"), "server.workers")


def test_string_for_seconds_is_refused():
    error_of(one_route(read_timeout="soon"), "route[0] (app).read_timeout")


def test_bool_for_an_int_is_refused():
    error_of(with_server(workers=True), "server.workers")


def test_bool_for_pool_size_is_refused():
    error_of(with_proxy(pool_size=True), "proxy.pool_size")


def test_bool_for_seconds_is_refused():
    error_of(one_route(connect_timeout=True), "route[0] (app).connect_timeout")


def test_bool_for_a_size_is_refused():
    error_of(one_route(max_request_body=True), "route[0] (app).max_request_body")


def test_float_for_an_int_is_refused():
    error_of(with_server(workers=1.5), "server.workers")


def test_number_for_a_string_is_refused():
    error_of(with_server(listen=8080), "server.listen")


def test_number_for_a_route_name_is_refused():
    error_of(one_route(name=3), "route[0].name")


def test_string_for_a_bool_is_refused():
    error_of(one_route(preserve_host="yes"), "route[0] (app).preserve_host")


def test_a_route_that_is_required_for_ready_is_said_with_a_bool():
    assert "expected true or false" in error_of(one_route(required_for_ready="no"), "route[0] (app).required_for_ready")


def test_int_for_a_bool_is_refused():
    error_of(with_server(access_log=1), "server.access_log")


def test_a_server_that_is_not_a_table_is_refused():
    error_of({"server": 5, **one_route()}, "server")


def test_route_as_a_single_table_is_refused():
    error_of({"route": {"name": "app", "upstream": "http://127.0.0.1:9000"}}, "route")


def test_a_route_that_is_not_a_table_is_refused():
    error_of({"route": [1]}, "route[0]")


def test_a_route_without_name_is_refused():
    error_of({"route": [{"upstream": "http://127.0.0.1:9000"}]}, "route[0].name")


def test_a_route_without_upstream_is_refused():
    error_of({"route": [{"name": "app"}]}, "route[0] (app).upstream")


@pytest.mark.parametrize("name", ["bad name", "-leading-dash", "x" * 65, "app\n"])
def test_bad_route_names_are_refused(name):
    error_of(one_route(name=name), f"route[0] ({name}).name")


@pytest.mark.parametrize(("key", "value"), [("workers", 0), ("workers", 65), ("log_level", "loud"),
                                            ("prefix", "gateway"), ("prefix", "/a/b/")])
def test_out_of_range_server_values_are_refused(key, value):
    error_of(with_server(**{key: value}), f"server.{key}")


def test_log_level_is_case_insensitive():
    assert parse(with_server(log_level="DEBUG")).server.log_level == "debug"


def test_pool_size_out_of_range_is_refused():
    error_of(with_proxy(pool_size=0), "proxy.pool_size")


# --- upstream URLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", ["http://127.0.0.1:9000", "https://app.internal:8443", "http://[::1]:8080",
                                      "http://app.internal", "http://app.internal:9000/"])
def test_good_upstream_urls(upstream):
    route = parse(one_route(upstream=upstream)).routes.routes[0]
    assert route.upstream_origin == upstream.rstrip("/")


@pytest.mark.parametrize(
    "upstream",
    [
        "ftp://h:21",  # scheme
        "http://",  # no host
        "h:9000",  # no scheme, no host
        "http://h:9000/base",  # a path (use rewrite)
        "http://h:9000?q=1",  # a query
        "http://h:9000/?q=1",
        "http://h:9000/#frag",  # a fragment
        "http://user:pw@h:9000",  # credentials
        "http://user@h:9000",
        "http://:pw@h:9000",  # a password without a user name is credentials too
        "http://h:99999",  # bad port
        "http://h:port",
        "http://h:0",  # nothing listens on port 0
    ],
)
def test_bad_upstream_urls_are_refused(upstream):
    error_of(one_route(upstream=upstream), "route[0] (app).upstream")


def test_credentials_in_an_upstream_url_are_not_echoed():
    message = error_of(one_route(upstream="http://admin:hunter2-pw@h:9000"), "route[0] (app).upstream")
    assert "hunter2-pw" not in message


# --- route names, duplicates, hidden routes -------------------------------------------------------------------


def test_duplicate_route_name_is_refused():
    message = error_of(routes({"name": "a", "path": "/x"}, {"name": "a", "path": "/y"}), "route[1].name")
    assert "route[0]" in message


def test_same_host_and_path_hides_a_route():
    message = error_of(routes({"name": "a", "path": "/app"}, {"name": "b", "path": "/app"}), "route[1] (b)")
    assert "route[0] (a) hides it" in message


def test_trailing_slash_does_not_make_a_path_different():
    message = error_of(routes({"name": "a", "path": "/app"}, {"name": "b", "path": "/app/"}), "route[1] (b)")
    assert "route[0] (a) hides it" in message


def test_host_case_does_not_make_a_host_different():
    data = routes({"name": "a", "host": "App.Example.com"}, {"name": "b", "host": "app.example.COM"})
    assert "route[0] (a) hides it" in error_of(data, "route[1] (b)")


def test_same_path_on_different_hosts_is_fine():
    settings = parse(routes({"name": "a", "host": "a.example.com", "path": "/app"},
                            {"name": "b", "host": "b.example.com", "path": "/app"}))
    assert [r.name for r in settings.routes.routes] == ["a", "b"]


@pytest.mark.parametrize("path", ["/.gateway", "/.gateway/", "/.gateway/healthz"])
def test_a_route_under_the_reserved_prefix_is_refused(path):
    message = error_of(one_route(path=path), "route[0] (app).path")
    assert "'/.gateway/'" in message


def test_the_reserved_prefix_follows_server_prefix():
    error_of({"server": {"prefix": "/_gw/"}, **one_route(path="/_gw/x")}, "route[0] (app).path")
    settings = parse({"server": {"prefix": "/_gw/"}, **one_route(path="/.gateway/x")})
    assert settings.routes.routes[0].path == "/.gateway/x"


def test_a_path_that_only_starts_like_the_prefix_is_fine():
    assert parse(one_route(path="/.gatewayish")).routes.routes[0].path == "/.gatewayish"


# --- host patterns --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "stored"), [("app.example.com", "app.example.com"),
                                              ("*.example.com", "*.example.com"), ("*", "*"),
                                              ("APP.Example.COM", "app.example.com"),
                                              ("127.0.0.1", "127.0.0.1"), ("localhost", "localhost")])
def test_valid_host_patterns(host, stored):
    assert parse(one_route(host=host)).routes.routes[0].host == stored


@pytest.mark.parametrize("host", ["a.*.com", "host:80", "http://x", "", "*.", "-a.com", "a..com", "a b.com",
                                  "app.example.com\n"])
def test_invalid_host_patterns(host):
    error_of(one_route(host=host), "route[0] (app).host")


# --- paths ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "stored"), [("/", "/"), ("/app", "/app"), ("/app/", "/app"), ("/a/b", "/a/b")])
def test_valid_paths_are_normalized(path, stored):
    assert parse(one_route(path=path)).routes.routes[0].path == stored


@pytest.mark.parametrize("path", ["app", "", "/a/../b", "/..", "/./a", "/a/.", "/a?b", "/a#b", "/a b", "\\a"])
def test_invalid_paths(path):
    error_of(one_route(path=path), "route[0] (app).path")


@pytest.mark.parametrize("rewrite", ["v2", "/v2/../x", "/v2?x"])
def test_invalid_rewrites(rewrite):
    error_of(one_route(path="/api", rewrite=rewrite), "route[0] (app).rewrite")


# --- ${ENV} substitution --------------------------------------------------------------------------------------


def test_env_reference_is_expanded(monkeypatch):
    monkeypatch.setenv("GW_TEST_UPSTREAM", "http://10.0.0.5:8080")
    assert str(parse(one_route(upstream="${GW_TEST_UPSTREAM}")).routes.routes[0].upstream) == "http://10.0.0.5:8080"


def test_env_reference_inside_a_string_is_expanded(monkeypatch):
    monkeypatch.setenv("GW_TEST_HOST", "10.0.0.6")
    route = parse(one_route(upstream="http://${GW_TEST_HOST}:81")).routes.routes[0]
    assert route.upstream_origin == "http://10.0.0.6:81"


def test_env_reference_in_a_list_of_strings_is_expanded(monkeypatch):
    monkeypatch.setenv("GW_TEST_NET", "10.1.0.0/16")
    server = parse(with_server(trusted_proxies=["${GW_TEST_NET}"])).server
    assert server.trusted_proxies == (ipaddress.ip_network("10.1.0.0/16"),)


def test_text_without_a_reference_is_kept():
    assert parse(one_route(path="/$app")).routes.routes[0].path == "/$app"


def test_missing_env_var_names_variable_and_key(monkeypatch):
    monkeypatch.delenv("GW_TEST_MISSING", raising=False)
    message = error_of(one_route(upstream="http://${GW_TEST_MISSING}:1"), "route[0] (app).upstream")
    assert "GW_TEST_MISSING" in message and "http://" not in message


def test_missing_env_var_in_server_names_variable_and_key(monkeypatch):
    monkeypatch.delenv("GW_TEST_MISSING", raising=False)
    assert "GW_TEST_MISSING" in error_of(with_server(listen="${GW_TEST_MISSING}"), "server.listen")


def test_bad_upstream_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "ftp://token-9f8e7d6c@h:1")
    message = error_of(one_route(upstream="${GW_TEST_SECRET}"), "route[0] (app).upstream")
    assert "token-9f8e7d6c" not in message and "environment" in message


def test_bad_listen_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret-9f8e7d6c")
    message = error_of(with_server(listen="${GW_TEST_SECRET}"), "server.listen")
    assert "secret-9f8e7d6c" not in message


def test_bad_size_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret-9f8e7d6c")
    message = error_of(one_route(max_request_body="${GW_TEST_SECRET}"), "route[0] (app).max_request_body")
    assert "secret-9f8e7d6c" not in message


def test_bad_host_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret:9f8e7d6c")
    message = error_of(one_route(host="${GW_TEST_SECRET}"), "route[0] (app).host")
    assert "9f8e7d6c" not in message


def test_reserved_path_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "/.gateway/secret-9f8e7d6c")
    message = error_of(one_route(path="${GW_TEST_SECRET}"), "route[0] (app).path")
    assert "secret-9f8e7d6c" not in message


def test_duplicate_name_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret-9f8e7d6c")
    data = routes({"name": "${GW_TEST_SECRET}", "path": "/x"}, {"name": "${GW_TEST_SECRET}", "path": "/y"})
    message = error_of(data, "route[1].name")
    assert "secret-9f8e7d6c" not in message


def test_hidden_route_with_host_from_env_is_not_echoed(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret-9f8e7d6c.example.com")
    data = routes({"name": "a", "host": "${GW_TEST_SECRET}"}, {"name": "b", "host": "${GW_TEST_SECRET}"})
    message = error_of(data, "route[1] (b)")
    assert "secret-9f8e7d6c" not in message


def test_a_string_from_env_for_a_number_is_refused_without_echo(monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "secret-9f8e7d6c")
    message = error_of(with_server(workers="${GW_TEST_SECRET}"), "server.workers")
    assert "secret-9f8e7d6c" not in message


# --- sizes ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "value"), [("512MiB", 512 * 2**20), ("1GiB", 2**30), ("10KB", 10_000),
                                             ("2 MB", 2_000_000), ("100", 100), ("100B", 100), (4096, 4096),
                                             (0, None), ("0", None), ("0MiB", None)])
def test_sizes(size, value):
    assert parse(one_route(max_request_body=size)).routes.routes[0].max_request_body == value


def test_zero_websocket_message_size_means_no_limit():
    assert parse(with_proxy(websocket_max_message=0)).proxy.websocket_max_message == 0


def test_zero_size_in_proxy_section_is_no_limit_for_routes():
    assert parse({"proxy": {"max_request_body": 0}, **one_route()}).routes.routes[0].max_request_body is None


@pytest.mark.parametrize("size", ["12XB", "MiB", "1.5MiB", "-1", "1 2MiB", "512mib"])
def test_bad_size_strings(size):
    message = error_of(one_route(max_request_body=size), "route[0] (app).max_request_body")
    assert repr(size) in message


def test_negative_size_is_refused():
    error_of(one_route(max_request_body=-5), "route[0] (app).max_request_body")


def test_float_size_is_refused():
    error_of(one_route(max_request_body=1.5), "route[0] (app).max_request_body")


# --- seconds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, 86401, float("inf"), float("nan")])
def test_bad_seconds(value):
    error_of(one_route(connect_timeout=value), "route[0] (app).connect_timeout")


@pytest.mark.parametrize("value", [0.001, 1, 86400])
def test_good_seconds(value):
    assert parse(one_route(read_timeout=value)).routes.routes[0].read_timeout == float(value)


def test_bad_shutdown_timeout():
    error_of(with_server(shutdown_timeout=0), "server.shutdown_timeout")


def test_bad_keepalive_timeout():
    error_of(with_proxy(keepalive_timeout=-1), "proxy.keepalive_timeout")


# --- listen addresses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("listen", "host", "port"), [("127.0.0.1:0", "127.0.0.1", 0), ("[::1]:8080", "::1", 8080),
                                                      ("localhost:80", "localhost", 80),
                                                      ("0.0.0.0:65535", "0.0.0.0", 65535), ("[::]:443", "::", 443)])
def test_good_listen_addresses(listen, host, port):
    server = parse(with_server(listen=listen)).server
    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize("listen", ["x", "1.2.3.4:99999", "host.example:80", ":80", "1.2.3.4", "1.2.3.4:",
                                    "1.2.3.4:-1", "1.2.3.4:http", "[::1]"])
def test_bad_listen_addresses(listen):
    error_of(with_server(listen=listen), "server.listen")


# --- trusted proxies ------------------------------------------------------------------------------------------


def test_trusted_proxies_networks_and_addresses():
    server = parse(with_server(trusted_proxies=["10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"])).server
    assert server.trusted_proxies == tuple(ipaddress.ip_network(n) for n in
                                           ["10.0.0.0/8", "192.168.1.7/32", "::1/128", "fd00::/8"])


def test_trusted_proxies_host_bits_are_masked():
    assert parse(with_server(trusted_proxies=["10.1.2.3/8"])).server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("value", [["nope"], ["10.0.0.0/33"], [5], ["10.0.0.0/8", "x"]])
def test_bad_trusted_proxies(value):
    error_of(with_server(trusted_proxies=value), "server.trusted_proxies")


def test_trusted_proxies_must_be_a_list():
    error_of(with_server(trusted_proxies="10.0.0.0/8"), "server.trusted_proxies")


# --- load() ---------------------------------------------------------------------------------------------------


def test_load_a_missing_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        load(missing)
    assert str(caught.value).startswith(f"{missing}: ")


def test_load_a_directory(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: ")


def test_load_invalid_toml(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nlisten = 1\n")
    with pytest.raises(ConfigError) as caught:
        load(broken)
    assert str(caught.value).startswith(f"{broken}: expected valid TOML")


def test_load_non_utf8_bytes(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n[[route]]\nname = \"a\"\nupstream = \"http://h:1\"\n")
    with pytest.raises(ConfigError) as caught:
        load(latin)
    assert str(caught.value).startswith(f"{latin}: expected UTF-8")


def test_load_errors_from_validation_name_the_file(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[[route]]\nname = "a"\nupstream = "http://h:1"\npreserve_hots = true\n')
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert str(caught.value).startswith(f"{config}: route[0] (a).preserve_hots: expected")


def test_load_a_good_file(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[server]\nlisten = "[::1]:0"\n\n[[route]]\nname = "a"\nhost = "*.example.com"\n'
                      'path = "/app/"\nupstream = "https://h:8443"\n')
    settings = load(config)
    assert (settings.server.host, settings.server.port) == ("::1", 0)
    route = settings.routes.routes[0]
    assert (route.host, route.path, route.upstream_origin) == ("*.example.com", "/app", "https://h:8443")


# --- settings are frozen --------------------------------------------------------------------------------------


def test_settings_are_frozen():
    settings = parse(one_route())
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


# --- purity ---------------------------------------------------------------------------------------------------


def test_config_and_routing_import_no_aiohttp():
    code = "import sys, gateway.config, gateway.routing; print(sorted(m for m in sys.modules if 'aiohttp' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- [okta] and the routes' fail modes ------------------------------------------------------------------


def with_okta(**okta: Any) -> dict[str, Any]:
    return {"okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}", **okta},
            "binding": {"keys": "${GATEWAY_BINDING_KEYS}"}, **one_route()}


def test_okta_settings_and_their_defaults():
    okta = parse(with_okta()).okta
    assert okta is not None
    assert str(okta.org_url) == "https://example.okta.com" and okta.api_token == os.environ["OKTA_API_TOKEN"]
    assert (okta.cache.ttl, okta.cache.negative_ttl, okta.timeout, okta.retries) == (60.0, 30.0, 5.0, 2)
    assert os.environ["OKTA_API_TOKEN"] not in repr(parse(with_okta()))


def test_without_an_okta_table_nothing_is_validated():
    assert parse(one_route()).okta is None


@pytest.mark.parametrize("token", ["00abcdefghijklmnop", "prefix-${OKTA_API_TOKEN}", 5])
def test_the_api_token_must_come_from_the_environment(token):
    message = error_of(with_okta(api_token=token), "okta.api_token")
    assert "00abcdefghijklmnop" not in message and "environment" in message


@pytest.mark.parametrize("org", ["example.okta.com", "https://example.okta.com/oauth2", "ftp://x"])
def test_the_org_url_is_an_origin(org):
    error_of(with_okta(org_url=org), "okta.org_url")


@pytest.mark.parametrize(("key", "value"), [("cache_ttl", 0), ("revalidate", -1), ("retries", 9),
                                             ("rate_limit_stretch", 0.5), ("max_entries", 0), ("cache_tll", 5)])
def test_bad_okta_values(key, value):
    error_of(with_okta(**{key: value}), f"okta.{key}")


def test_the_budget_of_unknown_session_ids():
    okta = parse(with_okta()).okta
    assert okta is not None and (okta.unknown_ids_per_second, okta.unknown_ids_per_client) == (5.0, 1.0)
    okta = parse(with_okta(unknown_ids_per_second=20, unknown_ids_per_client=0.5)).okta
    assert okta is not None and (okta.unknown_ids_per_second, okta.unknown_ids_per_client) == (20.0, 0.5)


@pytest.mark.parametrize("key", ["unknown_ids_per_second", "unknown_ids_per_client"])
@pytest.mark.parametrize("value", [0, -1, 1001, float("inf"), float("nan"), True, "5", [5]])
def test_a_budget_of_unknown_ids_is_a_number_per_second_above_0(key, value):
    message = error_of(with_okta(**{key: value}), f"okta.{key}")
    assert "above 0 and at most 1000" in message


def test_fail_modes():
    assert parse(one_route()).routes.routes[0].grace is None
    assert parse(one_route(fail_mode="grace")).routes.routes[0].grace == 300.0
    assert parse(one_route(fail_mode="grace", grace_seconds=30)).routes.routes[0].grace == 30.0
    error_of(one_route(fail_mode="open"), "route[0] (app).fail_mode")
    error_of(one_route(grace_seconds=30), "route[0] (app).grace_seconds")


# --- a route's session binding (policy, profile, sources, binding cookie) and [binding] keys ---------------------

OKTA = {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"}
BINDING = {"keys": "${GATEWAY_BINDING_KEYS}"}
ROUTE = "route[0] (app)"
KEY_1 = "fOhJQXD8l0yZ0hn6cx6-d9Hkcb1wOlc6L5rbYJkp6Ls="
KEY_2 = "q3Pp2pz8m7s6b5Kx9yW1vT0uR4eE8iI2oO6aA0sS3dU="
NOT_A_KEY = "this-is-my-secret-binding-key-text"


def bound_route(binding: dict[str, Any] | None = None, **route: Any) -> dict[str, Any]:
    """One route with [okta] and [binding] keys, so that it binds sessions (policy enforce by default)."""
    return {"okta": OKTA, "binding": BINDING if binding is None else binding, **one_route(**route)}


def sessions_of(data: dict[str, Any]) -> RouteSessions:
    sessions = parse(data, SOURCE).routes.routes[0].sessions
    assert sessions is not None
    return sessions


def test_route_sessions_defaults_with_okta():
    s = sessions_of(bound_route())
    assert s.mode is Mode.ENFORCE and s.profile.name == "generic"
    assert (s.profile.session_cookies, s.profile.acs_path, s.profile.sign_in_url) == (("session",), "/saml/acs",
                                                                                      "/login")
    assert s.sources == ("saml",) and s.source_options == SourceOptions()
    assert s.rules == SessionRules(unbound=Unbound.RELOGIN, idle_timeout=None, extend_okta_every=None,
                                   touch_every=60.0)
    assert s.cookie == CookieSettings() and s.app_cookie_domain is None


def test_without_okta_a_route_binds_nothing():
    assert parse(one_route()).routes.routes[0].sessions is None
    assert parse(one_route(policy="off")).routes.routes[0].sessions is None
    assert parse(one_route()).binding_keys == ()


@pytest.mark.parametrize("policy", ["enforce", "observe"])
def test_a_binding_policy_without_okta_is_refused(policy):
    message = error_of(one_route(policy=policy), f"{ROUTE}.policy")
    assert '"off"' in message and "[okta]" in message and repr(policy) in message


@pytest.mark.parametrize(("policy", "mode"), [("enforce", Mode.ENFORCE), ("observe", Mode.OBSERVE),
                                              ("off", Mode.OFF)])
def test_policies_with_okta(policy, mode):
    assert sessions_of(bound_route(policy=policy)).mode is mode


@pytest.mark.parametrize("policy", ["strict", "Enforce", ""])
def test_an_unknown_policy_is_refused(policy):
    message = error_of(bound_route(policy=policy), f"{ROUTE}.policy")
    assert "one of enforce, observe, off" in message


@pytest.mark.parametrize("policy", [1, True, ["enforce"]])
def test_a_policy_that_is_not_a_string_is_refused(policy):
    error_of(bound_route(policy=policy), f"{ROUTE}.policy")


def test_unbound_values():
    assert sessions_of(bound_route()).rules.unbound is Unbound.RELOGIN
    assert sessions_of(bound_route(unbound="allow")).rules.unbound is Unbound.ALLOW
    assert sessions_of(bound_route(unbound="relogin")).rules.unbound is Unbound.RELOGIN


@pytest.mark.parametrize("unbound", ["deny", "Allow", "", 0])
def test_an_unknown_unbound_value_is_refused(unbound):
    message = error_of(bound_route(unbound=unbound), f"{ROUTE}.unbound")
    assert '"relogin" or "allow"' in message


def test_an_unknown_app_profile_lists_the_known_ones():
    message = error_of(bound_route(app_profile="websphere"), f"{ROUTE}.app_profile")
    assert "one of aspnet, generic, mellon, php, servlet, shibboleth, simplesamlphp, spring-saml" in message
    assert "'websphere'" in message


def test_an_unknown_sid_source_lists_the_known_ones():
    message = error_of(bound_route(sid_sources=["saml", "magic"]), f"{ROUTE}.sid_sources")
    assert "one of cookie, header, saml" in message and "'magic'" in message


@pytest.mark.parametrize("sources", [[5], "saml", ["saml", None]])
def test_sid_sources_must_be_a_list_of_names(sources):
    error_of(bound_route(sid_sources=sources), f"{ROUTE}.sid_sources")


def test_a_named_profile_is_used():
    profile = sessions_of(bound_route(app_profile="shibboleth")).profile
    assert profile.session_cookies == ("_shibsession_*",) and profile.acs_path == "/Shibboleth.sso/SAML2/POST"
    assert profile.logout_url == "/Shibboleth.sso/Logout"


def test_profile_overrides_are_applied():
    profile = sessions_of(bound_route(
        app_profile="shibboleth", app_cookies=["JSESSIONID", "_shibsession_*"], acs_path="/sso/acs",
        sign_in_url="https://idp.example.com/sso?app=1", logout_paths=["/bye", "/signout"], app_logout_url="/bye",
        app_cookie_path="/app")).profile
    assert profile.name == "shibboleth"
    assert profile.session_cookies == ("JSESSIONID", "_shibsession_*") and profile.acs_path == "/sso/acs"
    assert profile.sign_in_url == "https://idp.example.com/sso?app=1"
    assert profile.logout_paths == ("/bye", "/signout") and profile.logout_url == "/bye"
    assert profile.cookie_path == "/app"


def test_an_override_leaves_the_other_profile_values_alone():
    profile = sessions_of(bound_route(app_profile="mellon", acs_path="/x/acs")).profile
    assert profile.acs_path == "/x/acs"
    assert (profile.session_cookies, profile.sign_in_url, profile.logout_url) == (("mellon-cookie",), "/mellon/login",
                                                                                  "/mellon/logout")


@pytest.mark.parametrize("url", ["https://app.example.com/logout", "//evil.example/logout", "logout", ""])
def test_app_logout_url_must_be_a_path_on_the_app(url):
    message = error_of(bound_route(app_logout_url=url), f"{ROUTE}.app_logout_url")
    assert "path" in message


@pytest.mark.parametrize(("key", "value"), [
    ("app_cookies", []), ("app_cookies", ["bad name"]), ("app_cookies", ["a;b"]), ("app_cookies", [5]),
    ("app_cookies", "JSESSIONID"), ("acs_path", "saml/acs"), ("sign_in_url", "login"),
    ("sign_in_url", "//evil.example/login"), ("sign_in_url", "ftp://idp.example/login"),
    ("logout_paths", ["logout"]), ("logout_paths", "/logout"), ("app_cookie_path", "app"),
])
def test_bad_profile_overrides_are_refused(key, value):
    error_of(bound_route(**{key: value}), f"{ROUTE}.{key}")


def test_the_header_source_needs_the_addresses_it_trusts():
    message = error_of(bound_route(sid_sources=["header"]), f"{ROUTE}.session_id_header_from")
    assert "X-Okta-Session-Id" in message
    message = error_of(bound_route(sid_sources=["header"], session_id_header="X-Sid"),
                       f"{ROUTE}.session_id_header_from")
    assert "X-Sid" in message


def test_source_options_are_read():
    s = sessions_of(bound_route(sid_sources=["saml", "cookie", "header"], saml_session_attribute="sessionId",
                                okta_cookie="idx", session_id_header="X-Sid",
                                session_id_header_from=["10.0.0.0/8", "::1"]))
    assert s.sources == ("saml", "cookie", "header")
    assert s.source_options == SourceOptions("sessionId", "idx", "X-Sid", ("10.0.0.0/8", "::1"))


@pytest.mark.parametrize("trusted", [["nope"], ["10.0.0.0/33"], [5], "10.0.0.0/8"])
def test_bad_trusted_header_addresses_are_refused(trusted):
    error_of(bound_route(sid_sources=["header"], session_id_header_from=trusted), f"{ROUTE}.session_id_header_from")


@pytest.mark.parametrize(("idle", "touch_every"), [(300, 30.0), (5, 0.5), (600, 60.0), (1200, 60.0), (86400, 60.0)])
def test_idle_timeout_sets_touch_every_to_a_tenth_of_it_at_most_a_minute(idle, touch_every):
    rules = sessions_of(bound_route(idle_timeout=idle)).rules
    assert rules.idle_timeout == float(idle) and rules.touch_every == touch_every


def test_extend_okta_on_activity_is_read():
    assert sessions_of(bound_route(extend_okta_on_activity=300)).rules.extend_okta_every == 300.0
    assert sessions_of(bound_route()).rules.extend_okta_every is None


@pytest.mark.parametrize("key", ["idle_timeout", "extend_okta_on_activity"])
@pytest.mark.parametrize("value", [0, -1, 86401, "5m", True])
def test_bad_session_timeouts_are_refused(key, value):
    error_of(bound_route(**{key: value}), f"{ROUTE}.{key}")


def test_app_cookie_domain_is_read():
    assert sessions_of(bound_route(app_cookie_domain=".example.com")).app_cookie_domain == ".example.com"


def test_an_unknown_session_key_gets_a_did_you_mean():
    message = error_of(bound_route(idle_timout=60), f"{ROUTE}.idle_timout")
    assert "did you mean 'idle_timeout'?" in message


# --- binding_cookie ------------------------------------------------------------------------------------------------


def test_binding_cookie_settings():
    cookie = sessions_of(bound_route(binding_cookie={"name": "gw_hr", "path": "/hr", "domain": "example.com",
                                                     "secure": True, "httponly": False,
                                                     "samesite": "Strict"})).cookie
    assert cookie == CookieSettings("gw_hr", "/hr", "example.com", True, False, "Strict")


@pytest.mark.parametrize(("secure", "stored"), [(True, True), (False, False), ("auto", None)])
def test_binding_cookie_secure(secure, stored):
    assert sessions_of(bound_route(binding_cookie={"secure": secure})).cookie.secure is stored


@pytest.mark.parametrize("secure", ["yes", "true", "", 1])
def test_binding_cookie_secure_other_values_are_refused(secure):
    message = error_of(bound_route(binding_cookie={"secure": secure}), f"{ROUTE}.binding_cookie.secure")
    assert '"auto"' in message


def test_samesite_none_needs_a_secure_cookie():
    message = error_of(bound_route(binding_cookie={"samesite": "None", "secure": False}),
                       f"{ROUTE}.binding_cookie.samesite")
    assert "secure = true" in message
    assert sessions_of(bound_route(binding_cookie={"samesite": "None", "secure": True})).cookie.samesite == "None"
    error_of(bound_route(binding_cookie={"samesite": "None"}), f"{ROUTE}.binding_cookie.samesite")  # "auto" too


@pytest.mark.parametrize(("key", "value"), [("samesite", "lax"), ("samesite", "Sometimes"), ("name", "bad name"),
                                            ("name", "a;b"), ("name", ""), ("path", "hr"), ("httponly", "yes"),
                                            ("domain", 5)])
def test_bad_binding_cookie_values_are_refused(key, value):
    error_of(bound_route(binding_cookie={key: value}), f"{ROUTE}.binding_cookie.{key}")


def test_an_unknown_binding_cookie_key_gets_a_did_you_mean():
    message = error_of(bound_route(binding_cookie={"secur": True}), f"{ROUTE}.binding_cookie.secur")
    assert "did you mean 'secure'?" in message


def test_binding_cookie_must_be_a_table():
    error_of(bound_route(binding_cookie="gw"), f"{ROUTE}.binding_cookie")


# --- [binding] keys ------------------------------------------------------------------------------------------------


def test_binding_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", KEY_1)
    assert parse(bound_route()).binding_keys == (KEY_1,)


@pytest.mark.parametrize("separator", [",", " ", "\n", ", ", "\n\n"])
def test_several_binding_keys_in_the_environment(monkeypatch, separator):
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", f"{KEY_1}{separator}{KEY_2}")
    assert parse(bound_route()).binding_keys == (KEY_1, KEY_2)


@pytest.mark.parametrize("literal", [KEY_1, f"{KEY_1},{KEY_2}", [KEY_1], "x${GATEWAY_BINDING_KEYS}", 5])
def test_a_literal_binding_key_is_refused_and_never_shown(literal):
    message = error_of(bound_route({"keys": literal}), "binding.keys")
    assert "environment" in message and KEY_1 not in message and KEY_2 not in message
    assert KEY_1[:10] not in message


def test_a_missing_environment_variable_for_the_keys_is_named(monkeypatch):
    monkeypatch.delenv("GATEWAY_BINDING_KEYS")
    message = error_of(bound_route(), "binding.keys")
    assert "GATEWAY_BINDING_KEYS" in message


def test_binding_keys_from_a_file(tmp_path):
    path = tmp_path / "binding.keys"
    path.write_text(f"{KEY_1}\n{KEY_2}\n")
    assert parse(bound_route({"keys_file": str(path)})).binding_keys == (KEY_1, KEY_2)


def test_keys_and_keys_file_together_are_refused(tmp_path):
    path = tmp_path / "binding.keys"
    path.write_text(KEY_1)
    message = error_of(bound_route({"keys": "${GATEWAY_BINDING_KEYS}", "keys_file": str(path)}), "binding.keys_file")
    assert "not both" in message


def test_an_unreadable_keys_file_is_named(tmp_path):
    missing = tmp_path / "nope.keys"
    message = error_of(bound_route({"keys_file": str(missing)}), "binding.keys_file")
    assert str(missing) in message


def test_a_keys_file_that_is_not_ascii_is_refused_without_its_text(tmp_path):
    path = tmp_path / "binding.keys"
    path.write_bytes("clé-secrète".encode())
    message = error_of(bound_route({"keys_file": str(path)}), "binding.keys_file")
    assert "secr" not in message


@pytest.mark.parametrize("keys", [NOT_A_KEY, f"{KEY_1},{NOT_A_KEY}", f"{KEY_1}={KEY_2}", KEY_1[:-2]])
def test_a_key_that_is_not_a_fernet_key_is_refused_without_its_text(monkeypatch, tmp_path, keys):
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", keys)
    message = error_of(bound_route(), "binding.keys")
    assert "Fernet" in message and NOT_A_KEY not in message and KEY_1[:10] not in message
    path = tmp_path / "binding.keys"
    path.write_text(keys.replace(",", "\n"))
    message = error_of(bound_route({"keys_file": str(path)}), "binding.keys_file")
    assert "Fernet" in message and NOT_A_KEY not in message and KEY_1[:10] not in message


@pytest.mark.parametrize("value", ["", "  ", ",\n"])
def test_no_keys_at_all_is_refused(monkeypatch, tmp_path, value):
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", value)
    error_of(bound_route(), "binding.keys")
    path = tmp_path / "binding.keys"
    path.write_text(value)
    error_of(bound_route({"keys_file": str(path)}), "binding.keys_file")


def test_missing_keys_while_a_route_binds_points_to_keygen():
    message = error_of({"okta": OKTA, **one_route()}, "binding.keys")
    assert "session-gateway keygen" in message
    message = error_of(bound_route({}), "binding.keys")
    assert "session-gateway keygen" in message


def test_no_keys_are_needed_when_no_route_binds():
    assert parse(one_route()).binding_keys == ()


def test_an_unknown_binding_key_gets_a_did_you_mean():
    message = error_of(bound_route({"keys": "${GATEWAY_BINDING_KEYS}", "key_file": "x"}), "binding.key_file")
    assert "did you mean 'keys_file'?" in message


def test_keys_made_by_fernet_are_accepted(monkeypatch):
    fresh = Fernet.generate_key().decode()
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", fresh)
    assert parse(bound_route()).binding_keys == (fresh,)


def test_binding_keys_never_appear_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", f"{KEY_1},{KEY_2}")
    text = repr(parse(bound_route()))
    assert KEY_1 not in text and KEY_2 not in text


# --- [okta.event_hook] ---------------------------------------------------------------------------------------------

HOOK_SECRET = "a-hook-secret-of-32-characters-x"


@pytest.fixture
def hook_secret(monkeypatch):
    monkeypatch.setenv("OKTA_HOOK_SECRET", HOOK_SECRET)


def hooked(**hook: Any) -> dict[str, Any]:
    return with_okta(event_hook={"secret": "${OKTA_HOOK_SECRET}", **hook})


def test_without_an_event_hook_table_there_is_no_hook():
    okta = parse(with_okta()).okta
    assert okta is not None and okta.event_hook is None and okta.universal_logout is None


def test_the_event_hook_secret_comes_from_the_environment_with_the_authorization_header(hook_secret):
    okta = parse(hooked()).okta
    assert okta is not None and okta.event_hook == EventHookSettings(HOOK_SECRET, "Authorization")
    assert HOOK_SECRET not in repr(parse(hooked()))


def test_the_event_hook_header_can_be_named(hook_secret):
    okta = parse(hooked(header="X-Okta-Hook-Auth")).okta
    assert okta is not None and okta.event_hook is not None and okta.event_hook.header == "X-Okta-Hook-Auth"


@pytest.mark.parametrize("secret", [HOOK_SECRET, "x${OKTA_HOOK_SECRET}", "${OKTA_HOOK_SECRET}x", 5,
                                    [HOOK_SECRET], True])
def test_a_literal_event_hook_secret_is_refused_and_never_shown(hook_secret, secret):
    message = error_of(with_okta(event_hook={"secret": secret}), "okta.event_hook.secret")
    assert "environment" in message and HOOK_SECRET not in message and HOOK_SECRET[:8] not in message


def test_an_event_hook_without_a_secret_is_refused():
    message = error_of(with_okta(event_hook={"header": "Authorization"}), "okta.event_hook.secret")
    assert "environment" in message


@pytest.mark.parametrize("secret", ["", "x", "fifteen-chars-x", "0123456789abcde"])
def test_an_event_hook_secret_under_16_characters_is_refused_and_never_shown(monkeypatch, secret):
    monkeypatch.setenv("OKTA_HOOK_SECRET", secret)
    message = error_of(hooked(), "okta.event_hook.secret")
    assert "16 characters" in message and message.endswith("got a value from the environment (not shown)")
    assert len(secret) < 3 or secret not in message


def test_an_event_hook_secret_of_16_characters_is_enough(monkeypatch):
    monkeypatch.setenv("OKTA_HOOK_SECRET", "s" * 16)
    okta = parse(hooked()).okta
    assert okta is not None and okta.event_hook is not None and okta.event_hook.secret == "s" * 16


def test_a_missing_environment_variable_for_the_hook_secret_is_named(monkeypatch):
    monkeypatch.delenv("OKTA_HOOK_SECRET", raising=False)
    message = error_of(hooked(), "okta.event_hook.secret")
    assert "OKTA_HOOK_SECRET" in message


@pytest.mark.parametrize("header", ["bad header", "", "X-Auth:", "Authorization\r\nX: y", "é", "a" * 65, 5, True])
def test_a_bad_event_hook_header_name_is_refused(hook_secret, header):
    message = error_of(hooked(header=header), "okta.event_hook.header")
    assert HOOK_SECRET not in message


def test_an_unknown_event_hook_key_gets_a_did_you_mean_and_hides_the_secret(hook_secret):
    message = error_of(hooked(headr="X-Auth"), "okta.event_hook.headr")
    assert "did you mean 'header'?" in message and HOOK_SECRET not in message
    message = error_of(with_okta(event_hook={"secret": "${OKTA_HOOK_SECRET}", "secrte": HOOK_SECRET}),
                       "okta.event_hook.secrte")
    assert "did you mean 'secret'?" in message and HOOK_SECRET not in message


def test_the_event_hook_must_be_a_table():
    error_of(with_okta(event_hook="${OKTA_HOOK_SECRET}"), "okta.event_hook")


# --- [okta.universal_logout] ----------------------------------------------------------------------------------------

ENDPOINT = "https://app.example.com/.gateway/okta/universal-logout"


def test_universal_logout_settings_and_the_default_leeway():
    okta = parse(with_okta(universal_logout={"endpoint_url": ENDPOINT})).okta
    assert okta is not None and okta.universal_logout == UniversalLogoutSettings(ENDPOINT, 60.0)


@pytest.mark.parametrize("leeway", [0, 30.5, 600])
def test_universal_logout_leeway_bounds_are_inclusive(leeway):
    okta = parse(with_okta(universal_logout={"endpoint_url": ENDPOINT, "leeway": leeway})).okta
    assert okta is not None and okta.universal_logout is not None and okta.universal_logout.leeway == leeway


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/.gateway/okta/universal-logout", "https://gw.example.com"])
def test_http_and_https_endpoints_are_accepted(url):
    okta = parse(with_okta(universal_logout={"endpoint_url": url})).okta
    assert okta is not None and okta.universal_logout is not None and okta.universal_logout.endpoint_url == url


@pytest.mark.parametrize("url", [ENDPOINT + "?app=hr", ENDPOINT + "?", ENDPOINT + "#top", ENDPOINT + "#",
                                 "ftp://app.example.com/logout", "/.gateway/okta/universal-logout",
                                 "app.example.com/logout", "https://", "", 5, ["x"]])
def test_a_bad_universal_logout_endpoint_is_refused(url):
    message = error_of(with_okta(universal_logout={"endpoint_url": url}), "okta.universal_logout.endpoint_url")
    assert "registered in Okta" in message


def test_a_missing_universal_logout_endpoint_is_refused():
    error_of(with_okta(universal_logout={"leeway": 60}), "okta.universal_logout.endpoint_url")


def test_credentials_in_the_universal_logout_endpoint_are_refused_and_not_shown():
    message = error_of(with_okta(universal_logout={"endpoint_url": "https://gw:hunter2@app.example.com/ul?x=1"}),
                       "okta.universal_logout.endpoint_url")
    assert "hunter2" not in message and "credentials" in message


@pytest.mark.parametrize("leeway", [-1, 600.5, 3600, "60", True, [60]])
def test_a_universal_logout_leeway_out_of_bounds_is_refused(leeway):
    error_of(with_okta(universal_logout={"endpoint_url": ENDPOINT, "leeway": leeway}), "okta.universal_logout.leeway")


def test_an_unknown_universal_logout_key_gets_a_did_you_mean():
    message = error_of(with_okta(universal_logout={"endpoint_url": ENDPOINT, "leway": 5}),
                       "okta.universal_logout.leway")
    assert "did you mean 'leeway'?" in message
    error_of(with_okta(universal_logout={"endpoint": ENDPOINT}), "okta.universal_logout.endpoint_url")  # needed first


def test_universal_logout_must_be_a_table():
    error_of(with_okta(universal_logout=ENDPOINT), "okta.universal_logout")


# --- a route's logout ------------------------------------------------------------------------------------------------


def test_route_logout_defaults():
    assert sessions_of(bound_route()).logout == LogoutRules(("GET", "POST"), "session", "app", "/", (), "return")


def test_route_logout_settings():
    logout = sessions_of(bound_route(
        logout_methods=["post"], logout_scope="user", logout_answer="gateway",
        after_logout_url="https://www.example.com/signed-out", after_logout_param="next",
        after_logout_allowed=["https://app.example.com/goodbye/", "http://127.0.0.1:8080/"])).logout
    assert logout == LogoutRules(("POST",), "user", "gateway", "https://www.example.com/signed-out",
                                 ("https://app.example.com/goodbye/", "http://127.0.0.1:8080/"), "next")


def test_the_after_logout_url_may_be_a_path():
    assert sessions_of(bound_route(after_logout_url="/signed-out?from=hr")).logout.after_logout_url == (
        "/signed-out?from=hr")


def test_logout_rules_are_read_with_policy_off_too():
    assert sessions_of(bound_route(policy="off", logout_scope="user")).logout.scope == "user"


@pytest.mark.parametrize("methods", [[], ["DELETE"], ["GET", "PUT"], ["GET", 5], [None], ["GET", ["POST"]], "GET",
                                     "GET,POST", 5])
def test_logout_methods_are_only_get_and_post(methods):
    error_of(bound_route(logout_methods=methods), f"{ROUTE}.logout_methods")


@pytest.mark.parametrize(("key", "value"), [("logout_scope", "all"), ("logout_scope", "User"), ("logout_scope", ""),
                                            ("logout_scope", 1), ("logout_answer", "none"), ("logout_answer", "App"),
                                            ("logout_answer", True)])
def test_bad_logout_scope_and_answer_are_refused(key, value):
    error_of(bound_route(**{key: value}), f"{ROUTE}.{key}")


@pytest.mark.parametrize("url", ["//evil.example/", "javascript:alert(1)", "bye", "", "ftp://app.example.com/",
                                 "https://", 5, ["/"]])
def test_a_bad_after_logout_url_is_refused(url):
    error_of(bound_route(after_logout_url=url), f"{ROUTE}.after_logout_url")


@pytest.mark.parametrize("prefix", ["https://app.example.com", "https://app.example.com/goodbye", "/goodbye/",
                                    "//app.example.com/", "javascript://app.example.com/", "ftp://app.example.com/",
                                    "https:///", "https://app.example.com/?next=/",
                                    "https://app.example.com/#/", "https://app.example.com\\/", 5, None])
def test_bad_after_logout_allowed_prefixes_are_refused(prefix):
    message = error_of(bound_route(after_logout_allowed=["https://ok.example.com/", prefix]),
                       f"{ROUTE}.after_logout_allowed")
    assert "end" in message and '"/"' in message


def test_after_logout_allowed_must_be_a_list():
    error_of(bound_route(after_logout_allowed="https://app.example.com/"), f"{ROUTE}.after_logout_allowed")


def test_credentials_in_an_after_logout_prefix_are_refused_and_not_shown():
    message = error_of(bound_route(after_logout_allowed=["https://gw:hunter2@app.example.com/"]),
                       f"{ROUTE}.after_logout_allowed")
    assert "hunter2" not in message and "credentials" in message


@pytest.mark.parametrize("param", ["", "a b", "a&b", "a=b", "ré", "x" * 65, 5, ["return"]])
def test_a_bad_after_logout_param_is_refused(param):
    error_of(bound_route(after_logout_param=param), f"{ROUTE}.after_logout_param")


def test_an_unknown_logout_key_gets_a_did_you_mean():
    message = error_of(bound_route(logout_scop="user"), f"{ROUTE}.logout_scop")
    assert "did you mean 'logout_scope'?" in message
    message = error_of(bound_route(after_logout_allow=["https://app.example.com/"]), f"{ROUTE}.after_logout_allow")
    assert "did you mean 'after_logout_allowed'?" in message


# --- friction an operator met (issue 13): each error says what is wrong, and only that -----------------------------


def test_a_missing_environment_variable_says_so_and_nothing_about_a_value(monkeypatch):
    monkeypatch.delenv("OKTA_HOOK_SECRET", raising=False)
    message = error_of(hooked(), "okta.event_hook.secret")
    assert message == f"{SOURCE}: okta.event_hook.secret: expected environment variable OKTA_HOOK_SECRET to be set"


def test_an_empty_api_token_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("OKTA_API_TOKEN", "")
    message = error_of(with_okta(), "okta.api_token")
    assert "OKTA_API_TOKEN" in message and message.endswith("it is set but empty")


def test_a_misspelt_required_key_is_named_as_unknown_beside_the_missing_one():
    data = {"route": [{"name": "app", "upsteam": "http://127.0.0.1:9000"}]}
    message = error_of(data, "route[0] (app).upstream")
    assert message.endswith("; it is missing, and upsteam is an unknown key (a misspelling of upstream?)")
