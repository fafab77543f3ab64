"""Properties of the configuration reader (gateway/config.py): for any TOML-shaped table and any bytes as a file,
either settings come out or one ConfigError whose message names the file, the key and what was expected; no
other exception escapes (the CLI prints the message and exits 2, never a traceback)."""

from __future__ import annotations

import copy
import datetime
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cryptography.fernet import Fernet
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, Settings, load, parse

pytestmark = pytest.mark.hostile

SOURCE = "hostile.toml"
ENV = {"OKTA_API_TOKEN": "okta-api-token-0123456789", "GATEWAY_BINDING_KEYS": Fernet.generate_key().decode(),
       "OKTA_HOOK_SECRET": "hook-secret-0123456789", "GATEWAY_ADMIN_TOKEN": "admin-token-0123456789"}
BASE: dict[str, Any] = {
    "server": {"listen": "127.0.0.1:8080", "trusted_proxies": ["10.0.0.0/8"]},
    "proxy": {"pool_size": 64},
    "okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}",
             "event_hook": {"secret": "${OKTA_HOOK_SECRET}"},
             "universal_logout": {"endpoint_url": "https://gw.example.com/.gateway/okta/universal-logout"}},
    "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
    "admin": {"token": "${GATEWAY_ADMIN_TOKEN}"},
    "route": [
        {"name": "hr", "host": "hr.example.com", "path": "/hr", "upstream": "http://127.0.0.1:9000", "rewrite": "/",
         "app_profile": "servlet", "logout_paths": ["/hr/logout"], "after_logout_allowed": ["https://hr.example.com/"],
         "fail_mode": "grace", "grace_seconds": 30, "binding_cookie": {"name": "gb", "samesite": "Strict"}},
        {"name": "wiki", "path": "/wiki", "upstream": "http://127.0.0.1:9001", "policy": "off",
         "max_request_body": "1MiB"},
    ],
}
KEYS = sorted({"server", "proxy", "okta", "route", "binding", "admin", "listen", "workers", "prefix", "trusted_proxies",
               "access_log", "log_level", "shutdown_timeout", "pool_size", "keepalive_timeout", "websocket_max_message",
               "connect_timeout", "read_timeout", "max_request_body", "org_url", "api_token", "timeout", "retries",
               "cache_ttl", "negative_ttl", "revalidate", "max_entries", "event_hook", "universal_logout", "secret",
               "header", "endpoint_url", "leeway", "keys", "keys_file", "token", "name", "host", "path", "upstream",
               "rewrite", "preserve_host", "fail_mode", "grace_seconds", "policy", "app_profile", "sid_sources",
               "unbound", "idle_timeout", "binding_cookie", "logout_methods", "logout_scope", "logout_answer",
               "after_logout_url", "after_logout_allowed", "after_logout_param", "app_cookies", "logout_paths",
               "acs_path", "sign_in_url", "app_logout_url", "session_id_header_from", "secure", "samesite"})

# --- TOML's values: what tomllib can hand to parse() ----------------------------------------------------------------

toml_scalars = (st.text(max_size=20) | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats()
                | st.booleans() | st.datetimes(timezones=st.none() | st.just(datetime.UTC)) | st.dates() | st.times()
                | st.sampled_from(["${OKTA_API_TOKEN}", "${NOT_SET_ANYWHERE}", "${", "http://[::1", "http://a:99999",
                                   "https://u:p@x.example", "/", "//x", "*", "0", "1e9GiB", "\u00b2", "\udcff"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
tables = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), toml_values, max_size=5)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into the base configuration, tables and list items included."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += paths(inner, (*prefix, i))
    return found


BASE_PATHS = paths(BASE)


def mutated(path: tuple[Any, ...], value: Any, added: str | None) -> dict[str, Any]:
    """The base configuration with the value at `path` replaced, or (with `added`) a key added beside it."""
    data = copy.deepcopy(BASE)
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    if added is not None and isinstance(parent, dict):
        parent[added] = value
    else:
        parent[path[-1]] = value
    return data


def read(data: dict[str, Any]) -> Settings | None:
    with mock.patch.dict(os.environ, ENV):
        try:
            return parse(data, SOURCE)
        except ConfigError as error:
            assert_names_key_and_expectation(str(error))
            return None


def assert_names_key_and_expectation(message: str) -> None:
    assert message.startswith(SOURCE + ": "), message
    where, sep, expected = message[len(SOURCE) + 2:].partition(": expected ")
    assert sep and where.strip() and expected.strip(), message  # "<file>: <key>: expected <what>"
    for secret in ENV.values():
        assert secret not in message


def test_the_base_configuration_is_valid():
    settings = read(BASE)
    assert settings is not None and len(settings.routes.routes) == 2


@settings(max_examples=100)
@given(tables)
def test_any_table_is_settings_or_one_config_error(data):
    read(data)


@settings(max_examples=150)
@given(st.sampled_from(BASE_PATHS), toml_values, st.none() | st.sampled_from(KEYS) | st.text(max_size=8))
def test_any_value_at_any_key_of_a_good_file_is_settings_or_one_config_error(path, value, added):
    read(mutated(path, value, added))


@given(st.sampled_from([p for p in BASE_PATHS if isinstance(p[-1], str)]), st.text(max_size=8))
@example(("server", "listen"), "")
@example(("okta", "event_hook", "secret"), "a.b")
def test_an_unknown_key_is_named_as_it_is_written(beside, key):
    with mock.patch.dict(os.environ, ENV):
        try:
            parse(mutated(beside, 1, key), SOURCE)  # key = 1 beside an existing key
        except ConfigError as error:
            shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)
            assert f"{shown}: expected" in str(error), str(error)  # e.g. "okta.event_hook.'a.b': expected one of"


@given(st.sampled_from(BASE_PATHS))
def test_a_key_left_out_is_settings_or_one_config_error(path):
    data = copy.deepcopy(BASE)
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    read(data)


# --- any bytes as the file ------------------------------------------------------------------------------------------

FILES = Path(tempfile.mkdtemp(prefix="gateway-config-properties-"))
toml_text = st.lists(st.sampled_from(["[server]\n", "[[route]]\n", "[okta]\n", 'listen = "127.0.0.1:1"\n', "a = ",
                                      "[", "]", "{", "}", "=", '"', "'", "'''", '"""', "\\", "\n", ",", ".", "x",
                                      "1", "#", "\x00", "\ufeff", "\udcff", "é", " ", "\t", "\r\n", "inf", "nan",
                                      "1979-05-27T07:32:00Z", "0x", "_"]), max_size=40).map("".join)


def load_bytes(raw: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=FILES, suffix=".toml", delete=False) as file:
        file.write(raw)
    path = file.name
    try:
        with mock.patch.dict(os.environ, ENV):
            load(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(path + ": ") and "expected " in message, message
    finally:
        os.unlink(path)


@settings(max_examples=100)
@given(st.binary(max_size=300))
@example(b"a = " + b"[" * 2000 + b"]" * 2000)  # tomllib recurses per level: a RecursionError, once a traceback
@example(b"a = " + b"{b=" * 2000 + b"1" + b"}" * 2000)
@example(b"\xff\xfe[\x00s\x00]\x00")
def test_any_bytes_as_the_file_are_settings_or_one_config_error(raw):
    load_bytes(raw)


@settings(max_examples=100)
@given(toml_text)
def test_any_toml_like_text_is_settings_or_one_config_error(text):
    load_bytes(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=40)
@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["[", "{a=", "[[", "a."]))
def test_nesting_of_any_depth_is_one_config_error(depth, opener):
    closer = {"[": "]", "{a=": "}", "[[": "]]", "a.": ""}[opener]
    load_bytes(f"x = {opener * depth}1{closer * depth}\n".encode() if opener != "a." else
               f"{'a.' * depth}b = 1\n".encode())



def test_dotted_keys_thousands_deep_with_an_unset_variable_are_one_config_error(tmp_path):
    """tomllib nests dotted keys without recursing, so the walk that names every unset ${NAME} must not recurse
    either (it ended in a RecursionError traceback)."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a." * 3000 + 'b = "${NOT_SET_ANYWHERE}"\n')
    with pytest.raises(ConfigError, match="expected environment variable NOT_SET_ANYWHERE to be set"):
        load(deep)

def test_a_missing_file_and_a_directory_are_config_errors():
    for path in (FILES / "missing.toml", FILES):
        with pytest.raises(ConfigError, match=re.escape(str(path)) + ": expected"):
            load(path)
