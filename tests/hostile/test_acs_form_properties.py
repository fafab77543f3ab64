"""Properties of what the gateway reads at the ACS, against the readers the app uses (issue 10, finding 2).

The ACS form: for any bytes and any Content-Type, no exception escapes, and what the gateway reads is exactly what
aiohttp's own `request.post()` reads from the same request (a real aiohttp server on loopback), or the gateway
refuses. The SAML XML: for any encoding and declaration, no exception escapes, and what the gateway reads (NameID,
session id) is what the app's lxml reader reads from the same bytes, or one of them refuses.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import pytest
from aiohttp import web
from hypothesis import event, example, given
from hypothesis import strategies as st
from lxml import etree

from gateway.sandbox.legacy.assertion import NS, safe_parser
from gateway.sessions.saml import (
    REFUSALS,
    SAML_RESPONSE,
    acs_post_refusal,
    form_charset,
    login_from_acs_form,
    login_from_saml_response,
    read_form,
)

pytestmark = pytest.mark.hostile

FORM = "application/x-www-form-urlencoded"
CHARSETS = ["utf-8", "UTF-8", "us-ascii", "ascii", "utf8", "utf-16", "UTF-16LE", "utf-16be", "utf-32", "latin-1",
            "iso-8859-1", "cp1252", "shift_jis", "euc-jp", "koi8-r", "cp500", "utf-7", "x-no-such-charset", ""]


# --- the reference reader: aiohttp's own post(), in a real server ------------------------------------------------


class Reference:
    """An aiohttp server on loopback, in a thread of its own, that answers what `request.post()` read."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/acs", _read_like_the_app)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def read(self, body: bytes, content_type: str | None) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest("POST", "/acs", skip_accept_encoding=True)
            if content_type is not None:
                connection.putheader("Content-Type", content_type)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if answer.status != 200:
            return {"refused": answer.status}
        result: dict[str, Any] = json.loads(data)
        return result


async def _read_like_the_app(request: web.Request) -> web.Response:
    """What the legacy app (and any aiohttp app) reads of an ACS POST: the content type, then post()."""
    try:
        form = await request.post()
    except Exception as exc:  # an undecodable body, an unknown charset: the app refuses the POST
        return web.json_response({"refused": type(exc).__name__})
    fields = [[name, value] for name, value in form.items() if isinstance(value, str)]
    saml_response = form.get(SAML_RESPONSE)
    return web.json_response({"content_type": request.content_type, "fields": fields,
                              "saml_response": saml_response if isinstance(saml_response, str) else None})


@pytest.fixture(scope="module")
def aiohttp_reads() -> Iterator[Reference]:
    reference = Reference()
    reference.start()
    yield reference
    reference.stop()


# --- strategies ---------------------------------------------------------------------------------------------------

NAMES = st.sampled_from([SAML_RESPONSE, "RelayState", "samlresponse", "SAML%52esponse", "SAMLResponse[]",
                         " SAMLResponse", "SAML_Response", "S\0A\0M\0L", "x", ""]) | st.text(max_size=12)
VALUES = st.sampled_from([base64.b64encode(b"<samlp:Response/>").decode(), "/page/1?a=1&b=2", "é", "\0", "a;b",
                          "%", "+"]) | st.text(max_size=40)


@st.composite
def content_types(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from([FORM, FORM, FORM, "Application/X-WWW-Form-URLEncoded", "multipart/form-data",
                                 "text/plain", "application/x-www-form-urlencoded (comment)", ""]))
    params = draw(st.lists(st.tuples(st.sampled_from(["charset", "Charset", "CHARSET", "charset*", "boundary",
                                                      "x"]),
                                     st.sampled_from(CHARSETS + ["utf-8''utf-16", "utf-16'en'x"]),
                                     st.sampled_from(['{}', '"{}"', "'{}'", ' {} ', '{}(x)'])), max_size=3))
    separator = draw(st.sampled_from(["; ", ";", " ; ", ";;", ", "]))
    return base + "".join(f"{separator}{name}={quoting.format(value)}" for name, value, quoting in params)


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    """Forms as encoders write them (a SAMLResponse among other fields), in any charset, now and then with the raw
    tricks polyglots are made of."""
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=4))
    fields.insert(draw(st.integers(0, len(fields))), (SAML_RESPONSE, draw(VALUES)))
    charset = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16-le", "utf-16", "latin-1", "cp500", "shift_jis"]))
    how = draw(st.sampled_from(["urlencode"] * 4 + ["raw", "quote"]))
    if how == "urlencode":
        text = "&".join(f"{quote_plus(n, encoding='utf-8')}={quote_plus(v, encoding='utf-8')}" for n, v in fields)
    elif how == "quote":
        text = "&".join(f"{n}={quote(v, safe='', encoding='utf-8', errors='replace')}" for n, v in fields)
    else:
        text = "&".join(f"{n}={v}" for n, v in fields)
    body = text.encode(charset, errors="replace")
    if draw(st.booleans()):
        return body
    tricks = draw(st.lists(st.sampled_from([b"&", b";", b"=", b"%00", b"\0", b"%", b"%2B", b"+", b"%C3%A9", b"%FF",
                                            b"\xff\xfe", b"\r\n", b" ", b"&SAMLResponse=QUJD", b"S\0A\0", b"&x=%e2%82",
                                            b"&RelayState=%C3%A9"]), min_size=1, max_size=3))
    at = draw(st.integers(0, len(body)))
    return body[:at] + b"".join(tricks) + body[at:]


@st.composite
def plain_forms(draw: st.DrawFn) -> bytes:
    """What a browser posts: a SAMLResponse among fields of plain names, any text values, encoded as UTF-8."""
    names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}", fullmatch=True)
    values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
    fields = draw(st.lists(st.tuples(names, values), max_size=4))
    fields.insert(draw(st.integers(0, len(fields))), (SAML_RESPONSE, draw(VALUES.filter(lambda v: "\0" not in v))))
    return "&".join(f"{quote_plus(n)}={quote_plus(v)}" for n, v in fields).encode()


ACCEPTED_TYPES = st.sampled_from([FORM, FORM + "; charset=utf-8", FORM + ';charset="UTF-8"',
                                  FORM + "; charset=us-ascii", "Application/X-WWW-Form-URLEncoded"])


# --- the ACS form -------------------------------------------------------------------------------------------------


def gateway_reading(body: bytes, content_type: str) -> list[list[str]] | None:
    """The fields the gateway reads of an ACS POST, or None when it refuses to read it."""
    refused = acs_post_refusal(body, [content_type], [], "")
    assert refused is None or refused in REFUSALS
    event(f"refused: {refused}" if refused else "read")
    login_from_acs_form(body, content_type)  # never raises
    if refused is not None:
        return None
    charset = form_charset(content_type)
    assert charset is not None
    fields = read_form(body, charset)
    assert not isinstance(fields, str)
    return [[name, value] for _, name, value in fields]


@given(body=plain_forms() | form_bodies(), content_type=st.one_of(ACCEPTED_TYPES, ACCEPTED_TYPES, content_types()))
@example(body=b"SAMLResponse=QUJD&RelayState=%C3%A9", content_type=FORM + "; charset=us-ascii")
@example(body=b"SAMLResponse=QUJD&SAML%52esponse=REVG", content_type=FORM)
@example(body=b"SAMLResponse=QUJD&x=%e2%82", content_type=FORM)
def test_the_gateway_reads_the_form_as_aiohttp_does_or_refuses(aiohttp_reads: Reference, body: bytes,
                                                              content_type: str) -> None:
    read = gateway_reading(body, content_type)
    if read is None:
        return
    app = aiohttp_reads.read(body, content_type)
    assert app.get("content_type") == FORM, app
    assert app["fields"] == read
    assert app["saml_response"] == next(value for name, value in read if name == SAML_RESPONSE)


POLYGLOT = "SAMLResponse=QUJD&x=".encode("utf-16-le") + b"&SAMLResponse=REVG&z=1"


@given(content_type=content_types(), body=st.sampled_from([b"SAMLResponse=QUJD&RelayState=%2Fpage%2F1", POLYGLOT,
                                                           "SAMLResponse=QUJD".encode("utf-16"),
                                                           b"SAMLResponse=QUJD&RelayState=%C3%A9"]))
@example(content_type=FORM + "; charset=utf-16", body=POLYGLOT)
@example(content_type=FORM + "; charset=cp500", body=b"SAMLResponse=QUJD&RelayState=%2Fpage%2F1")
@example(content_type=FORM + "; charset=utf-8; charset=utf-16", body=POLYGLOT)
@example(content_type=FORM + "; charset*=utf-8''utf-16", body=POLYGLOT)
def test_in_every_charset_the_gateway_reads_the_form_as_aiohttp_does_or_refuses(
    aiohttp_reads: Reference, content_type: str, body: bytes
) -> None:
    read = gateway_reading(body, content_type)
    if read is None:
        return
    app = aiohttp_reads.read(body, content_type)
    assert app.get("content_type") == FORM, app
    assert app["fields"] == read


@given(body=st.binary(max_size=200), content_type=ACCEPTED_TYPES | content_types())
def test_no_bytes_make_the_form_reader_raise_and_what_it_reads_aiohttp_reads(aiohttp_reads: Reference, body: bytes,
                                                                             content_type: str) -> None:
    read = gateway_reading(b"SAMLResponse=QUJD&" + body, content_type)
    if read is not None:
        assert aiohttp_reads.read(b"SAMLResponse=QUJD&" + body, content_type)["fields"] == read


@given(body=form_bodies(), query=st.text(max_size=30), encodings=st.lists(st.text(max_size=10), max_size=2),
       types=st.lists(content_types(), max_size=3))
def test_no_request_makes_the_acs_check_raise(body: bytes, query: str, encodings: list[str], types: list[str]) -> None:
    assert acs_post_refusal(body, types, encodings, query) in (None, *REFUSALS)


# --- the SAML XML -------------------------------------------------------------------------------------------------

XML_ENCODINGS = ["utf-8", "UTF-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "iso-8859-1", "us-ascii",
                 "cp1252", "shift_jis", "euc-jp", "koi8-r", "cp500", "utf-7"]
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(["\t", "\n", "~", "\\", "¥"]),
                   min_size=1, max_size=24)


def saml_response(name_id: str, session_id: str) -> str:
    return ('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1" Version="2.0">'
            '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
            f'<saml:Assertion ID="a1" Version="2.0"><saml:Subject><saml:NameID>{escape(name_id)}</saml:NameID>'
            '</saml:Subject><saml:AttributeStatement><saml:Attribute Name="okta_session_id">'
            f"<saml:AttributeValue>{escape(session_id)}</saml:AttributeValue></saml:Attribute>"
            "</saml:AttributeStatement></saml:Assertion></samlp:Response>")


@st.composite
def encoded_documents(draw: st.DrawFn) -> bytes:
    """A Response in some encoding, declared as that encoding, as another, or not at all, with or without a BOM."""
    text = saml_response(draw(XML_TEXT), draw(XML_TEXT))
    actual = draw(st.sampled_from(XML_ENCODINGS))
    declared = draw(st.sampled_from([None, actual, *XML_ENCODINGS]))
    if declared is not None:
        text = f'<?xml version="1.0" encoding="{declared}"?>' + text
    body = text.encode(actual, errors="xmlcharrefreplace")
    bom = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]))
    return bom + body


def app_reading(xml: bytes) -> tuple[str, str | None] | None:
    """What the app's reader (lxml, as gateway/sandbox/legacy/assertion.py parses) takes for NameID and session."""
    try:
        root = etree.fromstring(xml, safe_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    assertion = root.find("saml2:Assertion", NS)
    if assertion is None:
        return None
    name_id = assertion.find("saml2:Subject/saml2:NameID", NS)
    value = assertion.find("saml2:AttributeStatement/saml2:Attribute/saml2:AttributeValue", NS)
    if name_id is None or len(name_id) or not (name_id.text or "").strip():
        return None  # the app refuses an assertion that names nobody
    return (name_id.text or "").strip(), None if value is None else (value.text or "").strip()


@given(xml=encoded_documents())
@example(xml=saml_response("a~b\\c@example.com", "102abc").encode("shift_jis"))
@example(xml=('<?xml version="1.0" encoding="shift_jis"?>' + saml_response("a~b\\c@x", "102abc")).encode("shift_jis"))
@example(xml=('<?xml version="1.0" encoding="cp500"?>' + saml_response("alice@example.com", "102abc")).encode("cp500"))
def test_the_gateway_reads_the_assertion_as_the_app_does_or_refuses(xml: bytes) -> None:
    read = login_from_saml_response(xml)  # never raises
    app = app_reading(xml)
    event(f"gateway {'reads' if read else 'refuses'}, app {'reads' if app else 'refuses'}")
    if read is None or app is None:
        return  # the app refuses what the gateway read: nothing is signed in, nothing bound
    assert app[0] == read.name_id
    if read.session_id is not None:
        assert app[1] == read.session_id


@given(data=st.binary(max_size=300))
def test_no_bytes_make_the_saml_reader_raise(data: bytes) -> None:
    login_from_saml_response(data)
    login_from_acs_form(b"SAMLResponse=" + quote_plus(base64.b64encode(data).decode()).encode(), FORM)
