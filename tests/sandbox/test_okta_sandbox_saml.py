"""The sandbox as a SAML 2.0 IdP: the SSO page, the signed Response verified with signxml, metadata, flows."""

from __future__ import annotations

import base64
import zlib
from datetime import timedelta

import pytest
from lxml import etree
from okta_sandbox_support import ALICE, BOB, Okta
from signxml import InvalidSignature, XMLVerifier
from yarl import URL

from gateway.sandbox.okta import saml
from gateway.sandbox.okta.saml import read_autopost_form, redirect_binding_request
from gateway.sandbox.okta.timefmt import parse_iso

ACS = "http://127.0.0.1:8080/saml/acs"
AUDIENCE = "urn:example:legacy-app"
NS = {"saml2p": saml.SAML2P, "saml2": saml.SAML2, "ds": saml.DS, "md": saml.MD}


@pytest.fixture
def okta(okta_sandbox: Okta) -> Okta:
    okta_sandbox.org.add_trusted_origin("http://127.0.0.1:8080")
    okta_sandbox.org.add_saml_app("legacy", ACS, AUDIENCE, attributes={"okta_session_id": "session.id"},
                                  default_relay_state="/home")
    okta_sandbox.org.add_saml_app("plain", ACS, "urn:example:plain")
    return okta_sandbox


async def signed_in(okta: Okta, who=ALICE):
    browser = okta.browser()
    await okta.browser_sign_in(browser, *who)
    session_id = (await okta.call("GET", "/api/v1/sessions/me", client=browser, token=None)).json["id"]
    return browser, session_id


async def sso(okta: Okta, browser, app: str = "legacy", **params: str) -> tuple[str, dict[str, str], bytes]:
    """The SSO page's form: where it posts and what; and the decoded SAMLResponse."""
    async with browser.get(okta.url(f"/app/{app}/sso/saml"), params=params, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/html")
        action, fields = read_autopost_form(await r.text())
    return action, fields, base64.b64decode(fields["SAMLResponse"])


def text(root, path: str) -> str:
    found = root.find(path, NS)
    assert found is not None, path
    return found.text


async def test_sso_posts_a_signed_response_that_verifies_with_the_published_certificate(okta):
    browser, session_id = await signed_in(okta)
    action, fields, xml = await sso(okta, browser)
    assert action == ACS and fields["RelayState"] == "/home"
    verified = XMLVerifier().verify(xml, x509_cert=okta.org.signing_certificate_pem)
    assertion = verified.signed_xml
    assert assertion.tag == f"{{{saml.SAML2}}}Assertion"
    assert text(assertion, "saml2:Subject/saml2:NameID") == ALICE[0]
    name_id = assertion.find("saml2:Subject/saml2:NameID", NS)
    assert name_id.get("Format") == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    values = {a.get("Name"): a.findtext("saml2:AttributeValue", namespaces=NS)
              for a in assertion.findall("saml2:AttributeStatement/saml2:Attribute", NS)}
    assert values == {"okta_session_id": session_id}


async def test_the_response_has_oktas_shape(okta):
    browser, session_id = await signed_in(okta)
    _, _, xml = await sso(okta, browser)
    assert xml.count(b"<saml2p:Response") == 1 and b"<saml2:Assertion" in xml and b"samlp:" not in xml
    root = etree.fromstring(xml)
    app = okta.org.apps["legacy"]
    assert root.get("Destination") == ACS and root.get("Version") == "2.0"
    assert text(root, "saml2:Issuer") == app.issuer and app.issuer.startswith("http://www.okta.com/exk")
    status = root.find("saml2p:Status/saml2p:StatusCode", NS)
    assert status.get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Success"
    assertion = root.find("saml2:Assertion", NS)
    children = [etree.QName(c).localname for c in assertion]
    assert children == ["Issuer", "Signature", "Subject", "Conditions", "AuthnStatement", "AttributeStatement"]
    signed_info = assertion.find("ds:Signature/ds:SignedInfo", NS)
    assert signed_info.find("ds:SignatureMethod", NS).get("Algorithm").endswith("rsa-sha256")
    assert signed_info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == (
        "http://www.w3.org/2001/10/xml-exc-c14n#")
    assert signed_info.find("ds:Reference", NS).get("URI") == "#" + assertion.get("ID")
    now = okta.org.clock.now()
    conditions = assertion.find("saml2:Conditions", NS)
    assert parse_iso(conditions.get("NotBefore")) <= now < parse_iso(conditions.get("NotOnOrAfter"))
    assert parse_iso(conditions.get("NotOnOrAfter")) - now <= timedelta(minutes=5)
    assert text(conditions, "saml2:AudienceRestriction/saml2:Audience") == AUDIENCE
    confirmation = assertion.find("saml2:Subject/saml2:SubjectConfirmation/saml2:SubjectConfirmationData", NS)
    assert confirmation.get("Recipient") == ACS
    session_index = assertion.find("saml2:AuthnStatement", NS).get("SessionIndex")
    assert session_index and session_id not in session_index  # not the API session id


async def test_each_sso_has_its_own_session_index_and_ids(okta):
    browser, _ = await signed_in(okta)
    roots = [etree.fromstring((await sso(okta, browser))[2]) for _ in range(2)]
    indexes = {r.find("saml2:Assertion/saml2:AuthnStatement", NS).get("SessionIndex") for r in roots}
    assert len(indexes) == 2 and len({r.get("ID") for r in roots}) == 2


async def test_a_tampered_response_does_not_verify(okta):
    browser, _ = await signed_in(okta)
    _, _, xml = await sso(okta, browser)
    forged = xml.replace(ALICE[0].encode(), BOB[0].encode())
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(forged, x509_cert=okta.org.signing_certificate_pem)


async def test_metadata_publishes_the_signing_certificate(okta):
    async with okta.http.get(okta.url("/app/legacy/sso/saml/metadata")) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/xml")
        root = etree.fromstring(await r.read())
    assert root.get("entityID") == okta.org.apps["legacy"].issuer
    sso_service = root.find("md:IDPSSODescriptor/md:SingleSignOnService", NS)
    assert sso_service.get("Location") == okta.url("/app/legacy/sso/saml")
    cert_b64 = root.findtext("md:IDPSSODescriptor/md:KeyDescriptor/ds:KeyInfo/ds:X509Data/ds:X509Certificate",
                             namespaces=NS)
    pem = "-----BEGIN CERTIFICATE-----\n" + cert_b64 + "\n-----END CERTIFICATE-----\n"
    browser, _ = await signed_in(okta)
    _, _, xml = await sso(okta, browser)
    XMLVerifier().verify(xml, x509_cert=pem)  # the metadata's certificate is the signing one
    assert okta.org.signing_certificate_pem.startswith("-----BEGIN CERTIFICATE-----")


async def test_without_a_session_the_browser_signs_in_and_comes_back(okta):
    browser = okta.browser()
    async with browser.get(okta.url("/app/legacy/sso/saml"), params={"RelayState": "/deep/link"},
                           allow_redirects=False) as r:
        assert r.status == 302
        location = URL(r.headers["Location"])
    assert location.path == "/login/login.htm"
    back = location.query["fromURI"]
    assert back == "/app/legacy/sso/saml?RelayState=/deep/link"
    signed = await okta.browser_sign_in(browser, *BOB, back)
    assert (signed.status, signed.headers["Location"]) == (302, back)
    async with browser.get(okta.url(back)) as r:
        action, fields = read_autopost_form(await r.text())
    assert action == ACS and fields["RelayState"] == "/deep/link"
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assert text(root, "saml2:Assertion/saml2:Subject/saml2:NameID") == BOB[0]


async def test_sp_initiated_sso_answers_in_response_to_the_request(okta):
    browser, _ = await signed_in(okta)
    request = redirect_binding_request(request_id="_req-42", issuer=AUDIENCE, acs_url=ACS,
                                       destination=okta.url("/app/legacy/sso/saml"))
    _, fields, xml = await sso(okta, browser, SAMLRequest=request, RelayState="abc")
    root = etree.fromstring(xml)
    assert root.get("InResponseTo") == "_req-42" and fields["RelayState"] == "abc"
    data = root.find("saml2:Assertion/saml2:Subject/saml2:SubjectConfirmation/saml2:SubjectConfirmationData", NS)
    assert data.get("InResponseTo") == "_req-42"


def deflated(xml: bytes) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode()


@pytest.mark.parametrize("bad", [
    "%%%not-base64",
    deflated(b"<not-closed"),
    deflated(b"<x/>"),
    deflated(b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><saml2p:AuthnRequest '
             b'xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" ID="a">&e;</saml2p:AuthnRequest>'),
    deflated(b"<a>" + b"x" * 200_000 + b"</a>"),
])
async def test_a_hostile_or_broken_authn_request_is_400(okta, bad):
    browser, _ = await signed_in(okta)
    async with browser.get(okta.url("/app/legacy/sso/saml"), params={"SAMLRequest": bad}) as r:
        assert r.status == 400


async def test_an_authn_request_for_another_acs_is_refused(okta):
    browser, _ = await signed_in(okta)
    request = redirect_binding_request(request_id="_r", issuer=AUDIENCE, acs_url="https://evil.example/acs",
                                       destination=okta.url("/app/legacy/sso/saml"))
    async with browser.get(okta.url("/app/legacy/sso/saml"), params={"SAMLRequest": request}) as r:
        assert r.status == 400


async def test_the_embed_link_with_a_session_token_follows_seed_004(okta):
    browser = okta.browser()
    async with browser.get(okta.url("/app/legacy/sso/saml"), allow_redirects=False,
                           params={"sessionToken": await okta.session_token(*ALICE)}) as r:
        assert r.status == 302 and "sessionToken" not in r.headers["Location"]
    _, _, first = await sso(okta, browser)
    _, _, second = await sso(okta, browser, sessionToken=await okta.session_token(*BOB))
    for xml in (first, second):  # the second user's token is ignored: the app gets the first user again
        assert text(etree.fromstring(xml), "saml2:Assertion/saml2:Subject/saml2:NameID") == ALICE[0]


async def test_an_app_without_attribute_statements_gets_none(okta):
    browser, _ = await signed_in(okta)
    _, _, xml = await sso(okta, browser, app="plain")
    assert etree.fromstring(xml).find("saml2:Assertion/saml2:AttributeStatement", NS) is None
    XMLVerifier().verify(xml, x509_cert=okta.org.signing_certificate_pem)


async def test_sso_is_logged_and_is_activity(okta):
    browser, session_id = await signed_in(okta)
    okta.org.clock.advance(100 * 60)
    await sso(okta, browser)
    okta.org.clock.advance(100 * 60)  # 200 minutes after sign-in, 100 after the SSO
    assert okta.org.session(session_id) is not None
    event = okta.org.system_log[-1]
    assert event["eventType"] == "user.authentication.sso"
    assert event["authenticationContext"]["externalSessionId"] == session_id
    assert event["target"][0]["type"] == "AppInstance" and event["target"][0]["id"] == okta.org.apps["legacy"].id


async def test_an_unknown_app_is_404(okta):
    browser, _ = await signed_in(okta)
    for path in ("/app/nope/sso/saml", "/app/nope/sso/saml/metadata"):
        async with browser.get(okta.url(path)) as r:
            assert r.status == 404
