"""The SAML Response reader: the two facts a sign-in gives the gateway, the Subject's NameID and the Okta session id.

Rules of this module:
- Pure: no aiohttp, no I/O, no clock, no logging. Bytes and str in, a frozen `SamlLogin` or None out; it never
  raises on any input.
- Every input is hostile. The form body is size-bounded (MAX_FORM_BYTES) and field-bounded before it is read; the
  XML is parsed by defusedxml with DTDs, entity declarations and external references all refused, so an entity
  bomb or an XXE ends the parse at its DOCTYPE, before any expansion or fetch.
- Elements are matched by namespace, never by prefix: Okta writes `saml2p:`/`saml2:`, other IdPs `samlp:`/`saml:`
  or a default namespace, and all of them are the same document.
- None, for anything the gateway cannot read with certainty: not a url-encoded form, no SAMLResponse or two of
  them, bad base64, not XML, a DTD, a root that is not a protocol Response, a status other than Success, an
  EncryptedAssertion, not exactly one Assertion in the whole document or the one not a direct child of the
  Response, no Subject/NameID or an empty or overlong one.
- session_id is None (the login is still returned) when the attribute is absent, its first value is empty or
  overlong, or it appears more than once with different values.
- No signature is verified here, on purpose. The app verifies the assertion; the gateway binds only when the app
  has accepted it (it answers the ACS POST with a new session cookie) and after Okta confirms the session id. What
  this module refuses instead is ambiguity that signature wrapping relies on: with two assertions, or one moved
  elsewhere in the tree, the gateway cannot tell which one the app trusts, so it reads none.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as DefusedET

from ..plugin import SignIn

MAX_FORM_BYTES = 256 * 1024  # form bodies larger than this are not read; the XML inside is bounded by it too
MAX_FORM_FIELDS = 50
MAX_NAME_ID_CHARS = 512
MAX_SESSION_ID_CHARS = 128
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

_RESPONSE = f"{{{PROTOCOL}}}Response"
_STATUS = f"{{{PROTOCOL}}}Status"
_STATUS_CODE = f"{{{PROTOCOL}}}StatusCode"
_ASSERTION = f"{{{ASSERTION}}}Assertion"
_ENCRYPTED_ASSERTION = f"{{{ASSERTION}}}EncryptedAssertion"
_SUBJECT = f"{{{ASSERTION}}}Subject"
_NAME_ID = f"{{{ASSERTION}}}NameID"
_ATTRIBUTE_STATEMENT = f"{{{ASSERTION}}}AttributeStatement"
_ATTRIBUTE = f"{{{ASSERTION}}}Attribute"
_ATTRIBUTE_VALUE = f"{{{ASSERTION}}}AttributeValue"

SamlLogin = SignIn  # session_id: the attribute's first value, stripped; None when absent or unusable


def login_from_acs_form(body: bytes, content_type: str, attribute: str = "okta_session_id") -> SamlLogin | None:
    """The login in the SAMLResponse field of a url-encoded ACS POST body, or None."""
    if len(body) > MAX_FORM_BYTES or not _is_form(content_type):
        return None
    encoded = _single_field(body, "SAMLResponse")
    if encoded is None:
        return None
    xml = _b64decode(encoded)
    if xml is None:
        return None
    return login_from_saml_response(xml, attribute)


def login_from_saml_response(xml: bytes, attribute: str = "okta_session_id") -> SamlLogin | None:
    """The login in a SAML 2.0 Response document (not signature-checked), or None."""
    root = _parse(xml)
    if root is None or root.tag != _RESPONSE or not _is_success(root):
        return None
    assertion = _the_assertion(root)
    if assertion is None:
        return None
    name_id = _name_id(assertion)
    if name_id is None:
        return None
    return SamlLogin(name_id, _attribute_value(assertion, attribute))


# --- the form ---------------------------------------------------------------------------------------------------


def _is_form(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == FORM_CONTENT_TYPE


def _single_field(body: bytes, name: str) -> str | None:
    try:
        text = body.decode("ascii")  # a browser percent-encodes everything else
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="replace")
    except ValueError:  # non-ASCII bytes, or too many fields
        return None
    values = fields.get(name)
    if values is None or len(values) != 1:
        return None
    return values[0]


def _b64decode(value: str) -> bytes | None:
    compact = "".join(value.split())  # IdPs wrap base64 at 64 or 76 columns
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return None


# --- the XML ----------------------------------------------------------------------------------------------------


def _parse(xml: bytes) -> Element | None:
    if len(xml) > MAX_FORM_BYTES:
        return None
    try:
        root: Element = DefusedET.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, ValueError):  # defusedxml's refusals are ValueErrors, as are decoding errors
        return None
    return root


def _is_success(response: Element) -> bool:
    status = response.find(_STATUS)
    code = status.find(_STATUS_CODE) if status is not None else None
    return code is not None and code.get("Value") == SUCCESS


def _the_assertion(response: Element) -> Element | None:
    """The one Assertion of the document, if it is a direct child of the Response and the only one anywhere."""
    if next(response.iter(_ENCRYPTED_ASSERTION), None) is not None:
        return None
    everywhere = list(response.iter(_ASSERTION))
    if len(everywhere) != 1:
        return None
    children = response.findall(_ASSERTION)
    if len(children) != 1 or children[0] is not everywhere[0]:
        return None
    return children[0]


def _name_id(assertion: Element) -> str | None:
    subjects = assertion.findall(_SUBJECT)
    if len(subjects) != 1:
        return None
    name_ids = subjects[0].findall(_NAME_ID)
    if len(name_ids) != 1:
        return None
    return _simple_text(name_ids[0], MAX_NAME_ID_CHARS)


def _attribute_value(assertion: Element, attribute: str) -> str | None:
    """The attribute's first value; None when it is absent, unusable, or given twice with different values."""
    firsts: set[str | None] = set()
    for statement in assertion.findall(_ATTRIBUTE_STATEMENT):
        for element in statement.findall(_ATTRIBUTE):
            if element.get("Name") == attribute:
                value = element.find(_ATTRIBUTE_VALUE)
                firsts.add(_simple_text(value, MAX_SESSION_ID_CHARS) if value is not None else None)
    if len(firsts) != 1:
        return None
    return firsts.pop()


def _simple_text(element: Element, max_chars: int) -> str | None:
    """The element's stripped text when it is plain text (no child elements), non-empty and at most max_chars."""
    if len(element):
        return None
    text = (element.text or "").strip()
    if not text or len(text) > max_chars:
        return None
    return text
