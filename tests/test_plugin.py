"""gateway/plugin.py and the built-ins in plugins/: finding plugins by name through their entry points, the built-in
sources and profiles, and third-party plugins, installed for real as tiny distributions on sys.path
(tests/plugin_support.py): found lazily, by name, and a broken one spoils only a configuration that names it."""

from __future__ import annotations

import ast
import base64
import importlib.metadata
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from plugin_support import bound, config_error, on_path, write_distribution

from conftest import REPO
from gateway.config import parse
from gateway.plugin import (
    DISTRIBUTION,
    ENTRY_POINT_GROUP,
    AppProfile,
    PluginError,
    RequestInfo,
    SidSource,
    SignIn,
    SignInReader,
    SourceOptions,
    UnusablePlugin,
    app_profile,
    source_factory,
)
from gateway.sandbox.okta.saml import SamlApp, SigningKey, build_response
from plugins.sources import OktaCookie, SamlSignIn, TrustedHeader

SID = "102abcDEFghiJKLmnoPQRst"
LOGIN = "alice@example.com"
FORM = "application/x-www-form-urlencoded"
BUILTIN_SOURCES = ("saml", "cookie", "header")
BUILTIN_PROFILES = ("generic", "shibboleth", "mellon", "simplesamlphp", "spring-saml", "servlet", "php", "aspnet")


def built_ins() -> dict[str, object]:
    """The gateway's own plugins as its distribution declares them: the entry points are the registry."""
    points = importlib.metadata.distribution(DISTRIBUTION).entry_points
    return {ep.name: ep.load() for ep in points if ep.group == ENTRY_POINT_GROUP}


BUILT_INS = built_ins()
SOURCES = {name: found for name, found in BUILT_INS.items() if not isinstance(found, AppProfile)}
PROFILES = [found for found in BUILT_INS.values() if isinstance(found, AppProfile)]


def request(headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
            peer: str | None = "127.0.0.1") -> RequestInfo:
    return RequestInfo(headers or {}, cookies or {}, peer)


# --- finding built-ins by name ---------------------------------------------------------------------------------------


def test_the_built_in_names_are_the_documented_ones():
    assert SOURCES == {"saml": SamlSignIn, "cookie": OktaCookie, "header": TrustedHeader}
    assert set(BUILT_INS) == set(BUILTIN_SOURCES) | set(BUILTIN_PROFILES)


def test_a_built_in_profile_is_declared_under_its_own_name():
    assert all(BUILT_INS[profile.name] is profile for profile in PROFILES) and len(PROFILES) == len(BUILTIN_PROFILES)


def test_the_interfaces_import_nothing_of_the_built_ins():
    tree = ast.parse((REPO / "gateway" / "plugin.py").read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules and not any(m == "plugins" or m.startswith("plugins.") for m in modules)


def test_a_built_in_is_imported_only_once_its_name_is_used():
    code = ("import sys; from gateway import plugin\n"
            "def ours(): return sorted(m for m in sys.modules if m.split('.')[0] == 'plugins')\n"
            "before = ours(); plugin.app_profile('generic'); print(before, ours())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] ['plugins', 'plugins.profiles']"  # not plugins.sources


@pytest.mark.parametrize("name", BUILTIN_SOURCES)
def test_every_built_in_source_is_found_by_name(name):
    assert source_factory(name) is SOURCES[name]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_built_in_profile_is_found_by_name(profile):
    assert app_profile(profile.name) is profile


@pytest.mark.parametrize("name", ["nope", "", "SAML", "saml ", "Generic"])
def test_an_unknown_source_name_lists_the_known_ones(name):
    with pytest.raises(PluginError) as caught:
        source_factory(name)
    assert str(caught.value) == "one of cookie, header, saml"


@pytest.mark.parametrize("name", ["nope", "", "Shibboleth", "saml_"])
def test_an_unknown_profile_name_lists_the_known_ones(name):
    with pytest.raises(PluginError) as caught:
        app_profile(name)
    assert str(caught.value) == "one of " + ", ".join(sorted(BUILTIN_PROFILES))


def test_a_built_in_of_the_other_kind_is_named_as_such_beside_the_list():
    with pytest.raises(UnusablePlugin) as profile:
        app_profile("saml")
    with pytest.raises(UnusablePlugin) as source:
        source_factory("generic")
    assert str(profile.value) == ("one of " + ", ".join(sorted(BUILTIN_PROFILES)) + '; plugin "saml" (entry point '
                                  "plugins.sources:SamlSignIn) is a session-id source")
    assert str(source.value) == ('one of cookie, header, saml; plugin "generic" (entry point plugins.profiles:GENERIC) '
                                 "is an app profile")


def test_a_plugin_error_is_a_lookup_error():
    assert issubclass(PluginError, LookupError) and issubclass(UnusablePlugin, PluginError)


# --- the built-in profiles -------------------------------------------------------------------------------------------

COOKIE_PATTERN = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+\*?$")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_a_built_in_profile_has_sane_values(profile):
    assert profile.session_cookies and all(COOKIE_PATTERN.fullmatch(c) for c in profile.session_cookies)
    assert len(set(profile.session_cookies)) == len(profile.session_cookies)
    assert profile.acs_path.startswith("/") and not profile.acs_path.startswith("//")
    assert profile.sign_in_url.startswith("/") and not profile.sign_in_url.startswith("//")
    assert profile.logout_paths and all(p.startswith("/") and not p.startswith("//") for p in profile.logout_paths)
    assert profile.logout_url is None or (profile.logout_url.startswith("/")
                                          and not profile.logout_url.startswith("//"))
    assert profile.cookie_path.startswith("/")
    assert profile.acs_path not in profile.logout_paths


def test_built_in_profile_names_are_unique():
    assert len({p.name for p in PROFILES}) == len(PROFILES)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_a_built_in_profile_passes_the_configurations_checks(profile):
    settings = parse({"okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"},
                      "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
                      "route": [{"name": "app", "upstream": "http://127.0.0.1:9000", "app_profile": profile.name}]},
                     "gw.toml")
    sessions = settings.routes.routes[0].sessions
    assert sessions is not None and sessions.profile == profile


# --- the built-in sources: Okta's cookie -----------------------------------------------------------------------------


def test_okta_cookie_reads_okta_sid_cookie():
    source = OktaCookie(SourceOptions())
    assert source.identify(request(cookies={"sid": SID, "JSESSIONID": "x"})) == SID


def test_okta_cookie_reads_the_configured_cookie_only():
    source = OktaCookie(SourceOptions(okta_cookie="idx"))
    assert source.identify(request(cookies={"idx": SID})) == SID
    assert source.identify(request(cookies={"sid": SID})) is None


@pytest.mark.parametrize("cookies", [{}, {"sid": ""}, {"SID": SID}, {"other": SID}])
def test_okta_cookie_without_the_cookie_names_nothing(cookies):
    assert OktaCookie(SourceOptions()).identify(request(cookies=cookies)) is None


def test_okta_cookie_ignores_headers_and_peer():
    source = OktaCookie(SourceOptions())
    assert source.identify(request(headers={"X-Okta-Session-Id": SID, "Cookie": f"sid={SID}"}, peer=None)) is None


# --- the built-in sources: a trusted header --------------------------------------------------------------------------

TRUSTED = SourceOptions(session_header_from=("10.0.0.0/8", "192.168.1.5", "2001:db8::/32", "::1"))


@pytest.mark.parametrize(
    ("peer", "believed"),
    [
        ("10.0.0.1", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("9.255.255.255", False),
        ("192.168.1.5", True),
        ("192.168.1.6", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::1", True),
        ("::2", False),
        ("127.0.0.1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_trusted_header_is_believed_only_from_the_configured_networks(peer, believed):
    found = TrustedHeader(TRUSTED).identify(request(headers={"X-Okta-Session-Id": SID}, peer=peer))
    assert found == (SID if believed else None)


@pytest.mark.parametrize("peer", [None, "", "not-an-address", "10.0.0.1:443", "10.0.0", "10.0.0.1/8", "[::1]",
                                  "10.0.0.1 ", "999.1.1.1"])
def test_trusted_header_from_a_peer_that_is_not_an_address_is_not_believed(peer):
    assert TrustedHeader(TRUSTED).identify(request(headers={"X-Okta-Session-Id": SID}, peer=peer)) is None


def test_trusted_header_with_no_networks_trusts_no_one():
    source = TrustedHeader(SourceOptions())
    for peer in ("127.0.0.1", "::1", "10.0.0.1"):
        assert source.identify(request(headers={"X-Okta-Session-Id": SID}, peer=peer)) is None


def test_trusted_header_reads_the_configured_header_only():
    options = SourceOptions(session_header="X-Sid", session_header_from=("127.0.0.1",))
    source = TrustedHeader(options)
    assert source.identify(request(headers={"X-Sid": SID})) == SID
    assert source.identify(request(headers={"X-Okta-Session-Id": SID})) is None


def test_trusted_header_is_read_from_a_case_insensitive_mapping_as_aiohttp_gives_it():
    from multidict import CIMultiDict

    source = TrustedHeader(SourceOptions(session_header_from=("127.0.0.1",)))
    assert source.identify(request(headers=CIMultiDict({"x-okta-session-id": SID}))) == SID  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "found"), [(f"  {SID}  ", SID), ("", None), ("   ", None)])
def test_trusted_header_value_is_stripped_and_blank_is_nothing(value, found):
    source = TrustedHeader(SourceOptions(session_header_from=("127.0.0.1",)))
    assert source.identify(request(headers={"X-Okta-Session-Id": value})) == found


def test_trusted_header_without_the_header_names_nothing():
    source = TrustedHeader(SourceOptions(session_header_from=("127.0.0.1",)))
    assert source.identify(request(cookies={"sid": SID})) is None


def test_trusted_header_takes_host_bits_in_a_network():
    source = TrustedHeader(SourceOptions(session_header_from=("10.1.2.3/16",)))
    assert source.identify(request(headers={"X-Okta-Session-Id": SID}, peer="10.1.99.99")) == SID


# --- the built-in sources: the SAML sign-in --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey("sandbox.example")


def acs_form(key: SigningKey, attributes: dict[str, str]) -> bytes:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    app = SamlApp("0oa1234567890abcdefg", "exk1234567890abcdefg", "legacy", "https://app.example/saml/acs",
                  "https://app.example/saml")
    xml = build_response(app, key, name_id=LOGIN, attributes=attributes, now=now, authn_instant=now,
                         session_index="id1700000000000.123456789")
    return urlencode({"SAMLResponse": base64.b64encode(xml).decode(), "RelayState": "/home"}).encode()


def test_saml_sign_in_reads_an_okta_acs_post(signing_key):
    reader = SamlSignIn(SourceOptions())
    assert reader.read_sign_in(acs_form(signing_key, {"okta_session_id": SID}), FORM) == SignIn(LOGIN, SID)


def test_saml_sign_in_reads_the_configured_attribute(signing_key):
    body = acs_form(signing_key, {"sessionId": SID, "okta_session_id": "102otherOTHERotherOTHe"})
    assert SamlSignIn(SourceOptions(saml_attribute="sessionId")).read_sign_in(body, FORM) == SignIn(LOGIN, SID)


def test_saml_sign_in_without_the_attribute_still_says_who_signed_in(signing_key):
    body = acs_form(signing_key, {"email": LOGIN})
    assert SamlSignIn(SourceOptions()).read_sign_in(body, FORM) == SignIn(LOGIN, None)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"SAMLResponse=", FORM), (b"", FORM), (b"RelayState=x", FORM), (b"SAMLResponse=!!!", FORM),
    (b"\xff\xfe", FORM),
])
def test_saml_sign_in_reads_nothing_from_what_is_not_a_sign_in(body, content_type):
    assert SamlSignIn(SourceOptions()).read_sign_in(body, content_type) is None


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=x", ""])
def test_saml_sign_in_reads_only_a_url_encoded_form(signing_key, content_type):
    body = acs_form(signing_key, {"okta_session_id": SID})
    assert SamlSignIn(SourceOptions()).read_sign_in(body, content_type) is None


def test_each_built_in_source_implements_its_protocol():
    made = {name: factory(SourceOptions()) for name, factory in SOURCES.items()}
    assert isinstance(made["saml"], SignInReader) and not isinstance(made["saml"], SidSource)
    for name in ("cookie", "header"):
        assert isinstance(made[name], SidSource) and not isinstance(made[name], SignInReader)


# --- third-party plugins: real distributions on sys.path -------------------------------------------------------------

ACME_MODULE = '''
from gateway.plugin import AppProfile

ACME = AppProfile("acme", ("ACMESESSION",), "/acme/acs", "/acme/login", ("/acme/logout",), "/acme/logout")


class HeaderSid:
    """A third-party source: the session id in a header, believed from anyone (a test stand-in)."""

    def __init__(self, options):
        self.header = options.session_header

    def identify(self, request):
        return request.headers.get(self.header)


A_STRING, A_NUMBER, NOTHING, A_LIST = "a string", 42, None, ["a", "list"]
'''
ACME = {"acme": "acme_plugins:ACME", "acme-header": "acme_plugins:HeaderSid"}


def acme(root: Path, **more: str) -> Path:
    """A distribution of two working plugins (profile acme, source acme-header) and any `more` entry points."""
    return write_distribution(root / "acme", "acme-plugins", {**ACME, **more}, {"acme_plugins": ACME_MODULE})


def broken(root: Path, marker: Path) -> Path:
    """A distribution whose one plugin fails to import, and leaves `marker` behind if it is ever imported."""
    module = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nraise ImportError('needs sdk')\n"
    return write_distribution(root / "broken", "broken-plugin", {"broken": "broken_plugin:Thing"},
                              {"broken_plugin": module})


def test_a_distribution_on_the_path_is_found_and_forgotten_once_off_it(tmp_path):
    with on_path(acme(tmp_path)):
        assert app_profile("acme").session_cookies == ("ACMESESSION",)
        assert "acme_plugins" in sys.modules
    with pytest.raises(PluginError):
        app_profile("acme")
    assert "acme_plugins" not in sys.modules


def test_a_third_party_profile_is_found_by_its_entry_point_name(tmp_path):
    with on_path(acme(tmp_path)):
        assert app_profile("acme") is sys.modules["acme_plugins"].ACME
        assert app_profile("generic").name == "generic"  # the built-ins are still there


def test_a_third_party_source_factory_is_found_and_works(tmp_path):
    with on_path(acme(tmp_path)):
        factory = source_factory("acme-header")
        assert factory is sys.modules["acme_plugins"].HeaderSid
        source = factory(SourceOptions(session_header="X-Acme"))
        assert isinstance(source, SidSource) and source.identify(request(headers={"X-Acme": SID})) == SID


def test_an_unknown_name_lists_the_built_ins_of_its_kind_and_the_third_party_names_unloaded(tmp_path):
    marker = tmp_path / "imported"
    with on_path(acme(tmp_path), broken(tmp_path, marker)):
        with pytest.raises(PluginError) as profiles:
            app_profile("nope")
        with pytest.raises(PluginError) as sources:
            source_factory("nope")
        assert "acme_plugins" not in sys.modules and not marker.exists()
    assert str(sources.value) == "one of cookie, header, saml, or an installed plugin (acme, acme-header, broken)"
    assert str(profiles.value) == ("one of " + ", ".join(sorted(BUILTIN_PROFILES))
                                   + ", or an installed plugin (acme, acme-header, broken)")


def test_a_profile_is_not_a_source_and_a_source_is_not_a_profile(tmp_path):
    with on_path(acme(tmp_path)):
        with pytest.raises(UnusablePlugin) as source:
            source_factory("acme")
        with pytest.raises(UnusablePlugin) as profile:
            app_profile("acme-header")
    assert str(source.value).endswith('; plugin "acme" (entry point acme_plugins:ACME) is an app profile')
    assert str(profile.value).endswith(
        '; plugin "acme-header" (entry point acme_plugins:HeaderSid) is a session-id source')


@pytest.mark.parametrize(("attribute", "kind"), [("A_STRING", "str"), ("A_NUMBER", "int"), ("NOTHING", "NoneType"),
                                                 ("A_LIST", "list")])
def test_an_entry_point_that_is_neither_a_profile_nor_a_factory_is_unusable_and_named(tmp_path, attribute, kind):
    with on_path(acme(tmp_path, odd=f"acme_plugins:{attribute}")):
        for lookup in (source_factory, app_profile):
            with pytest.raises(UnusablePlugin) as caught:
                lookup("odd")
            assert str(caught.value) == (f'a loadable plugin; plugin "odd" (entry point acme_plugins:{attribute}) '
                                         f"loads a value of type {kind}, neither an app profile nor a source factory")


@pytest.mark.parametrize(("value", "module", "said"), [
    ("nowhere_at_all.sources:Thing", None, "ModuleNotFoundError: No module named 'nowhere_at_all'"),
    ("acme_plugins:Missing", ACME_MODULE, "AttributeError: module 'acme_plugins' has no attribute 'Missing'"),
    ("acme_plugins:Thing", "raise RuntimeError('the acme licence\\n  has expired')",
     "RuntimeError: the acme licence has expired"),  # on one line
    ("acme_plugins:Thing", "import acme_sdk", "ModuleNotFoundError: No module named 'acme_sdk'"),
    ("acme_plugins:Thing", "Thing = 1 / 0", "ZeroDivisionError: division by zero"),
])
def test_a_plugin_that_fails_to_load_is_unusable_and_names_its_entry_point(tmp_path, value, module, said):
    modules = {"acme_plugins": module} if module else {}
    with on_path(write_distribution(tmp_path, "acme-plugins", {"acme": value}, modules)):
        for lookup in (source_factory, app_profile):
            with pytest.raises(UnusablePlugin) as caught:
                lookup("acme")
            assert str(caught.value) == f'a loadable plugin; plugin "acme" (entry point {value}) failed to load: {said}'


def test_a_plugin_that_fails_to_load_is_never_imported_for_another_name(tmp_path):
    marker = tmp_path / "imported"
    with on_path(acme(tmp_path), broken(tmp_path, marker)):
        assert source_factory("saml") is SamlSignIn and app_profile("servlet") is BUILT_INS["servlet"]
        assert app_profile("acme").name == "acme" and source_factory("acme-header").__name__ == "HeaderSid"
        assert not marker.exists()
        with pytest.raises(UnusablePlugin):
            source_factory("broken")
        assert marker.exists()


def test_a_configuration_of_built_ins_loads_beside_a_broken_plugin(tmp_path):
    marker = tmp_path / "imported"
    with on_path(broken(tmp_path, marker)):
        settings = parse(bound(app_profile="servlet", sid_sources=["saml", "cookie"]), "gw.toml")
    assert settings.routes.routes[0].sessions is not None and not marker.exists()


def test_a_configuration_that_uses_a_broken_plugin_is_one_error_naming_plugin_and_entry_point(tmp_path):
    with on_path(write_distribution(tmp_path, "acme-plugins", {"acme": "acme_plugin.sources:Acme"})):
        sources = config_error(bound(sid_sources=["saml", "acme"]))
        profile = config_error(bound(app_profile="acme"))
    loading = ('expected a loadable plugin; plugin "acme" (entry point acme_plugin.sources:Acme) failed to load: '
               "ModuleNotFoundError: No module named 'acme_plugin'")
    assert sources == f"gw.toml: route[0] (hr).sid_sources: {loading}"
    assert profile == f"gw.toml: route[0] (hr).app_profile: {loading}"


def test_a_configuration_naming_a_plugin_of_the_other_kind_says_so(tmp_path):
    with on_path(acme(tmp_path)):
        message = config_error(bound(app_profile="acme-header"))
    assert message == ("gw.toml: route[0] (hr).app_profile: expected one of " + ", ".join(sorted(BUILTIN_PROFILES))
                       + ', or an installed plugin (acme, acme-header); plugin "acme-header" (entry point '
                       "acme_plugins:HeaderSid) is a session-id source")


def test_a_built_in_name_cannot_be_taken_over_even_from_first_on_the_path(tmp_path):
    marker = tmp_path / "imported"
    module = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nEVIL = print\n"
    impostor = write_distribution(tmp_path, "impostor", {name: "impostor:EVIL" for name in BUILT_INS},
                                  {"impostor": module})
    with on_path(impostor):
        assert {ep.dist.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name="saml")
                if ep.dist is not None} == {"impostor", DISTRIBUTION}
        for name, found in BUILT_INS.items():
            assert (app_profile if isinstance(found, AppProfile) else source_factory)(name) is found
        with pytest.raises(PluginError) as listing:
            source_factory("nope")
        assert str(listing.value) == "one of cookie, header, saml"  # the impostor's names are the built-ins'
    assert not marker.exists()


def test_between_two_third_party_plugins_of_one_name_the_first_on_the_path_wins(tmp_path):
    profile = 'from gateway.plugin import AppProfile\nP = AppProfile("x", ({!r},), "/acs", "/login", ("/logout",))\n'
    first = write_distribution(tmp_path / "1", "first", {"x": "first_x:P"}, {"first_x": profile.format("FIRST")})
    second = write_distribution(tmp_path / "2", "second", {"x": "second_x:P"}, {"second_x": profile.format("SECOND")})
    with on_path(first, second):
        assert app_profile("x").session_cookies == ("FIRST",)
    with on_path(second, first):
        assert app_profile("x").session_cookies == ("SECOND",)


def test_entry_points_are_loaded_once_not_on_every_lookup(tmp_path, monkeypatch):
    loads: list[str] = []
    load = importlib.metadata.EntryPoint.load

    def counted(self: importlib.metadata.EntryPoint) -> Any:
        loads.append(self.name)
        return load(self)

    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", counted)
    with on_path(acme(tmp_path)):
        for _ in range(5):
            app_profile("acme"), source_factory("acme-header"), app_profile("generic")
    assert sorted(loads) == ["acme", "acme-header", "generic"]


def test_a_route_can_name_a_third_party_profile_and_source(tmp_path):
    with on_path(acme(tmp_path)):
        settings = parse(bound(app_profile="acme", sid_sources=["saml", "acme-header"]), "gw.toml")
        expected = sys.modules["acme_plugins"].ACME
    sessions = settings.routes.routes[0].sessions
    assert sessions is not None and sessions.profile == expected and sessions.sources == ("saml", "acme-header")
