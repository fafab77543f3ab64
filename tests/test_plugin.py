"""gateway/plugin.py and the built-ins in plugins/: finding plugins by name, the built-in sources and profiles, and
third-party plugins through entry points (faked with a small helper, which its own tests exercise first)."""

from __future__ import annotations

import base64
import importlib.metadata
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway import plugin
from gateway.config import parse
from gateway.plugin import (
    ENTRY_POINT_GROUP,
    AppProfile,
    PluginError,
    RequestInfo,
    SidSource,
    SignIn,
    SignInReader,
    SourceOptions,
    app_profile,
    source_factory,
)
from gateway.sandbox.okta.saml import SamlApp, SigningKey, build_response
from plugins import PROFILES, SOURCES
from plugins.sources import OktaCookie, SamlSignIn, TrustedHeader

SID = "102abcDEFghiJKLmnoPQRst"
LOGIN = "alice@example.com"
FORM = "application/x-www-form-urlencoded"
BUILTIN_SOURCES = ("saml", "cookie", "header")
BUILTIN_PROFILES = ("generic", "shibboleth", "mellon", "simplesamlphp", "spring-saml", "servlet", "php", "aspnet")


def request(headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
            peer: str | None = "127.0.0.1") -> RequestInfo:
    return RequestInfo(headers or {}, cookies or {}, peer)


# --- finding built-ins by name ---------------------------------------------------------------------------------------


def test_the_built_in_names_are_the_documented_ones():
    assert set(SOURCES) == set(BUILTIN_SOURCES)
    assert [p.name for p in PROFILES] == list(BUILTIN_PROFILES)


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


@pytest.mark.parametrize("name", ["nope", "", "Shibboleth", "saml"])
def test_an_unknown_profile_name_lists_the_known_ones(name):
    with pytest.raises(PluginError) as caught:
        app_profile(name)
    assert str(caught.value) == "one of " + ", ".join(sorted(BUILTIN_PROFILES))


def test_a_plugin_error_is_a_lookup_error():
    assert issubclass(PluginError, LookupError)


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


# --- third-party plugins through entry points ------------------------------------------------------------------------


@dataclass
class FakeEntryPoint:
    """What importlib.metadata gives for one entry point: a name and load()."""

    name: str
    value: Any
    group: str = ENTRY_POINT_GROUP
    loads: int = 0

    def load(self) -> Any:
        self.loads += 1
        return self.value


@contextmanager
def entry_points(*points: FakeEntryPoint) -> Iterator[list[str]]:
    """Installed third-party plugins, for the duration; yields the groups the gateway asked for."""
    asked: list[str] = []

    def fake(*, group: str) -> list[FakeEntryPoint]:
        asked.append(group)
        return [p for p in points if p.group == group]

    def forget() -> None:
        plugin._all_sources.cache_clear()
        plugin._all_profiles.cache_clear()

    forget()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.metadata, "entry_points", fake)
        try:
            yield asked
        finally:
            forget()


ACME = AppProfile("acme", ("ACMESESSION",), "/acme/acs", "/acme/login", ("/acme/logout",), "/acme/logout")


class HeaderSid:
    """A third-party source: the session id in a header, believed from anyone (a test stand-in)."""

    def __init__(self, options: SourceOptions) -> None:
        self.header = options.session_header

    def identify(self, request: RequestInfo) -> str | None:
        return request.headers.get(self.header)


def test_the_helper_answers_for_the_gateways_group_only_and_restores_everything():
    before_sources, before_profiles = plugin._all_sources(), plugin._all_profiles()
    real = importlib.metadata.entry_points
    other = FakeEntryPoint("acme", ACME, group="someone.else")
    with entry_points(other) as asked:
        with pytest.raises(PluginError):
            app_profile("acme")
        assert set(asked) == {ENTRY_POINT_GROUP} and other.loads == 0
    assert plugin._all_sources() == before_sources and plugin._all_profiles() == before_profiles
    assert importlib.metadata.entry_points is real


def test_a_third_party_profile_is_found_by_its_entry_point_name():
    with entry_points(FakeEntryPoint("acme", ACME)):
        assert app_profile("acme") is ACME
        assert app_profile("generic").name == "generic"  # the built-ins are still there


def test_a_third_party_profile_is_gone_once_uninstalled():
    with entry_points(FakeEntryPoint("acme", ACME)):
        assert app_profile("acme") is ACME
    with pytest.raises(PluginError):
        app_profile("acme")


def test_a_third_party_source_factory_is_found_and_works():
    with entry_points(FakeEntryPoint("acme-header", HeaderSid)):
        factory = source_factory("acme-header")
        assert factory is HeaderSid
        source = factory(SourceOptions(session_header="X-Acme"))
        assert isinstance(source, SidSource) and source.identify(request(headers={"X-Acme": SID})) == SID


def test_a_third_party_name_is_listed_among_the_known_ones():
    with entry_points(FakeEntryPoint("acme", ACME), FakeEntryPoint("acme-header", HeaderSid)):
        with pytest.raises(PluginError) as profiles:
            app_profile("nope")
        with pytest.raises(PluginError) as sources:
            source_factory("nope")
    assert "acme" in str(profiles.value).split("one of ", 1)[1].split(", ")
    assert str(sources.value) == "one of acme-header, cookie, header, saml"


def test_a_profile_is_not_a_source_and_a_source_is_not_a_profile():
    with entry_points(FakeEntryPoint("acme", ACME), FakeEntryPoint("acme-header", HeaderSid)):
        with pytest.raises(PluginError):
            source_factory("acme")
        with pytest.raises(PluginError):
            app_profile("acme-header")


@pytest.mark.parametrize("value", ["a string", 42, None, ["a", "list"]])
def test_an_entry_point_that_is_neither_a_profile_nor_a_factory_is_ignored(value):
    with entry_points(FakeEntryPoint("odd", value)):
        with pytest.raises(PluginError):
            source_factory("odd")
        with pytest.raises(PluginError):
            app_profile("odd")


@pytest.mark.parametrize("name", BUILTIN_SOURCES)
def test_a_built_in_source_cannot_be_taken_over(name):
    with entry_points(FakeEntryPoint(name, HeaderSid)):
        assert source_factory(name) is SOURCES[name]


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_a_built_in_profile_cannot_be_taken_over(name):
    impostor = AppProfile(name, ("EVIL",), "/evil", "/evil", ("/evil",))
    with entry_points(FakeEntryPoint(name, impostor)):
        profile = app_profile(name)
        assert profile is not impostor and profile.session_cookies != ("EVIL",)


def test_entry_points_are_loaded_once_not_on_every_lookup():
    acme, header = FakeEntryPoint("acme", ACME), FakeEntryPoint("acme-header", HeaderSid)
    with entry_points(acme, header):
        app_profile("acme"), source_factory("acme-header")
        loads = (acme.loads, header.loads)
        for _ in range(5):
            app_profile("acme"), source_factory("acme-header"), app_profile("generic")
        assert (acme.loads, header.loads) == loads and max(loads) >= 1


def test_a_route_can_name_a_third_party_profile_and_source():
    with entry_points(FakeEntryPoint("acme", ACME), FakeEntryPoint("acme-header", HeaderSid)):
        settings = parse({"okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"},
                          "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
                          "route": [{"name": "app", "upstream": "http://127.0.0.1:9000", "app_profile": "acme",
                                     "sid_sources": ["saml", "acme-header"]}]}, "gw.toml")
    sessions = settings.routes.routes[0].sessions
    assert sessions is not None and sessions.profile == ACME and sessions.sources == ("saml", "acme-header")
