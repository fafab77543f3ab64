"""gateway/config/reader.py's check_environment: every `${NAME}` of a file whose variable is unset, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from gateway.config import ConfigError, parse

SOURCE = "gw.toml"
SECRETS = ("OKTA_API_TOKEN", "OKTA_HOOK_SECRET", "GATEWAY_ADMIN_TOKEN", "GATEWAY_BINDING_KEYS")


def configuration(upstream: str = "${APP_UPSTREAM}") -> dict[str, object]:
    return {
        "okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}",
                 "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}},
        "admin": {"token": "${GATEWAY_ADMIN_TOKEN}"},
        "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
        "route": [{"name": "hr", "upstream": upstream, "app_profile": "servlet"},
                  {"name": "api", "path": "/api", "upstream": upstream, "app_profile": "servlet",
                   "after_logout_allowed": ["${PUBLIC_URL}/"]}],
    }


def message_of(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(data, SOURCE)
    return str(caught.value)


def test_every_unset_variable_is_named_in_one_line_with_the_keys_that_reference_it(monkeypatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    message = message_of(configuration())
    assert message == (
        f"{SOURCE}: okta.api_token, okta.event_hook.secret, admin.token, binding.keys, route[0] (hr).upstream, "
        "route[1] (api).upstream, route[1] (api).after_logout_allowed: expected environment variables "
        "OKTA_API_TOKEN, OKTA_HOOK_SECRET, GATEWAY_ADMIN_TOKEN, GATEWAY_BINDING_KEYS, APP_UPSTREAM and PUBLIC_URL "
        "to be set")


def test_only_the_unset_ones_are_named_and_no_value_is_shown(monkeypatch):
    monkeypatch.setenv("APP_UPSTREAM", "http://127.0.0.1:9000")
    monkeypatch.setenv("PUBLIC_URL", "https://hr.example.com")
    monkeypatch.delenv("OKTA_HOOK_SECRET")
    message = message_of(configuration())
    assert message == f"{SOURCE}: okta.event_hook.secret: expected environment variable OKTA_HOOK_SECRET to be set"
    assert "127.0.0.1:9000" not in message


def test_a_file_whose_variables_are_all_set_reads_them(monkeypatch):
    monkeypatch.setenv("APP_UPSTREAM", "http://127.0.0.1:9000")
    monkeypatch.setenv("PUBLIC_URL", "https://hr.example.com")
    settings = parse(configuration(), SOURCE)
    assert [str(r.upstream_origin) for r in settings.routes.routes] == ["http://127.0.0.1:9000"] * 2


def test_a_set_but_empty_variable_is_not_unset_the_key_judges_it(monkeypatch):
    monkeypatch.setenv("APP_UPSTREAM", "http://127.0.0.1:9000")
    monkeypatch.setenv("PUBLIC_URL", "https://hr.example.com")
    monkeypatch.setenv("OKTA_API_TOKEN", "")
    assert message_of(configuration()).endswith("it is set but empty")


def test_check_config_prints_the_one_line_and_exits_2(tmp_path: Path):
    config = tmp_path / "gateway.toml"
    config.write_text('[okta]\norg_url = "${OKTA_ORG_URL}"\napi_token = "${OKTA_API_TOKEN}"\n'
                      '[[route]]\nname = "app"\nupstream = "${APP_UPSTREAM}"\n')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=30, cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr == (f"session-gateway: {config}: okta.org_url, okta.api_token, route[0] (app).upstream: "
                             "expected environment variables OKTA_ORG_URL, OKTA_API_TOKEN and APP_UPSTREAM to be "
                             "set\n")
