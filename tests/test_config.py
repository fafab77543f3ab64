"""Configuration: every error names the file, the key and what was expected; nothing else gets through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load, parse

EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "gateway.example.toml"


def one_route(**overrides: Any) -> dict[str, Any]:
    return {"route": [{"name": "app", "upstream": "http://127.0.0.1:9000", **overrides}]}


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(data, "gw.toml")
    message = str(caught.value)
    assert message.startswith("gw.toml: ") and "expected" in message
    return message


def test_the_example_loads_and_every_key_in_it_is_known():
    settings = load(EXAMPLE)
    assert [r.name for r in settings.routes.routes] == ["app", "app-api"]
    api = settings.routes.routes[1]
    assert (api.rewrite, api.connect_timeout, api.read_timeout, api.max_request_body) == ("/v2", 2.0, 30.0, 10 * 2**20)


def test_defaults():
    settings = parse(one_route())
    assert (settings.server.host, settings.server.port, settings.server.prefix) == ("127.0.0.1", 8080, "/.gateway/")
    route = settings.routes.routes[0]
    assert (route.host, route.path, route.rewrite, route.preserve_host) == ("*", "/", None, False)
    assert route.max_request_body == 2**30


@pytest.mark.parametrize(
    ("data", "where", "hint"),
    [
        (one_route(preserve_hots=True), "route[0] (app).preserve_hots", "did you mean 'preserve_host'?"),
        ({**one_route(), "servre": {}}, "servre", "did you mean 'server'?"),
        ({**one_route(), "server": {"listn": "1.2.3.4:1"}}, "server.listn", "did you mean 'listen'?"),
    ],
)
def test_unknown_keys_are_refused_with_a_did_you_mean(data, where, hint):
    message = error_of(data)
    assert where in message and hint in message


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (one_route(read_timeout="soon"), "route[0] (app).read_timeout"),
        (one_route(preserve_host="yes"), "route[0] (app).preserve_host"),
        ({**one_route(), "server": {"workers": True}}, "server.workers"),
        ({**one_route(), "server": {"workers": 0}}, "server.workers"),
        ({**one_route(), "server": {"prefix": "gateway"}}, "server.prefix"),
        (one_route(connect_timeout=0), "route[0] (app).connect_timeout"),
        (one_route(connect_timeout=-1), "route[0] (app).connect_timeout"),
        (one_route(max_request_body="12XB"), "route[0] (app).max_request_body"),
        (one_route(max_request_body=-5), "route[0] (app).max_request_body"),
        (one_route(name=3), "route[0].name"),
        ({"route": "app"}, "route"),
        ({"route": []}, "route"),
    ],
)
def test_wrong_types_and_values_name_the_key(data, where):
    assert f": {where}: expected" in error_of(data)


@pytest.mark.parametrize(
    "upstream",
    ["ftp://h:1", "http://", "http://h:1/base", "http://h:1/?q=1", "http://u:p@h:1", "http://h:99999", "h:1", 7],
)
def test_bad_upstream_urls(upstream):
    assert "route[0] (app).upstream: expected" in error_of(one_route(upstream=upstream))


@pytest.mark.parametrize("host", ["app.example.com", "*.example.com", "*", "APP.Example.COM"])
def test_valid_host_patterns(host):
    assert parse(one_route(host=host)).routes.routes[0].host == host.lower()


@pytest.mark.parametrize("host", ["a.*.com", "host:80", "http://x", "*.", "", "-a.com"])
def test_invalid_host_patterns(host):
    assert "route[0] (app).host: expected" in error_of(one_route(host=host))


@pytest.mark.parametrize("path", ["app", "/a/../b", "/a?b", "/a#b", "/./a"])
def test_invalid_paths(path):
    assert "route[0] (app).path: expected" in error_of(one_route(path=path))


def test_duplicate_route_names():
    data = {"route": [{"name": "a", "upstream": "http://h:1", "path": "/x"},
                      {"name": "a", "upstream": "http://h:1", "path": "/y"}]}
    assert "route[1].name: expected a unique route name" in error_of(data)


def test_a_route_hidden_by_another_is_refused():
    data = {"route": [{"name": "a", "upstream": "http://h:1", "path": "/app/"},
                      {"name": "b", "upstream": "http://h:2", "path": "/app"}]}
    message = error_of(data)
    assert "route[1] (b)" in message and "route[0] (a) hides it" in message


def test_a_route_under_the_gateway_prefix_is_hidden_by_it():
    assert "outside the gateway's own prefix" in error_of(one_route(path="/.gateway/status"))


def test_environment_references_are_expanded(monkeypatch):
    monkeypatch.setenv("APP_UPSTREAM", "http://10.0.0.5:8080")
    assert str(parse(one_route(upstream="${APP_UPSTREAM}")).routes.routes[0].upstream) == "http://10.0.0.5:8080"


def test_a_missing_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    message = error_of(one_route(upstream="${NOT_SET_ANYWHERE}"))
    assert "route[0] (app).upstream: expected environment variable NOT_SET_ANYWHERE to be set" in message


def test_a_bad_value_from_the_environment_is_never_echoed(monkeypatch):
    monkeypatch.setenv("SECRET_ISH", "ftp://token-1234567890@h:1")
    message = error_of(one_route(upstream="${SECRET_ISH}"))
    assert "token-1234567890" not in message and "from the environment" in message


@pytest.mark.parametrize(("listen", "host", "port"),
                         [("127.0.0.1:0", "127.0.0.1", 0), ("[::1]:8080", "::1", 8080), ("localhost:80", "localhost", 80)])
def test_listen_addresses(listen, host, port):
    server = parse({**one_route(), "server": {"listen": listen}}).server
    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize("listen", ["x", "1.2.3.4:99999", "host.example:80", ":80", "1.2.3.4"])
def test_bad_listen_addresses(listen):
    assert "server.listen: expected" in error_of({**one_route(), "server": {"listen": listen}})


def test_sizes_and_trusted_proxies():
    settings = parse({"proxy": {"max_request_body": 0}, "server": {"trusted_proxies": ["10.0.0.0/8", "::1"]},
                      **one_route(max_request_body="512MiB")})
    assert settings.routes.routes[0].max_request_body == 512 * 2**20
    assert [str(n) for n in settings.server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert parse({"proxy": {"max_request_body": 0}, **one_route()}).routes.routes[0].max_request_body is None
    assert "server.trusted_proxies: expected" in error_of({**one_route(), "server": {"trusted_proxies": ["nope"]}})


def test_load_errors_start_with_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=f"^{missing}: cannot read the file"):
        load(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nlisten = 1")
    with pytest.raises(ConfigError, match=f"^{broken}: expected valid TOML"):
        load(broken)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=f"^{latin}: expected UTF-8 text"):
        load(latin)
