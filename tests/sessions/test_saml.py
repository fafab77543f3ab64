"""The SAML Response reader, with Okta-shaped signed Responses, other IdPs' shapes and hostile documents."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from gateway.sandbox.okta.saml import SamlApp, SigningKey, build_response
from gateway.sessions.saml import (
    MAX_FORM_BYTES,
    REFUSALS,
    SamlLogin,
    acs_post_refusal,
    form_charset,
    login_from_acs_form,
    login_from_saml_response,
    read_form,
)

SID = "102abcDEFghiJKLmnoPQRst"
LOGIN = "alice@example.com"
FORM = "application/x-www-form-urlencoded"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey("sandbox.example")


def okta_response(key: SigningKey, *, name_id: str = LOGIN, attributes: dict[str, str] | None = None) -> bytes:
    app = SamlApp("0oa1234567890abcdefg", "exk1234567890abcdefg", "legacy", "https://app.example/saml/acs",
                  "https://app.example/saml", {"okta_session_id": "session.id"})
    return build_response(app, key, name_id=name_id,
                          attributes={"okta_session_id": SID} if attributes is None else attributes,
                          now=NOW, authn_instant=NOW, session_index="id1700000000000.123456789")


STATUS_OK = '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'


def attribute(name: str, *values: str) -> str:
    inner = "".join(f"<saml:AttributeValue>{v}</saml:AttributeValue>" for v in values)
    return f'<saml:Attribute Name="{name}">{inner}</saml:Attribute>'


def assertion(*, name_id: str | None = LOGIN, attributes: str | None = None) -> str:
    subject = f"<saml:Subject><saml:NameID>{name_id}</saml:NameID></saml:Subject>" if name_id is not None else ""
    if attributes is None:
        attributes = attribute("okta_session_id", SID)
    statement = f"<saml:AttributeStatement>{attributes}</saml:AttributeStatement>" if attributes else ""
    return (f'<saml:Assertion ID="a1" Version="2.0"><saml:Issuer>http://idp.example</saml:Issuer>{subject}'
            f"{statement}</saml:Assertion>")


def response(body: str | None = None, *, status: str = STATUS_OK, prolog: str = "") -> bytes:
    """A Response with samlp:/saml: prefixes (Shibboleth, ADFS and most others); body defaults to one assertion."""
    body = assertion() if body is None else body
    return (f'{prolog}<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1" Version="2.0">'
            f"<saml:Issuer>http://idp.example</saml:Issuer>{status}{body}</samlp:Response>").encode()


def form(xml: bytes, **extra: str) -> bytes:
    return urlencode({"SAMLResponse": base64.b64encode(xml).decode(), **extra}).encode()


# --- reading good Responses --------------------------------------------------------------------------------------


def test_an_okta_signed_response_with_saml2_prefixes_is_read(signing_key: SigningKey) -> None:
    xml = okta_response(signing_key)
    assert b"<saml2p:Response" in xml and b"<saml2:Assertion" in xml
    assert login_from_saml_response(xml) == SamlLogin(LOGIN, SID)


def test_an_okta_response_posted_as_the_auto_post_form_is_read(signing_key: SigningKey) -> None:
    body = form(okta_response(signing_key), RelayState="/reports?year=2024&q=a b")
    assert login_from_acs_form(body, FORM) == SamlLogin(LOGIN, SID)


def test_samlp_and_saml_prefixes_are_read() -> None:
    assert login_from_saml_response(response()) == SamlLogin(LOGIN, SID)


def test_a_default_namespace_is_read() -> None:
    xml = (
        '<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol" ID="r1" Version="2.0">'
        '<Status><StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></Status>'
        '<Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0">'
        f"<Subject><NameID>{LOGIN}</NameID></Subject>"
        f'<AttributeStatement><Attribute Name="okta_session_id"><AttributeValue>{SID}</AttributeValue>'
        "</Attribute></AttributeStatement></Assertion></Response>"
    ).encode()
    assert login_from_saml_response(xml) == SamlLogin(LOGIN, SID)


def test_prefixes_do_not_matter_only_namespaces_do() -> None:
    wrong = response().replace(b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"',
                               b'xmlns:saml="urn:example:not-saml"')
    assert login_from_saml_response(wrong) is None


def test_the_attribute_name_is_configurable_and_matched_exactly() -> None:
    xml = response(assertion(attributes=attribute("sid", "abc") + attribute("okta_session_id", SID)))
    assert login_from_saml_response(xml, attribute="sid") == SamlLogin(LOGIN, "abc")
    assert login_from_saml_response(xml, attribute="SID") == SamlLogin(LOGIN, None)


def test_values_are_stripped_and_the_first_attribute_value_counts() -> None:
    xml = response(assertion(name_id=f"\n  {LOGIN}  \n", attributes=attribute("okta_session_id", f" {SID}\n", "x")))
    assert login_from_saml_response(xml) == SamlLogin(LOGIN, SID)


def test_a_missing_attribute_gives_a_login_without_a_session_id(signing_key: SigningKey) -> None:
    assert login_from_saml_response(okta_response(signing_key, attributes={})) == SamlLogin(LOGIN, None)
    assert login_from_saml_response(response(assertion(attributes=attribute("other", "x")))) == SamlLogin(LOGIN, None)


def test_an_empty_attribute_value_gives_no_session_id() -> None:
    assert login_from_saml_response(response(assertion(attributes=attribute("okta_session_id", "  ")))) == \
        SamlLogin(LOGIN, None)
    assert login_from_saml_response(response(assertion(attributes=attribute("okta_session_id")))) == \
        SamlLogin(LOGIN, None)


def test_an_attribute_given_twice_with_different_values_gives_no_session_id() -> None:
    twice = attribute("okta_session_id", SID) + attribute("okta_session_id", "102someoneElsesSession")
    assert login_from_saml_response(response(assertion(attributes=twice))) == SamlLogin(LOGIN, None)


def test_an_attribute_given_twice_with_the_same_value_is_read() -> None:
    twice = attribute("okta_session_id", SID) + attribute("okta_session_id", f" {SID} ")
    assert login_from_saml_response(response(assertion(attributes=twice))) == SamlLogin(LOGIN, SID)


def test_an_overlong_session_id_gives_no_session_id() -> None:
    assert login_from_saml_response(response(assertion(attributes=attribute("okta_session_id", "a" * 128)))) == \
        SamlLogin(LOGIN, "a" * 128)
    assert login_from_saml_response(response(assertion(attributes=attribute("okta_session_id", "a" * 129)))) == \
        SamlLogin(LOGIN, None)


# --- Responses the gateway cannot use ----------------------------------------------------------------------------


def test_a_missing_or_empty_name_id_gives_none() -> None:
    assert login_from_saml_response(response(assertion(name_id=None))) is None
    assert login_from_saml_response(response(assertion(name_id="   "))) is None


def test_a_very_long_name_id_gives_none() -> None:
    assert login_from_saml_response(response(assertion(name_id="a" * 512))) == SamlLogin("a" * 512, SID)
    assert login_from_saml_response(response(assertion(name_id="a" * 513))) is None


def test_a_name_id_with_child_elements_gives_none() -> None:
    assert login_from_saml_response(response(assertion(name_id=f"{LOGIN}<saml:X>.evil</saml:X>"))) is None


def test_a_comment_inside_the_name_id_does_not_truncate_it() -> None:
    # the comment-truncation trick: a reader that keeps only the first text node would see alice@example.com
    xml = response(assertion(name_id="alice@example.com<!---->.evil.example"))
    assert login_from_saml_response(xml) == SamlLogin("alice@example.com.evil.example", SID)


def test_a_status_other_than_success_gives_none() -> None:
    failed = ('<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">'
              '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:StatusCode>'
              "</samlp:Status>")
    assert login_from_saml_response(response(status=failed)) is None
    assert login_from_saml_response(response(status="")) is None


def test_two_assertions_give_none() -> None:
    two = assertion() + assertion(name_id="mallory@example.com", attributes=attribute("okta_session_id", "x"))
    assert login_from_saml_response(response(two)) is None


def test_an_assertion_wrapped_in_extensions_beside_a_good_one_gives_none() -> None:
    wrapped = f"<samlp:Extensions>{assertion(name_id='mallory@example.com')}</samlp:Extensions>{assertion()}"
    assert login_from_saml_response(response(wrapped)) is None


def test_an_assertion_that_is_not_a_direct_child_of_the_response_gives_none() -> None:
    assert login_from_saml_response(response(f"<samlp:Extensions>{assertion()}</samlp:Extensions>")) is None


def test_an_assertion_inside_the_assertion_gives_none() -> None:
    inner = assertion(name_id="mallory@example.com")
    nested = assertion().replace("</saml:Assertion>", f"<saml:Advice>{inner}</saml:Advice></saml:Assertion>")
    assert login_from_saml_response(response(nested)) is None


def test_no_assertion_gives_none() -> None:
    assert login_from_saml_response(response("")) is None


def test_an_encrypted_assertion_gives_none() -> None:
    encrypted = ('<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">'
                 "<xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData>"
                 "</xenc:EncryptedData></saml:EncryptedAssertion>")
    assert login_from_saml_response(response(encrypted)) is None
    assert login_from_saml_response(response(encrypted + assertion())) is None


def test_a_root_other_than_a_protocol_response_gives_none() -> None:
    assert login_from_saml_response(assertion().replace(
        "<saml:Assertion ", '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ', 1).encode()) is None
    logout = response().replace(b"samlp:Response", b"samlp:LogoutResponse")
    assert login_from_saml_response(logout) is None
    other_ns = response().replace(b'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"',
                                  b'xmlns:samlp="urn:oasis:names:tc:SAML:1.0:protocol"')
    assert login_from_saml_response(other_ns) is None


# --- hostile XML -------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10))
    + "]>\n"
)


def test_a_billion_laughs_bomb_gives_none_at_once() -> None:
    xml = response(assertion(name_id="&lol9;"), prolog=BILLION_LAUGHS)
    started = time.perf_counter()
    assert login_from_saml_response(xml) is None
    assert time.perf_counter() - started < 0.5


def test_an_external_entity_gives_none() -> None:
    prolog = '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    assert login_from_saml_response(response(assertion(name_id="&xxe;"), prolog=prolog)) is None


def test_an_external_dtd_gives_none() -> None:
    prolog = '<?xml version="1.0"?>\n<!DOCTYPE r SYSTEM "http://attacker.example/evil.dtd">\n'
    assert login_from_saml_response(response(prolog=prolog)) is None


def test_a_doctype_alone_gives_none() -> None:
    assert login_from_saml_response(response(prolog="<!DOCTYPE samlp:Response>\n")) is None


def test_not_xml_gives_none() -> None:
    for junk in (b"", b"not xml", b"<samlp:Response", b"\xff\xfe\x00<", b"{\"SAMLResponse\": 1}",
                 response()[:-5]):
        assert login_from_saml_response(junk) is None


def test_an_oversized_document_gives_none() -> None:
    padding = "<saml:Attribute Name='pad'><saml:AttributeValue>x</saml:AttributeValue></saml:Attribute>" * 4000
    xml = response(assertion(attributes=attribute("okta_session_id", SID) + padding))
    assert len(xml) > MAX_FORM_BYTES
    assert login_from_saml_response(xml) is None


# --- the ACS form ------------------------------------------------------------------------------------------------


def test_the_content_type_may_carry_parameters_and_any_case() -> None:
    body = form(response())
    assert login_from_acs_form(body, "application/x-www-form-urlencoded; charset=UTF-8") == SamlLogin(LOGIN, SID)
    assert login_from_acs_form(body, "Application/X-WWW-Form-URLEncoded") == SamlLogin(LOGIN, SID)


def test_a_wrong_content_type_gives_none() -> None:
    body = form(response())
    for content_type in ("multipart/form-data; boundary=x", "application/json", "text/plain", ""):
        assert login_from_acs_form(body, content_type) is None


def test_a_missing_saml_response_gives_none() -> None:
    assert login_from_acs_form(urlencode({"RelayState": "/"}).encode(), FORM) is None
    assert login_from_acs_form(b"", FORM) is None


def test_two_saml_responses_give_none() -> None:
    encoded = base64.b64encode(response()).decode()
    body = urlencode([("SAMLResponse", encoded), ("SAMLResponse", encoded)]).encode()
    assert login_from_acs_form(body, FORM) is None


def test_bad_base64_gives_none() -> None:
    good = base64.b64encode(response()).decode()
    for bad in ("!!!not base64!!!", good[:-3], good + "A", "é" + good, ""):
        assert login_from_acs_form(urlencode({"SAMLResponse": bad}).encode(), FORM) is None


def test_base64_wrapped_with_newlines_is_read() -> None:
    encoded = base64.encodebytes(response()).decode()  # lines of 76 characters, as many IdPs send it
    assert "\n" in encoded
    assert login_from_acs_form(urlencode({"SAMLResponse": encoded}).encode(), FORM) == SamlLogin(LOGIN, SID)
    crlf = encoded.replace("\n", "\r\n ")
    assert login_from_acs_form(urlencode({"SAMLResponse": crlf}).encode(), FORM) == SamlLogin(LOGIN, SID)


def test_relay_state_alongside_is_fine_in_either_order() -> None:
    encoded = base64.b64encode(response()).decode()
    for pairs in ([("RelayState", "https://app.example/x?a=1&b=2"), ("SAMLResponse", encoded)],
                  [("SAMLResponse", encoded), ("RelayState", "")]):
        body = urlencode(pairs).encode()
        assert login_from_acs_form(body, FORM) == SamlLogin(LOGIN, SID)


def test_a_body_over_the_limit_gives_none() -> None:
    body = form(response(), RelayState="x" * MAX_FORM_BYTES)
    assert len(body) > MAX_FORM_BYTES
    assert login_from_acs_form(body, FORM) is None
    assert login_from_acs_form(form(response(), RelayState="x" * 1000), FORM) == SamlLogin(LOGIN, SID)


def test_too_many_fields_give_none() -> None:
    body = form(response()) + b"".join(b"&f%d=x" % i for i in range(60))
    assert login_from_acs_form(body, FORM) is None


def test_a_body_that_is_not_ascii_gives_none() -> None:
    assert login_from_acs_form(form(response()) + "&RelayState=é".encode(), FORM) is None


def test_the_form_reader_passes_the_attribute_name_on() -> None:
    body = form(response(assertion(attributes=attribute("sid", "abc"))))
    assert login_from_acs_form(body, FORM, attribute="sid") == SamlLogin(LOGIN, "abc")
    assert login_from_acs_form(body, FORM) == SamlLogin(LOGIN, None)


# --- the ACS POST is read as the app reads it, or refused (issue 10, finding 2) ----------------------------------


def refusal(body: bytes, content_type: str | list[str] = FORM, *, encoding: list[str] | None = None,
            query: str = "") -> str | None:
    types = [content_type] if isinstance(content_type, str) else content_type
    found = acs_post_refusal(body, types, encoding or [], query)
    assert found is None or found in REFUSALS
    return found


def test_a_browser_posted_form_is_not_refused() -> None:
    body = form(response(), RelayState="/reports?year=2024&q=a b~")
    for content_type in (FORM, "application/x-www-form-urlencoded; charset=UTF-8", 'application/x-www-form-urlencoded;'
                         'charset="utf-8"', "application/x-www-form-urlencoded ; Charset=US-ASCII"):
        assert refusal(body, content_type) is None, content_type
        assert login_from_acs_form(body, content_type) == SamlLogin(LOGIN, SID)
    assert refusal(body + b"\r\n") is None  # aiohttp strips trailing whitespace before it reads the form


def test_any_charset_but_utf8_or_ascii_is_refused() -> None:
    """The app decodes the body in the Content-Type's charset: utf-16 turns one body into two forms."""
    body = form(response())
    for content_type in ("application/x-www-form-urlencoded; charset=utf-16",
                         "application/x-www-form-urlencoded; charset=UTF-16LE",
                         'application/x-www-form-urlencoded; charset="utf-16"',
                         "application/x-www-form-urlencoded; charset=latin-1",
                         "application/x-www-form-urlencoded; charset=utf8",
                         "application/x-www-form-urlencoded; charset=utf-7",
                         "application/x-www-form-urlencoded; charset=utf-8; charset=utf-16",
                         "application/x-www-form-urlencoded; charset*=utf-8''utf-16",
                         "application/x-www-form-urlencoded; charset=utf-8 (utf-16)",
                         "application/x-www-form-urlencoded; boundary=x",
                         "application/x-www-form-urlencoded, text/plain",
                         "application/x-www-form-urlencoded;;charset=utf-8",
                         "multipart/form-data; boundary=x", ""):
        assert form_charset(content_type) is None, content_type
        assert refusal(body, content_type) == "content_type", content_type
        assert login_from_acs_form(body, content_type) is None, content_type


def test_two_content_type_headers_or_a_content_encoding_are_refused() -> None:
    body = form(response())
    assert refusal(body, [FORM, FORM]) == "content_type"
    assert refusal(body, []) == "content_type"
    for encoding in (["gzip"], ["deflate"], ["br"], ["identity", "gzip"]):
        assert refusal(body, encoding=encoding) == "content_encoding"
    assert refusal(body, encoding=["identity"]) is None


def test_nul_control_and_non_ascii_bytes_are_refused() -> None:
    body = form(response())
    utf16 = "SAMLResponse=x".encode("utf-16-le")
    for bad in (body + b"&x=\x00", b"\x00" + body, body + b"&RelayState=\xc3\xa9", body + b"&x=a\x0bb",
                body.replace(b"SAMLResponse", utf16), b"\xff\xfe" + body, body + b"&x=a;b", body + b"&x=a b",
                body + b"&x=%", body + b"&x=%4", body + b"&x=%zz", body + b"&x=a/b"):
        assert refusal(bad) == "bytes", bad[-12:]
        assert login_from_acs_form(bad, FORM) is None


def test_escapes_that_decode_to_nul_or_not_to_the_charset_are_refused() -> None:
    body = form(response())
    for bad in (body + b"&x=%00", body + b"&S%00A%00M%00L%00=1", body + b"&x=%FF", body + b"&x=%C3",
                body + b"&%C3%A9=1", body + b"&x%0A=1"):
        assert refusal(bad) == "escapes", bad[-12:]
    assert refusal(body + b"&RelayState=%C3%A9") is None  # UTF-8 in a value is read alike by every reader
    assert refusal(body + b"&RelayState=%C3%A9", "application/x-www-form-urlencoded; charset=us-ascii") == "escapes"


def test_a_second_saml_response_in_any_spelling_is_refused() -> None:
    """Whatever name some app's form reader could take for SAMLResponse counts as one: with two, the gateway
    cannot tell which one the app verifies."""
    encoded = base64.b64encode(response()).decode()
    for name in ("SAMLResponse", "SAML%52esponse", "samlresponse", "SAMLRESPONSE", "+SAMLResponse", "SAMLResponse+",
                 "%20SAMLResponse", "SAML_Response", "SAML.Response", "SAMLResponse%5B%5D", "SAMLResponse[]",
                 "SAML-Response", "SAML+Response"):
        body = form(response()) + f"&{name}={encoded}".encode()
        assert refusal(body) in ("second_saml_response", "bytes"), name
        assert login_from_acs_form(body, FORM) is None, name


def test_a_saml_response_not_spelled_as_such_is_refused_even_alone() -> None:
    encoded = urlencode({"v": base64.b64encode(response()).decode()})[2:]
    for name in ("SAML%52esponse", "samlresponse", "+SAMLResponse", "SAMLResponse%5B%5D"):
        body = f"{name}={encoded}".encode()
        assert refusal(body) == "second_saml_response", name
        assert login_from_acs_form(body, FORM) is None
    assert refusal(b"RelayState=x") == "no_saml_response"


def test_a_saml_response_in_the_query_is_refused() -> None:
    """A servlet container's getParameter() reads the query string before the body."""
    body = form(response())
    for query in ("SAMLResponse=x", "a=1;SAMLResponse=x", "samlresponse", "SAML%52esponse=x", "x=1&SAMLResponse"):
        assert refusal(body, query=query) == "second_saml_response", query
    assert refusal(body, query="binding=post&SAMLRequestId=1") is None


def test_a_saml_response_value_that_is_not_printable_ascii_is_refused() -> None:
    body = b"SAMLResponse=" + base64.b64encode(response()).replace(b"+", b"%2B").replace(b"/", b"%2F") + b"%C2%A0"
    assert refusal(body) == "saml_response_value"
    assert login_from_acs_form(body, FORM) is None


def test_the_form_read_is_the_form_sent() -> None:
    fields = read_form(b"SAMLResponse=a%2Bb%2F%3D&RelayState=%2Fx%3Fa%3D1%26b%3D2+c&empty=&flag")
    assert fields == [("SAMLResponse", "SAMLResponse", "a+b/="), ("RelayState", "RelayState", "/x?a=1&b=2 c"),
                      ("empty", "empty", ""), ("flag", "flag", "")]
    assert read_form(b"a=1&" * 50) == "fields"


def test_a_document_in_an_encoding_parsers_decode_differently_gives_none() -> None:
    """Okta writes UTF-8. In a legacy encoding each parser decodes with its own tables (Shift_JIS 0x5C is a
    backslash to Python, a yen sign to iconv), and a declaration that contradicts the BOM is read by some parsers
    and ignored by others: the gateway reads only what every parser reads alike."""
    text = response().decode()
    declared = '<?xml version="1.0" encoding="{}"?>'.format
    assert login_from_saml_response(response()) == SamlLogin(LOGIN, SID)
    assert login_from_saml_response((declared("UTF-8") + text).encode()) == SamlLogin(LOGIN, SID)
    assert login_from_saml_response(b"\xef\xbb\xbf" + response()) == SamlLogin(LOGIN, SID)
    assert login_from_saml_response((declared("utf-16") + text).encode("utf-16")) == SamlLogin(LOGIN, SID)
    assert login_from_saml_response(text.encode("utf-16")) == SamlLogin(LOGIN, SID)
    for bad in ((declared("shift_jis") + text).encode("shift_jis"), (declared("iso-8859-1") + text).encode(),
                (declared("utf-8") + text).encode("utf-16"), (declared("utf-16") + text).encode(),
                text.encode("utf-16-le"), text.encode("utf-16-be"), (declared("cp500") + text).encode("cp500"),
                response().replace(LOGIN.encode(), "alicé@example.com".encode("latin-1"))):
        assert login_from_saml_response(bad) is None, bad[:40]
