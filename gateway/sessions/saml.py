"""The SAML Response reader: the two facts a sign-in gives the gateway, the Subject's NameID and the Okta session id.

Rules of this module:
- Pure: no aiohttp, no I/O, no clock, no logging. Bytes and str in, a frozen `SamlLogin` or None out; it never
  raises on any input.
- Every input is hostile. The form body is size-bounded (MAX_FORM_BYTES) and field-bounded before it is read; the
  XML is parsed by defusedxml with DTDs, entity declarations and external references all refused, so an entity
  bomb or an XXE ends the parse at its DOCTYPE, before any expansion or fetch.
- The ACS form is read exactly as the app reads it, or not at all (`acs_post_refusal` says why not). An app's
  form reader (aiohttp's `post()`, a servlet container, PHP, ASP.NET) decodes the body in the Content-Type's
  charset, splits it on `&` (some on `;` too, and a servlet reads the query first), percent-decodes names and
  values, and may fold a name's case, spaces, dots or brackets. The gateway reads only a POST on which all of
  them agree:
  - one Content-Type, `application/x-www-form-urlencoded` with no parameter but an optional charset of utf-8 or
    us-ascii (any case, quoted or not), and no Content-Encoding;
  - after trailing ASCII whitespace (which aiohttp strips), only the bytes a form encoder writes,
    `A-Z a-z 0-9 * - . _ ~ ! ' ( ) + & =` and well-formed `%XX` escapes: no NUL, no other control or non-ASCII
    byte, no `;`; escapes that decode in that charset, no NUL decoded, field names that decode to printable ASCII;
  - exactly one field whose name is spelled `SAMLResponse` byte for byte and no other, in the body or the query,
    whose name folds to it (`samlresponse`, `SAML%52esponse`, `+SAMLResponse`, `SAML_Response`,
    `SAMLResponse[]`), with a value of printable ASCII (line breaks allowed).
  Anything else is refused: the enforcer forwards the POST untouched and binds nothing.
- Elements are matched by namespace, never by prefix: Okta writes `saml2p:`/`saml2:`, other IdPs `samlp:`/`saml:`
  or a default namespace, and all of them are the same document.
- None, for anything the gateway cannot read with certainty: a form refused by the rule above, bad base64, not
  XML, a DTD, a root that is not a protocol Response, a status other than Success, an EncryptedAssertion, not
  exactly one Assertion in the whole document or the one not a direct child of the Response, no Subject/NameID
  or an empty or overlong one; and a document in any encoding but UTF-8 or UTF-16 with its BOM (declared as
  such or not at all): in others, the gateway's parser and the app's may decode a byte differently.
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
import re
from collections.abc import Sequence
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as DefusedET

from ..plugin import SignIn

MAX_FORM_BYTES = 256 * 1024  # form bodies larger than this are not read; the XML inside is bounded by it too
MAX_FORM_FIELDS = 50
MAX_NAME_ID_CHARS = 512
MAX_SESSION_ID_CHARS = 128

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
    charset = form_charset(content_type)
    if charset is None or len(body) > MAX_FORM_BYTES:
        return None
    fields = read_form(body, charset)
    if isinstance(fields, str) or _form_refusal(fields) is not None:
        return None
    xml = _b64decode(next(value for raw, _, value in fields if raw == SAML_RESPONSE))
    if xml is None:
        return None
    return login_from_saml_response(xml, attribute)


def acs_post_refusal(body: bytes, content_types: Sequence[str], content_encodings: Sequence[str],
                     query: str) -> str | None:
    """Why the gateway cannot be sure it reads this ACS POST as the app will (one of REFUSALS), or None.

    `content_types` and `content_encodings` are every value of those headers; `query` is the raw query string.
    """
    charset = form_charset(content_types[0]) if len(content_types) == 1 else None
    if charset is None:
        return "content_type"
    if any(e.strip().lower() not in ("", "identity") for e in content_encodings):
        return "content_encoding"
    if len(body) > MAX_FORM_BYTES:
        return "too_large"
    if query and any(_folds_to_saml_response(name) for name in _query_names(query)):
        return "second_saml_response"
    fields = read_form(body, charset)
    if isinstance(fields, str):
        return fields
    return _form_refusal(fields)


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


SAML_RESPONSE = "SAMLResponse"
REFUSALS = ("content_type", "content_encoding", "too_large", "bytes", "escapes", "fields", "no_saml_response",
            "second_saml_response", "saml_response_value")
# What a form encoder leaves unescaped (WHATWG's urlencoded serializer; Python's urlencode adds ~, JavaScript's
# encodeURIComponent ! ' ( )), and well-formed escapes.
_FORM_BYTES = re.compile(rb"(?:[A-Za-z0-9*\-._~!'()+&=]|%[0-9A-Fa-f]{2})*")
_FORM_TYPE = re.compile(r'[ \t]*application/x-www-form-urlencoded[ \t]*'
                        r'(?:;[ \t]*charset=("?)(utf-8|us-ascii)\1[ \t]*)?', re.IGNORECASE)
_CHARSETS = {None: "utf-8", "utf-8": "utf-8", "us-ascii": "ascii"}  # aiohttp reads no charset as utf-8
_NOT_NAME_LETTERS = re.compile(r"[^a-z0-9]")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.rstrip() strips, as aiohttp does before decoding

FormField = tuple[str, str, str]  # the name as sent, the name decoded, the value decoded


def form_charset(content_type: str) -> str | None:
    """The codec of a Content-Type every form reader reads the same way (the form type, with no parameter but a
    charset of utf-8 or us-ascii), or None for any other."""
    match = _FORM_TYPE.fullmatch(content_type)
    if match is None:
        return None
    return _CHARSETS[match.group(2).lower() if match.group(2) else None]


def read_form(body: bytes, charset: str = "utf-8") -> list[FormField] | str:
    """The fields of a form body as aiohttp reads it (trailing whitespace stripped, split on `&`, `+` a space,
    escapes decoded in `charset`), or the refusal when another reader could read a byte or an escape otherwise."""
    data = body.rstrip(_ASCII_WHITESPACE)
    if _FORM_BYTES.fullmatch(data) is None:
        return "bytes"
    if data.count(b"&") >= MAX_FORM_FIELDS:
        return "fields"
    fields: list[FormField] = []
    for pair in data.decode("ascii").split("&"):
        if not pair:
            continue
        raw, _, raw_value = pair.partition("=")
        try:
            name = unquote(raw.replace("+", " "), encoding=charset, errors="strict")
            value = unquote(raw_value.replace("+", " "), encoding=charset, errors="strict")
        except UnicodeDecodeError:
            return "escapes"
        if "\0" in value or _PRINTABLE.fullmatch(name) is None:
            return "escapes"
        fields.append((raw, name, value))
    return fields


def _form_refusal(fields: list[FormField]) -> str | None:
    """None when exactly one field may be the SAMLResponse, spelled as such, with a value of printable ASCII."""
    named = [f for f in fields if _folds_to_saml_response(f[1])]
    if not named:
        return "no_saml_response"
    if len(named) > 1 or named[0][0] != SAML_RESPONSE:
        return "second_saml_response"
    if _PRINTABLE.fullmatch(named[0][2].translate(_LINE_BREAKS)) is None:
        return "saml_response_value"
    return None


_LINE_BREAKS = str.maketrans("", "", "\r\n\t")  # IdPs wrap their base64


def _folds_to_saml_response(name: str) -> bool:
    """Whether some app's form reader could take this name for SAMLResponse: case folded (ASP.NET, Java's
    equalsIgnoreCase), spaces, `_`, `.` and `[]` dropped or mangled (PHP)."""
    return _NOT_NAME_LETTERS.sub("", name.casefold()) == "samlresponse"


def _query_names(query: str) -> list[str]:
    """The names of a query string's fields, split on `&` and `;` and decoded leniently: a servlet container's
    getParameter() reads the query before the body, so a SAMLResponse there could be the one the app reads."""
    return [unquote(pair.partition("=")[0].replace("+", " "), errors="replace")
            for pair in re.split("[&;]", query) if pair]


def _b64decode(value: str) -> bytes | None:
    compact = "".join(value.split())  # IdPs wrap base64 at 64 or 76 columns
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return None


# --- the XML ----------------------------------------------------------------------------------------------------


_DECLARED_ENCODING = re.compile(r"""<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _one_way_encoded(xml: bytes) -> bool:
    """Whether every XML parser decodes these bytes alike: UTF-8, or UTF-16 with its BOM (the two encodings XML
    1.0 makes every parser read), declared as such or not declared. Other encodings are decoded by each parser's
    own tables (Python's codecs here, iconv in libxml2), and a declaration that contradicts the BOM is read by
    some parsers and ignored by others."""
    codec = next((name for bom, name in _BOMS if xml.startswith(bom)), "utf-8")
    try:
        text = xml.decode(codec)
    except UnicodeDecodeError:
        return False
    if "\0" in text:  # UTF-16 without a BOM, which parsers guess at; XML has no NUL character
        return False
    declared = _DECLARED_ENCODING.match(text.lstrip("\ufeff"))
    return declared is None or declared.group(1).lower().replace("_", "-") == codec


def _parse(xml: bytes) -> Element | None:
    if len(xml) > MAX_FORM_BYTES or not _one_way_encoded(xml):
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
