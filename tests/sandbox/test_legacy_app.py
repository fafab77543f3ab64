"""The legacy SAML app against the Okta sandbox: sign-in, what it refuses, its own sessions, logout, API and WebSocket.

Real servers on loopback: Okta's sandbox on OKTA_HOST, the legacy app on 127.0.0.1, browsers with their own jars.
The app keeps time with the org's clock, so moving the org clock ages assertions and app sessions alike.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from lxml import etree
from okta_sandbox_support import ALICE, BOB, OKTA_HOST, Answer, Okta, free_port
from yarl import URL

from gateway.sandbox.legacy import LEGACY_STATE, LegacyAppConfig, LegacyState, build_legacy_app
from gateway.sandbox.okta import saml
from gateway.sandbox.okta.saml import read_autopost_form, redirect_binding_request

AUDIENCE = "urn:example:legacy-hr"
NS = {"saml2p": saml.SAML2P, "saml2": saml.SAML2}


@dataclass
class Legacy:
    config: LegacyAppConfig
    state: LegacyState
    origin: str  # where the app listens (it serves its routes under config.base_path there)

    def url(self, path: str) -> str:
        return self.origin + self.config.base_path + path


@pytest.fixture
def okta(okta_sandbox: Okta) -> Okta:
    return okta_sandbox


@pytest.fixture
def start_legacy(aiohttp_server: Any, okta: Okta) -> Any:
    async def start(*, prefix: str = "", app_name: str = "legacy", **overrides: Any) -> Legacy:
        port = free_port("127.0.0.1")
        origin = f"http://127.0.0.1:{port}"
        saml_app = okta.org.add_saml_app(app_name, f"{origin}{prefix}/saml/acs", AUDIENCE,
                                         attributes={"okta_session_id": "session.id"})
        options: dict[str, Any] = {
            "name": "Legacy HR", "external_url": origin + prefix, "base_path": prefix,
            "idp_sso_url": okta.url(f"/app/{app_name}/sso/saml"), "audience": AUDIENCE,
            "idp_certificate_pem": okta.org.signing_certificate_pem, "idp_issuer": saml_app.issuer,
            "clock": okta.org.clock.now, **overrides,
        }
        config = LegacyAppConfig(**options)
        app = build_legacy_app(config)
        await aiohttp_server(app, host="127.0.0.1", port=port)
        return Legacy(config, app[LEGACY_STATE], origin)

    return start


@pytest.fixture
async def legacy(start_legacy: Any) -> Legacy:
    return await start_legacy()  # type: ignore[no-any-return]


async def get(client: aiohttp.ClientSession, url: str | URL, **kwargs: Any) -> Answer:
    async with client.get(url, allow_redirects=False, **kwargs) as r:
        return Answer(r.status, r.headers, await r.text())


async def post(client: aiohttp.ClientSession, url: str, data: Any, **kwargs: Any) -> Answer:
    async with client.post(url, data=data, allow_redirects=False, **kwargs) as r:
        return Answer(r.status, r.headers, await r.text())


async def saml_post(okta: Okta, legacy: Legacy, browser: aiohttp.ClientSession, who: tuple[str, str] = ALICE,
                    return_to: str = "/page/1") -> tuple[str, dict[str, str]]:
    """SP-initiated sign-in up to the auto-post page: where the browser would POST, and what."""
    start = await get(browser, URL(legacy.url("/login")).with_query({"return": return_to}))
    assert start.status == 302, start.text
    answer = await get(browser, start.headers["Location"])
    if answer.status == 302:  # no Okta session yet: the sign-in page, and back to the SSO URL
        from_uri = URL(answer.headers["Location"]).query["fromURI"]
        signed = await okta.browser_sign_in(browser, *who, from_uri)
        assert signed.status == 302
        answer = await get(browser, okta.url(signed.headers["Location"]))
    assert answer.status == 200, answer.text
    return read_autopost_form(answer.text)


async def sign_in(okta: Okta, legacy: Legacy, browser: aiohttp.ClientSession, who: tuple[str, str] = ALICE,
                  return_to: str = "/page/1") -> Answer:
    action, fields = await saml_post(okta, legacy, browser, who, return_to)
    answer = await post(browser, action, fields)
    assert answer.status == 303, answer.text
    return answer


def jar_cookie(browser: aiohttp.ClientSession, name: str = "JSESSIONID") -> str | None:
    return next((m.value for m in browser.cookie_jar if m.key == name and m["domain"] == "127.0.0.1"), None)


def xml_of(fields: dict[str, str]) -> bytes:
    return base64.b64decode(fields["SAMLResponse"])


def with_xml(fields: dict[str, str], xml: bytes) -> dict[str, str]:
    return {**fields, "SAMLResponse": base64.b64encode(xml).decode()}


async def okta_session_id(okta: Okta, browser: aiohttp.ClientSession) -> str:
    return str((await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)).json["id"])


# --- sign-in ------------------------------------------------------------------------------------------------

async def test_sp_initiated_sign_in_ends_signed_in_where_it_started(okta, legacy):
    browser = okta.browser()
    start = await get(browser, URL(legacy.url("/login")).with_query({"return": "/page/1"}))
    location = URL(start.headers["Location"])
    assert str(location.with_query(None)) == okta.url("/app/legacy/sso/saml")
    assert location.query["RelayState"] == "/page/1"
    request = saml.parse_authn_request(location.query["SAMLRequest"])
    assert request.acs_url == legacy.config.acs_url and request.issuer == AUDIENCE
    assert request.id in legacy.state.pending_requests

    action, fields = await saml_post(okta, legacy, browser)
    assert action == legacy.config.acs_url == legacy.url("/saml/acs")
    done = await post(browser, action, fields)
    assert (done.status, done.headers["Location"]) == (303, "/page/1")
    set_cookie = done.headers["Set-Cookie"]
    assert set_cookie.startswith("JSESSIONID=") and "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie and "Path=/" in set_cookie and "Max-Age" not in set_cookie
    me = await get(browser, legacy.url("/api/me"))
    assert me.status == 200 and me.json["login"] == ALICE[0]
    home = await get(browser, legacy.url("/"))
    assert f"Signed in to Legacy HR as <b>{ALICE[0]}</b>" in home.text
    page = await get(browser, legacy.url("/page/1"))
    assert page.status == 200 and "Page 1" in page.text
    assert list(legacy.state.pending_requests) == [request.id]  # the answered request is used up; this one not


async def test_the_okta_session_id_attribute_reaches_the_apps_session(okta, legacy):
    browser = okta.browser()
    await sign_in(okta, legacy, browser)
    okta_sid = await okta_session_id(okta, browser)
    me = await get(browser, legacy.url("/api/me"))
    assert me.json["attributes"] == {"okta_session_id": okta_sid}
    session = legacy.state.sessions[jar_cookie(browser)]
    assert (session.login, session.attributes) == (ALICE[0], {"okta_session_id": okta_sid})


async def test_idp_initiated_sign_in_is_accepted(okta, legacy):
    browser = okta.browser()
    await okta.browser_sign_in(browser, *BOB)
    action, fields = read_autopost_form((await get(browser, okta.url("/app/legacy/sso/saml"))).text)
    done = await post(browser, action, fields)
    assert (done.status, done.headers["Location"]) == (303, "/")
    assert (await get(browser, legacy.url("/api/me"))).json["login"] == BOB[0]


async def test_a_page_behind_login_sends_a_stranger_to_sign_in_and_back(okta, legacy):
    browser = okta.browser()
    answer = await get(browser, legacy.url("/page/7"))
    assert answer.status == 302
    location = URL(answer.headers["Location"])
    assert location.path == "/login" and location.query["return"] == "/page/7"
    home = await get(browser, legacy.url("/"))
    assert "Not signed in" in home.text and 'href="/login?return=/"' in home.text


async def test_behind_a_path_prefix_every_link_and_check_uses_the_external_url(okta, start_legacy):
    legacy = await start_legacy(prefix="/hr")
    assert legacy.config.acs_url == f"{legacy.origin}/hr/saml/acs"
    browser = okta.browser()
    done = await sign_in(okta, legacy, browser, return_to="/hr/page/2")
    assert done.headers["Location"] == "/hr/page/2"
    assert 'href="/hr/page/3"' in (await get(browser, legacy.url("/page/2"))).text
    action, fields = await saml_post(okta, legacy, okta.browser(), return_to="/page/2")  # outside the prefix
    assert fields["RelayState"] == "/hr/"
    out = await get(browser, legacy.url("/logout"))
    assert out.headers["Location"] == "/hr/?logged_out=1"


# --- what the ACS refuses ------------------------------------------------------------------------------------

async def test_a_tampered_name_id_is_refused(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    forged = xml_of(fields).replace(ALICE[0].encode(), BOB[0].encode())
    answer = await post(browser, action, with_xml(fields, forged))
    assert answer.status == 403 and "signature" in answer.text
    assert legacy.state.sessions == {} and jar_cookie(browser) is None


async def test_a_response_signed_by_another_key_is_refused(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    app, now = okta.org.apps["legacy"], okta.org.clock.now()

    def response(key: saml.SigningKey) -> dict[str, str]:
        xml = saml.build_response(app, key, name_id=BOB[0], attributes={}, now=now, authn_instant=now,
                                  session_index=saml.new_xml_id())
        return {"SAMLResponse": base64.b64encode(xml).decode()}

    assert (await post(browser, action, response(saml.SigningKey("evil.example")))).status == 403
    assert legacy.state.sessions == {}
    assert (await post(browser, action, response(okta.org.signing_key))).status == 303  # the same, signed right


async def test_a_wrapped_signature_is_refused(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    root = etree.fromstring(xml_of(fields))
    signed = root.find("saml2:Assertion", NS)
    evil = etree.fromstring(etree.tostring(signed))
    evil.set("ID", "id-evil")
    evil.find("saml2:Subject/saml2:NameID", NS).text = BOB[0]
    evil.remove(evil.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    signed.addprevious(evil)  # the unsigned one first, the signed original after it
    answer = await post(browser, action, with_xml(fields, etree.tostring(root)))
    assert answer.status == 403 and legacy.state.sessions == {}


async def test_a_replayed_response_is_refused(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    assert (await post(browser, action, fields)).status == 303
    thief = okta.browser()
    replay = await post(thief, action, fields)
    assert replay.status == 403 and "used before" in replay.text
    assert len(legacy.state.sessions) == 1 and jar_cookie(thief) is None


async def test_an_expired_assertion_is_refused(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    okta.org.clock.advance(7 * 60)  # NotOnOrAfter is 5 minutes after issue; the skew is 1 minute
    answer = await post(browser, action, fields)
    assert answer.status == 403 and "expired" in answer.text
    assert legacy.state.sessions == {}


async def test_a_failed_status_is_refused_although_the_assertion_verifies(okta, legacy):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    failed = xml_of(fields).replace(b"status:Success", b"status:Requester")  # the Response is not signed
    assert (await post(browser, action, with_xml(fields, failed))).status == 403


async def test_an_assertion_for_another_audience_is_refused(okta, start_legacy):
    legacy = await start_legacy(idp_issuer=None)  # each Okta app has its own issuer: let the audience check speak
    okta.org.add_saml_app("other", legacy.config.acs_url, "urn:example:other-app")
    browser = okta.browser()
    await okta.browser_sign_in(browser, *ALICE)
    action, fields = read_autopost_form((await get(browser, okta.url("/app/other/sso/saml"))).text)
    answer = await post(browser, action, fields)
    assert answer.status == 403 and "audience" in answer.text


async def test_an_assertion_for_another_recipient_is_refused(okta, start_legacy):
    legacy = await start_legacy(idp_issuer=None)  # each Okta app has its own issuer: let the recipient check speak
    okta.org.add_saml_app("elsewhere", "http://127.0.0.1:1/saml/acs", AUDIENCE)
    browser = okta.browser()
    await okta.browser_sign_in(browser, *ALICE)
    _, fields = read_autopost_form((await get(browser, okta.url("/app/elsewhere/sso/saml"))).text)
    answer = await post(browser, legacy.config.acs_url, fields)
    assert answer.status == 403 and "Destination" in answer.text
    root = etree.fromstring(xml_of(fields))
    del root.attrib["Destination"]  # unsigned: an attacker may drop it; the signed Recipient still says no
    answer = await post(browser, legacy.config.acs_url, with_xml(fields, etree.tostring(root)))
    assert answer.status == 403 and "Recipient" in answer.text


async def test_an_assertion_from_another_issuer_is_refused(okta, start_legacy):
    legacy = await start_legacy(idp_issuer="http://www.okta.com/exkSomeoneElse")
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    answer = await post(browser, action, fields)
    assert answer.status == 403 and "issuer" in answer.text


async def test_an_answer_to_a_request_the_app_never_sent_is_refused(okta, legacy):
    browser = okta.browser()
    await okta.browser_sign_in(browser, *ALICE)
    forged = redirect_binding_request(request_id="_not-from-the-app", issuer=AUDIENCE,
                                      acs_url=legacy.config.acs_url, destination=legacy.config.idp_sso_url)
    sso = await get(browser, okta.url("/app/legacy/sso/saml"), params={"SAMLRequest": forged})
    action, fields = read_autopost_form(sso.text)
    answer = await post(browser, action, fields)
    assert answer.status == 403 and "did not send" in answer.text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BOMB = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b'<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol">&d;</saml2p:Response>')
XXE = (b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b'<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol">&e;</saml2p:Response>')


@pytest.mark.parametrize("form", [
    {"SAMLResponse": "%%% not base64 %%%"},
    {"SAMLResponse": b64(b"this is not XML")},
    {"SAMLResponse": b64(b"<unclosed")},
    {"SAMLResponse": b64(BOMB)},
    {"SAMLResponse": b64(XXE)},
    {"SAMLResponse": b64(b"<x/>")},
    {"SAMLResponse": b64(b'<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"/>')},
    {"SAMLResponse": ""},
    {"RelayState": "/"},
], ids=["not-base64", "not-xml", "broken-xml", "entity-bomb", "external-entity", "not-a-response", "empty-response",
        "empty", "missing"])
async def test_garbage_is_a_4xx_not_a_5xx(okta, legacy, form):
    answer = await post(okta.browser(), legacy.config.acs_url, form)
    assert answer.status == 403 and "Sign-in failed" in answer.text and "Traceback" not in answer.text
    assert legacy.state.sessions == {}


async def test_an_oversized_or_unreadable_post_is_a_4xx(okta, legacy):
    browser = okta.browser()
    assert (await post(browser, legacy.config.acs_url, {"SAMLResponse": "A" * 300_000})).status == 413
    form = "application/x-www-form-urlencoded"
    assert (await post(browser, legacy.config.acs_url, b"\xff\xfe=\xff", headers={"Content-Type": form})).status == 400
    unknown_charset = {"Content-Type": form + "; charset=no-such-charset"}
    assert (await post(browser, legacy.config.acs_url, b"SAMLResponse=x", headers=unknown_charset)).status == 400
    multipart = aiohttp.FormData()
    multipart.add_field("SAMLResponse", b"<x/>", filename="response.xml")
    assert (await post(browser, legacy.config.acs_url, multipart)).status == 415
    broken = {"Content-Type": "multipart/form-data; boundary=b"}
    assert (await post(browser, legacy.config.acs_url, b"--b\r\nbroken", headers=broken)).status == 415
    assert legacy.state.sessions == {}


@pytest.mark.parametrize("relay_state", ["https://evil.example/", "//evil.example/", "/\\evil.example",
                                         "javascript:alert(1)", "/\tevil"])
async def test_a_relay_state_off_the_app_is_not_followed(okta, legacy, relay_state):
    browser = okta.browser()
    action, fields = await saml_post(okta, legacy, browser)
    answer = await post(browser, action, {**fields, "RelayState": relay_state})
    assert (answer.status, answer.headers["Location"]) == (303, "/")


async def test_a_return_off_the_app_is_not_sent_as_relay_state(okta, legacy):
    answer = await get(okta.browser(), URL(legacy.url("/login")).with_query({"return": "https://evil.example/"}))
    assert URL(answer.headers["Location"]).query["RelayState"] == "/"


async def test_a_local_relay_state_is_followed_with_its_query(okta, legacy):
    browser = okta.browser()
    done = await sign_in(okta, legacy, browser, return_to="/page/3?tab=2")
    assert done.headers["Location"] == "/page/3?tab=2"


# --- the app's own session -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_logout_destroys_the_server_side_session_and_expires_the_cookie(okta, legacy, method):
    browser = okta.browser()
    await sign_in(okta, legacy, browser)
    cookie = jar_cookie(browser)
    assert cookie in legacy.state.sessions
    async with browser.request(method, legacy.url("/logout"), allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (303, "/?logged_out=1")
        set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith("JSESSIONID=") and "Max-Age=0" in set_cookie and "Path=/" in set_cookie
    assert cookie not in legacy.state.sessions and legacy.state.logouts == 1
    assert jar_cookie(browser) is None
    page = await get(browser, legacy.url("/?logged_out=1"))
    assert "Signed out" in page.text and "Not signed in" in page.text
    stolen = okta.client(cookies=False)  # the old cookie value is worth nothing now
    assert (await get(stolen, legacy.url("/api/me"), headers={"Cookie": f"JSESSIONID={cookie}"})).status == 401
    assert await okta_session_id(okta, browser)  # the app's logout leaves Okta's session alone (seed 004)


async def test_an_unknown_cookie_is_not_signed_in_and_is_left_alone(okta, legacy):
    client = okta.client(cookies=False)
    for path in ("/", "/api/me"):
        answer = await get(client, legacy.url(path), headers={"Cookie": "JSESSIONID=made-up-value"})
        assert "Set-Cookie" not in answer.headers
        assert answer.status == 401 if path == "/api/me" else "Not signed in" in answer.text
    assert (await get(client, legacy.url("/api/me"))).json == {"error": "not signed in"}


async def test_the_session_outlives_okta_and_ends_only_when_idle(okta, legacy):
    browser = okta.browser()
    await sign_in(okta, legacy, browser)
    cookie = jar_cookie(browser)
    okta.org.clock.advance(7 * 3600)  # Okta's session (2 h idle) is long gone; the app's is not
    assert (await get(browser, legacy.url("/api/me"))).status == 200
    okta.org.clock.advance(7 * 3600)  # 14 h after sign-in, 7 h after the last request
    assert (await get(browser, legacy.url("/api/me"))).status == 200
    okta.org.clock.advance(8 * 3600 + 1)
    assert (await get(browser, legacy.url("/api/me"))).status == 401
    assert cookie not in legacy.state.sessions


async def test_each_sign_in_is_a_new_session(okta, legacy):
    alice, bob = okta.browser(), okta.browser()
    await sign_in(okta, legacy, alice)
    await sign_in(okta, legacy, bob, who=BOB)
    assert jar_cookie(alice) != jar_cookie(bob) and len(legacy.state.sessions) == 2
    assert {s.login for s in legacy.state.sessions.values()} == {ALICE[0], BOB[0]}


# --- WebSocket -------------------------------------------------------------------------------------------------

async def test_the_websocket_greets_and_echoes(okta, legacy):
    browser = okta.browser()
    await sign_in(okta, legacy, browser)
    async with browser.ws_connect(legacy.url("/ws")) as ws:
        assert await ws.receive_json(timeout=5) == {"hello": ALICE[0]}
        await ws.send_str("ping")
        assert await ws.receive_str(timeout=5) == "ping"


async def test_the_websocket_refuses_a_stranger(okta, legacy):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await okta.browser().ws_connect(legacy.url("/ws"))
    assert refused.value.status == 401


async def test_the_websocket_closes_once_the_session_ends(okta, legacy):
    browser = okta.browser()
    await sign_in(okta, legacy, browser)
    async with browser.ws_connect(legacy.url("/ws")) as ws:
        await ws.receive_json(timeout=5)
        await get(browser, legacy.url("/logout"))
        await ws.send_str("still there?")
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


# --- configuration ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"external_url": "ftp://127.0.0.1/"}, {"external_url": "/relative"}, {"external_url": "http://h/?q=1"},
    {"base_path": "/app/"}, {"acs_path": "saml/acs"}, {"logout_path": "/saml/acs"}, {"session_idle_seconds": 0},
])
def test_a_bad_configuration_is_refused(overrides):
    options = {"name": "x", "external_url": "http://127.0.0.1:1", "idp_sso_url": f"http://{OKTA_HOST}:1/sso",
               "idp_certificate_pem": "", "audience": "urn:x", **overrides}
    with pytest.raises(ValueError):
        LegacyAppConfig(**options)


def test_a_bad_idp_certificate_fails_at_build_time():
    config = LegacyAppConfig(name="x", external_url="http://127.0.0.1:1", idp_sso_url=f"http://{OKTA_HOST}:1/sso",
                             idp_certificate_pem="not a certificate", audience="urn:x")
    with pytest.raises(ValueError):
        build_legacy_app(config)
