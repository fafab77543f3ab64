"""Okta as a SAML 2.0 IdP: signed Responses, IdP metadata, AuthnRequests (redirect binding) and the auto-POST page.

Okta's shapes, as okta-reference.md ("SAML") describes them:
- prefixes `saml2p:` (protocol) and `saml2:` (assertion); Issuer `http://www.okta.com/{app key}` (entity format);
- Subject/NameID in emailAddress format carrying the login; SubjectConfirmation bearer with Recipient = ACS;
- Conditions NotBefore now-5 min, NotOnOrAfter now+5 min, AudienceRestriction = the app's audience;
- AuthnStatement SessionIndex is an opaque per-assertion id, NOT the API session id;
- AttributeStatement from the app's attribute statements (`session.id` is how the session id gets in);
- the Assertion is signed (enveloped XML-DSig, RSA-SHA256, SHA-256 digest, exclusive c14n, the certificate in
  KeyInfo); the Response around it is not, as in Okta's default app settings.
No aiohttp here. AuthnRequests come from outside: size-bounded, no DTD, no entity expansion, no network.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod
from signxml.signer import XMLSigner

from .timefmt import iso

SAML2P = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
UNSPECIFIED_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
VALIDITY = timedelta(minutes=5)
MAX_REQUEST_BYTES = 64 * 1024

# Okta expression language, the part an attribute statement of this sandbox may use.
EXPRESSIONS = frozenset(
    {"session.id", "user.id", "user.login", "user.email", "user.firstName", "user.lastName", "user.displayName"}
)


class SamlError(ValueError):
    """An AuthnRequest that cannot be used; the message is safe to show."""


@dataclass(eq=False)
class SamlApp:
    """A SAML app integration: where assertions go, for whom, and which attributes they carry."""

    id: str  # 0oa…: the app instance id
    key: str  # exk…: the part of the IdP issuer that names the app
    name: str  # the URL name: /app/{name}/sso/saml
    acs_url: str
    audience: str
    attributes: dict[str, str] = field(default_factory=dict)  # attribute name -> expression (EXPRESSIONS)
    default_relay_state: str = ""

    @property
    def issuer(self) -> str:
        return f"http://www.okta.com/{self.key}"


@dataclass(frozen=True, slots=True)
class AuthnRequest:
    id: str
    issuer: str | None
    acs_url: str | None


class SigningKey:
    """The org's SAML signing key and its self-signed certificate (Okta's: CN=<org>, OU=SSOProvider, O=Okta)."""

    def __init__(self, common_name: str) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "sandbox"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "SSOProvider"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Okta"),
        ])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.private_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .sign(self.private_key, hashes.SHA256())
        )
        self.certificate_pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.private_key_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def certificate_b64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()


def new_xml_id() -> str:
    """Okta's XML ids look like "id" + digits and letters; they must not start with a digit."""
    return "id" + secrets.token_hex(16)


def build_response(
    app: SamlApp,
    key: SigningKey,
    *,
    name_id: str,
    attributes: dict[str, str],
    now: datetime,
    authn_instant: datetime,
    session_index: str,
    in_response_to: str | None = None,
) -> bytes:
    """A Response with one signed Assertion, as Okta POSTs it to the app's ACS."""
    response = etree.Element(_q(SAML2P, "Response"), nsmap={"saml2p": SAML2P})
    _set(response, ID=new_xml_id(), IssueInstant=iso(now), Version="2.0", Destination=app.acs_url,
         InResponseTo=in_response_to)
    _issuer(response, app)
    status = etree.SubElement(response, _q(SAML2P, "Status"))
    etree.SubElement(status, _q(SAML2P, "StatusCode"), Value=SUCCESS)
    assertion = _assertion(app, name_id=name_id, attributes=attributes, now=now, authn_instant=authn_instant,
                           session_index=session_index, in_response_to=in_response_to)
    response.append(_sign(assertion, key))
    return etree.tostring(response, xml_declaration=True, encoding="UTF-8")


def _assertion(
    app: SamlApp, *, name_id: str, attributes: dict[str, str], now: datetime, authn_instant: datetime,
    session_index: str, in_response_to: str | None,
) -> etree._Element:
    assertion = etree.Element(_q(SAML2, "Assertion"), nsmap={"saml2": SAML2})
    _set(assertion, ID=new_xml_id(), IssueInstant=iso(now), Version="2.0")
    _issuer(assertion, app)
    etree.SubElement(assertion, _q(DS, "Signature"), nsmap={"ds": DS}, Id="placeholder")
    subject = etree.SubElement(assertion, _q(SAML2, "Subject"))
    etree.SubElement(subject, _q(SAML2, "NameID"), Format=EMAIL_FORMAT).text = name_id
    confirmation = etree.SubElement(subject, _q(SAML2, "SubjectConfirmation"), Method=BEARER)
    data = etree.SubElement(confirmation, _q(SAML2, "SubjectConfirmationData"))
    _set(data, InResponseTo=in_response_to, NotOnOrAfter=iso(now + VALIDITY), Recipient=app.acs_url)
    conditions = etree.SubElement(assertion, _q(SAML2, "Conditions"))
    _set(conditions, NotBefore=iso(now - VALIDITY), NotOnOrAfter=iso(now + VALIDITY))
    restriction = etree.SubElement(conditions, _q(SAML2, "AudienceRestriction"))
    etree.SubElement(restriction, _q(SAML2, "Audience")).text = app.audience
    statement = etree.SubElement(assertion, _q(SAML2, "AuthnStatement"))
    _set(statement, AuthnInstant=iso(authn_instant), SessionIndex=session_index)
    context = etree.SubElement(statement, _q(SAML2, "AuthnContext"))
    etree.SubElement(context, _q(SAML2, "AuthnContextClassRef")).text = PASSWORD_PROTECTED
    if attributes:
        attribute_statement = etree.SubElement(assertion, _q(SAML2, "AttributeStatement"))
        for name, value in attributes.items():
            attribute = etree.SubElement(attribute_statement, _q(SAML2, "Attribute"), Name=name,
                                         NameFormat=UNSPECIFIED_NAME_FORMAT)
            element = etree.SubElement(attribute, _q(SAML2, "AttributeValue"), nsmap={"xs": XS, "xsi": XSI})
            element.set(_q(XSI, "type"), "xs:string")
            element.text = value
    return assertion


def _sign(assertion: etree._Element, key: SigningKey) -> etree._Element:
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signer.namespaces = {"ds": DS}
    return signer.sign(assertion, key=key.private_key, cert=key.certificate_pem)


def metadata(app: SamlApp, key: SigningKey, sso_url: str) -> bytes:
    """The IdP metadata Okta publishes per app: entity id, signing certificate, NameID format, SSO endpoint."""
    root = etree.Element(_q(MD, "EntityDescriptor"), nsmap={"md": MD}, entityID=app.issuer)
    idp = etree.SubElement(root, _q(MD, "IDPSSODescriptor"), WantAuthnRequestsSigned="false",
                           protocolSupportEnumeration=SAML2P)
    descriptor = etree.SubElement(idp, _q(MD, "KeyDescriptor"), use="signing")
    key_info = etree.SubElement(descriptor, _q(DS, "KeyInfo"), nsmap={"ds": DS})
    x509_data = etree.SubElement(key_info, _q(DS, "X509Data"))
    etree.SubElement(x509_data, _q(DS, "X509Certificate")).text = key.certificate_b64
    etree.SubElement(idp, _q(MD, "NameIDFormat")).text = EMAIL_FORMAT
    etree.SubElement(idp, _q(MD, "SingleSignOnService"), Binding=REDIRECT_BINDING, Location=sso_url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def parse_authn_request(encoded: str) -> AuthnRequest:
    """A redirect-binding SAMLRequest (base64 of raw DEFLATE; plain XML tolerated) → its ID, Issuer and ACS URL."""
    try:
        raw = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise SamlError("SAMLRequest is not base64") from None
    xml = raw if raw.lstrip().startswith(b"<") else _inflate(raw)
    if b"<!doctype" in xml.lower() or b"<!entity" in xml.lower():
        raise SamlError("SAMLRequest may not carry a DTD")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError:
        raise SamlError("SAMLRequest is not well-formed XML") from None
    if root.tag != _q(SAML2P, "AuthnRequest"):
        raise SamlError("SAMLRequest is not an AuthnRequest")
    request_id = root.get("ID")
    if not request_id or len(request_id) > 256:
        raise SamlError("AuthnRequest has no usable ID")
    return AuthnRequest(request_id, root.findtext(_q(SAML2, "Issuer")), root.get("AssertionConsumerServiceURL"))


def redirect_binding_request(*, request_id: str, issuer: str, acs_url: str, destination: str,
                             issue_instant: datetime | None = None) -> str:
    """The SAMLRequest query value an SP sends for this AuthnRequest (for tests and the sandbox apps)."""
    request = etree.Element(_q(SAML2P, "AuthnRequest"), nsmap={"saml2p": SAML2P, "saml2": SAML2})
    _set(request, ID=request_id, Version="2.0", IssueInstant=iso(issue_instant or datetime.now(UTC)),
         Destination=destination, AssertionConsumerServiceURL=acs_url,
         ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    etree.SubElement(request, _q(SAML2, "Issuer")).text = issuer
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = deflater.compress(etree.tostring(request)) + deflater.flush()
    return base64.b64encode(raw).decode()


def _inflate(raw: bytes) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        xml = inflater.decompress(raw, MAX_REQUEST_BYTES)
    except zlib.error:
        raise SamlError("SAMLRequest is not DEFLATE-compressed XML") from None
    if inflater.unconsumed_tail:
        raise SamlError("SAMLRequest is too large")
    return xml


def autopost_page(action: str, fields: dict[str, str]) -> str:
    """The page Okta answers an SSO with: a form that the browser's script submits at once."""
    inputs = "\n".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>' for k, v in fields.items()
    )
    return (
        "<!DOCTYPE html>\n<html><head><title>Signing in</title></head>"
        '<body onload="document.forms[0].submit()">\n'
        f'<form id="appForm" method="POST" action="{html.escape(action)}">\n{inputs}\n'
        '<noscript><button type="submit">Continue</button></noscript>\n</form></body></html>\n'
    )


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


def read_autopost_form(page: str) -> tuple[str, dict[str, str]]:
    """What a browser would POST where: (action, fields) of the first form of the page. For tests."""
    reader = _FormReader()
    reader.feed(page)
    if reader.action is None:
        raise ValueError("the page has no form")
    return reader.action, reader.fields


def _q(namespace: str, tag: str) -> str:
    return f"{{{namespace}}}{tag}"


def _issuer(parent: etree._Element, app: SamlApp) -> None:
    issuer = etree.SubElement(parent, _q(SAML2, "Issuer"), nsmap={"saml2": SAML2}, Format=ENTITY_FORMAT)
    issuer.text = app.issuer


def _set(element: etree._Element, **attributes: str | None) -> None:
    for name, value in attributes.items():
        if value is not None:
            element.set(name, value)
