"""gateway/config/sessions.py: a route's plugin tables, [route.plugin.<name>], read by the plugin's own options hook.

The plugins are a real distribution on sys.path (tests/plugin_support.py); every error is the configuration's usual
one line, naming file, route, table and key, and never showing a plugin option's value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from plugin_support import bound, config_error, on_path, write_distribution

from gateway.config import load, parse
from gateway.plugin import RequestInfo, SourceOptions, make_source
from gateway.settings import RouteSessions

SID = "102abcDEFghiJKLmnoPQRst"
MODULE = '''
from dataclasses import dataclass

from gateway.plugin import PluginOptionError


@dataclass(frozen=True)
class RealmOptions:
    realm: str
    strict: bool = False


class RealmHeader:
    """A source with options: the session id in the header X-<realm>-Session (a test stand-in)."""

    tables = []

    @classmethod
    def options(cls, table):
        cls.tables.append(table)
        unknown = sorted(table.keys() - {"realm", "strict"})
        if unknown:
            raise PluginOptionError(unknown[0], "one of realm, strict; this key is unknown")
        realm = table.get("realm")
        if not isinstance(realm, str) or not realm:
            raise PluginOptionError("realm", "a realm name")
        strict = table.get("strict", False)
        if not isinstance(strict, bool):
            raise PluginOptionError("strict", "true or false")
        return RealmOptions(realm, strict)

    def __init__(self, options):
        self.own = options.own
        self.header = f"X-{options.own.realm}-Session"

    def identify(self, request):
        return request.headers.get(self.header)


class Plain:
    """A source without options."""

    def __init__(self, options):
        self.own = options.own

    def identify(self, request):
        return None


class Failing(Plain):
    @classmethod
    def options(cls, table):
        return table["missing"]


class OddHook(Plain):
    options = 5
'''
ENTRY_POINTS = {"realm": "realm_plugin:RealmHeader", "plain": "realm_plugin:Plain", "failing": "realm_plugin:Failing",
                "odd-hook": "realm_plugin:OddHook", "broken": "nowhere_at_all:Thing"}
PLUGIN = "gw.toml: route[0] (hr).plugin"


@pytest.fixture
def realm_plugin(tmp_path: Path) -> Iterator[None]:
    with on_path(write_distribution(tmp_path / "site", "realm-plugin", ENTRY_POINTS, {"realm_plugin": MODULE})):
        yield


def plugin_module() -> ModuleType:
    return sys.modules["realm_plugin"]


def sessions_of(data: dict[str, Any]) -> RouteSessions:
    sessions = parse(data, "gw.toml").routes.routes[0].sessions
    assert sessions is not None
    return sessions


def with_realm(table: Any = None, **route: Any) -> dict[str, Any]:
    """The route uses saml and realm; `table` is its [route.plugin.realm] (left out when None)."""
    plugins = {} if table is None else {"plugin": {"realm": table}}
    return bound(sid_sources=["saml", "realm"], **plugins, **route)


def test_a_plugin_with_options_gets_its_table_and_its_source_what_the_hook_made(realm_plugin):
    options = sessions_of(with_realm({"realm": "hr", "strict": True})).source_options
    expected = plugin_module().RealmOptions("hr", True)
    assert options.plugins == {"realm": expected} and options.own is None
    source = make_source("realm", options)
    assert source.own == expected  # type: ignore[union-attr]
    assert source.identify(RequestInfo({"X-hr-Session": SID}, {}, None)) == SID  # type: ignore[union-attr]
    assert make_source("saml", options) is not None


def test_the_table_is_written_as_route_plugin_name_in_the_file(realm_plugin, tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[okta]\norg_url = "https://example.okta.com"\napi_token = "${OKTA_API_TOKEN}"\n'
                      '[binding]\nkeys = "${GATEWAY_BINDING_KEYS}"\n'
                      '[[route]]\nname = "hr"\nupstream = "http://127.0.0.1:9000"\nsid_sources = ["saml", "realm"]\n'
                      '[route.plugin.realm]\nrealm = "hr"\n')
    sessions = load(config).routes.routes[0].sessions
    assert sessions is not None and sessions.source_options.plugins == {"realm": plugin_module().RealmOptions("hr")}


def test_the_hook_gets_a_read_only_mapping_with_the_environment_expanded(realm_plugin, monkeypatch):
    monkeypatch.setenv("ACME_REALM", "finance")
    options = sessions_of(with_realm({"realm": "${ACME_REALM}"})).source_options
    assert options.plugins["realm"] == plugin_module().RealmOptions("finance")
    table = plugin_module().RealmHeader.tables[-1]
    assert dict(table) == {"realm": "finance"}
    with pytest.raises(TypeError):
        table["realm"] = "other"


def test_a_missing_environment_variable_in_a_plugin_table_is_named(realm_plugin):
    message = config_error(with_realm({"realm": "${NOT_SET_ANYWHERE}"}))
    assert message.startswith(f"{PLUGIN}.realm.realm: expected environment variable NOT_SET_ANYWHERE to be set")


def test_a_bad_option_is_one_line_naming_the_table_and_key_without_the_value(realm_plugin):
    assert config_error(with_realm({"realm": "hr", "strict": "s3cr3t"})) == (
        f"{PLUGIN}.realm.strict: expected true or false")


def test_an_unknown_key_of_a_plugin_table_is_the_plugins_to_refuse(realm_plugin):
    assert config_error(with_realm({"realm": "hr", "relam": "x"})) == (
        f"{PLUGIN}.realm.relam: expected one of realm, strict; this key is unknown")


def test_a_used_plugin_without_a_table_has_its_hook_called_on_an_empty_one(realm_plugin):
    assert config_error(with_realm()) == f"{PLUGIN}.realm.realm: expected a realm name"
    assert dict(plugin_module().RealmHeader.tables[-1]) == {}


def test_a_table_for_a_plugin_the_route_does_not_use_is_refused_and_that_plugin_not_loaded(realm_plugin):
    message = config_error(bound(sid_sources=["saml", "cookie"], plugin={"broken": {"x": 1}}))
    assert message == f"{PLUGIN}.broken: expected a table only for a plugin in this route's sid_sources (saml, cookie)"
    assert config_error(bound(plugin={"realm": {"realm": "hr"}})) == (
        f"{PLUGIN}.realm: expected a table only for a plugin in this route's sid_sources (saml)")
    assert config_error(bound(sid_sources=[], plugin={"realm": {}})) == (
        f"{PLUGIN}.realm: expected a table only for a plugin in this route's sid_sources (none)")
    assert "realm_plugin" not in sys.modules


@pytest.mark.parametrize("name", ["saml", "plain"])
def test_a_table_for_a_plugin_without_options_is_refused(realm_plugin, name):
    assert config_error(bound(sid_sources=["saml", "plain"], plugin={name: {}})) == (
        f'{PLUGIN}.{name}: expected a table only for a plugin with options of its own; plugin "{name}" has none')


def test_a_plugin_without_options_is_made_with_none_of_its_own(realm_plugin):
    options = sessions_of(bound(sid_sources=["saml", "plain"])).source_options
    assert options.plugins == {} and make_source("plain", options).own is None  # type: ignore[union-attr]


def test_a_hook_that_fails_is_the_plugins_failure_in_one_line(realm_plugin):
    assert config_error(bound(sid_sources=["failing"], plugin={"failing": {"a": 1}})) == (
        f'{PLUGIN}.failing: expected options plugin "failing" (entry point realm_plugin:Failing) can read; its '
        "options hook failed: KeyError: 'missing'")


def test_a_hook_that_is_not_callable_is_refused(realm_plugin):
    assert config_error(bound(sid_sources=["odd-hook"])) == (
        f'{PLUGIN}.odd-hook: expected a loadable plugin; plugin "odd-hook" (entry point realm_plugin:OddHook) has an '
        "options hook that is not callable")


@pytest.mark.parametrize(("plugin", "where", "expected"), [
    (5, "plugin", "a table of plugin options, [route.plugin.<name>] for each, got 5"),
    ({"realm": 5}, "plugin.realm", "a table [route.plugin.realm] of the plugin's options"),
    ({"a.b": {}}, "plugin.'a.b'", "a table only for a plugin in this route's sid_sources (saml, realm)"),
])
def test_plugin_tables_must_be_tables_of_tables(realm_plugin, plugin, where, expected):
    assert config_error(bound(sid_sources=["saml", "realm"], plugin=plugin)) == (
        f"gw.toml: route[0] (hr).{where}: expected {expected}")


def test_a_route_without_plugin_tables_reads_as_before():
    assert sessions_of(bound()).source_options == SourceOptions()
