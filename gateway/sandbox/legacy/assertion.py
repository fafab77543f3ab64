"""The legacy app's side of SAML: from a POSTed SAMLResponse to a verified login, or a refusal with a reason.

Rules (what a careful SP does, and what the gateway's tests rely on the app doing):
- Untrusted input: base64 strictly, a size bound, lxml with entity expansion, DTD loading and network off; any
  DTD at all is refused.
- "See what is signed": the Assertion's signature is verified with the configured IdP certificate only (never a
  certificate the document brings), RSA/ECDSA with SHA-256 or better, at ./Assertion/Signature; every fact about
  the user comes from the element the verifier returns, never from the posted tree. A Response with more than one
  Assertion is refused outright (the usual shape of signature wrapping).
- The unsigned Response is read only for its Status (must be Success) and Destination (when present: the ACS).
- The signed Assertion: Issuer (when configured), Audience, bearer SubjectConfirmationData Recipient = the ACS
  URL, NotBefore / NotOnOrAfter on the app's clock with a small skew, a non-empty NameID. Replay and
  InResponseTo are the caller's (they need state): this module reports the ID, expiry and InResponseTo.
No aiohttp here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier

from ..okta.saml import BEARER, SAML2, SAML2P, SUCCESS
from ..okta.timefmt import parse_iso

SIGNATURE_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512,
                               SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384,
                               SignatureMethod.ECDSA_SHA512})
DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})
RESPONSE = f"{{{SAML2P}}}Response"
ASSERTION = f"{{{SAML2}}}Assertion"
NS = {"saml2p": SAML2P, "saml2": SAML2}


class Rejected(ValueError):
    """The SAMLResponse is not accepted; the message is short and safe to show."""


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a valid Assertion must say, fixed at start-up."""

    certificate: x509.Certificate
    acs_url: str
    audience: str
    issuer: str | None
    skew: timedelta
    max_bytes: int


@dataclass(frozen=True, slots=True)
class VerifiedLogin:
    login: str
    attributes: dict[str, str]  # attribute Name -> its first AttributeValue
    assertion_id: str
    not_on_or_after: datetime  # until when the Assertion ID must be remembered against replay
    in_response_to: str | None


def verify_response(encoded: str, expected: Expectations, now: datetime) -> VerifiedLogin:
    """The login a POSTed SAMLResponse proves, or Rejected."""
    xml = _decode(encoded, expected.max_bytes)
    root = _parse(xml)
    _check_response(root, expected)
    signed = _verified_assertion(xml, expected, now)
    return _read_assertion(signed, expected, now)


def _decode(encoded: str, max_bytes: int) -> bytes:
    compact = "".join(encoded.split())  # some IdPs wrap the base64 in lines
    if not compact or len(compact) > max_bytes * 4 // 3 + 4:
        raise Rejected("SAMLResponse is empty or too large")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("SAMLResponse is not base64") from None


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False)


def _parse(xml: bytes) -> etree._Element:
    try:
        root = etree.fromstring(xml, safe_parser())
    except (etree.XMLSyntaxError, ValueError):
        raise Rejected("SAMLResponse is not well-formed XML") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise Rejected("SAMLResponse may not carry a DTD")
    return root


def _check_response(root: etree._Element, expected: Expectations) -> None:
    if root.tag != RESPONSE:
        raise Rejected("not a SAML 2.0 Response")
    status = root.find("saml2p:Status/saml2p:StatusCode", NS)
    if status is None or status.get("Value") != SUCCESS:
        raise Rejected("the IdP did not answer Success")
    destination = root.get("Destination")
    if destination is not None and destination != expected.acs_url:
        raise Rejected("the Response is for another Destination")
    if len(list(root.iter(ASSERTION))) != 1 or root.find("saml2:Assertion", NS) is None:
        raise Rejected("the Response must carry exactly one Assertion")


def _verified_assertion(xml: bytes, expected: Expectations, now: datetime) -> etree._Element:
    config = SignatureConfiguration(location=f"./{ASSERTION}/", signature_methods=SIGNATURE_METHODS,
                                    digest_algorithms=DIGESTS, verification_time=now)
    try:
        result = XMLVerifier().verify(xml, x509_cert=expected.certificate, parser=safe_parser(),
                                      expect_config=config)
    except (SignXMLException, etree.LxmlError, ValueError):
        raise Rejected("the Assertion's signature does not verify") from None
    signed = result.signed_xml if not isinstance(result, list) else None
    if signed is None or signed.tag != ASSERTION:
        raise Rejected("the signature does not cover an Assertion")
    return signed


def _read_assertion(assertion: etree._Element, expected: Expectations, now: datetime) -> VerifiedLogin:
    """Every check on the signed Assertion; `assertion` is the verifier's output, nothing else."""
    assertion_id = assertion.get("ID")
    if not assertion_id or len(assertion_id) > 256:
        raise Rejected("the Assertion has no usable ID")
    if expected.issuer is not None and _text(assertion, "saml2:Issuer") != expected.issuer:
        raise Rejected("the Assertion comes from another issuer")
    _check_conditions(assertion, expected, now)
    confirmation = _bearer_confirmation(assertion, expected, now)
    login = _text(assertion, "saml2:Subject/saml2:NameID")
    if not login:
        raise Rejected("the Assertion names nobody")
    not_on_or_after = _time(confirmation.get("NotOnOrAfter"))
    return VerifiedLogin(login, _attributes(assertion), assertion_id, not_on_or_after,
                         confirmation.get("InResponseTo"))


def _check_conditions(assertion: etree._Element, expected: Expectations, now: datetime) -> None:
    conditions = assertion.find("saml2:Conditions", NS)
    if conditions is None:
        raise Rejected("the Assertion has no Conditions")
    not_before, not_after = conditions.get("NotBefore"), conditions.get("NotOnOrAfter")
    if not_before is not None and now + expected.skew < _time(not_before):
        raise Rejected("the Assertion is not valid yet")
    if not_after is None or now - expected.skew >= _time(not_after):
        raise Rejected("the Assertion has expired")
    restrictions = conditions.findall("saml2:AudienceRestriction", NS)
    if not restrictions:
        raise Rejected("the Assertion has no AudienceRestriction")
    for restriction in restrictions:  # every restriction must admit us
        if expected.audience not in {(a.text or "").strip() for a in restriction.findall("saml2:Audience", NS)}:
            raise Rejected("the Assertion is for another audience")


def _bearer_confirmation(assertion: etree._Element, expected: Expectations, now: datetime) -> etree._Element:
    """The SubjectConfirmationData of a bearer confirmation for our ACS that is still valid."""
    for confirmation in assertion.findall("saml2:Subject/saml2:SubjectConfirmation", NS):
        data = confirmation.find("saml2:SubjectConfirmationData", NS)
        if confirmation.get("Method") != BEARER or data is None:
            continue
        if data.get("Recipient") != expected.acs_url:
            raise Rejected("the Assertion is for another Recipient")
        not_after = data.get("NotOnOrAfter")
        if not_after is None or now - expected.skew >= _time(not_after):
            raise Rejected("the Assertion has expired")
        return data
    raise Rejected("the Assertion has no bearer SubjectConfirmation")


def _attributes(assertion: etree._Element) -> dict[str, str]:
    found: dict[str, str] = {}
    for attribute in assertion.findall("saml2:AttributeStatement/saml2:Attribute", NS):
        name = attribute.get("Name")
        value = attribute.find("saml2:AttributeValue", NS)
        if name and value is not None and name not in found:
            found[name] = (value.text or "").strip()
    return found


def _text(element: etree._Element, path: str) -> str:
    found = element.find(path, NS)
    if found is None or len(found):  # a child element inside a text field is not a value we accept
        return ""
    return (found.text or "").strip()


def _time(value: str | None) -> datetime:
    try:
        moment = parse_iso(value or "")
    except ValueError:
        raise Rejected("the Assertion has a malformed time") from None
    if moment.tzinfo is None:
        raise Rejected("the Assertion has a time without a zone")
    return moment
