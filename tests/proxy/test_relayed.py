"""gateway/proxy/relayed.py against aiohttp itself: for every kind of answer, client and gateway mark, the relayed
answer writes the bytes that aiohttp's Response (a whole answer) or StreamResponse (a streamed one) would write,
in the same writes, and tells aiohttp the same keep-alive and length.

The relayed answer leans on private parts of aiohttp's StreamResponse (relayed.py names them); when aiohttp moves
them, these comparisons are what fails.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.proxy.client import RawHeader
from gateway.proxy.headers import response_headers_for_client
from gateway.proxy.relayed import RelayedAnswer

NGINX: list[RawHeader] = [
    (b"Server", b"nginx/1.22.1"), (b"Date", b"Wed, 02 Dec 2026 09:40:00 GMT"),
    (b"Content-Type", b"application/octet-stream"), (b"Content-Length", b"5"), (b"Connection", b"keep-alive"),
    (b"ETag", b'"692ea7b0-5"'),
]
HEADER_SETS: dict[str, list[RawHeader]] = {
    "nginx": NGINX,
    "bare": [(b"X-A", b"1")],
    "bare-with-length": [(b"content-length", b"5")],
    "cookies-and-the-apps-request-id": [
        (b"Set-Cookie", b"a=1; Path=/"), (b"x-request-id", b"the-apps"), (b"Content-Length", b"5"),
        (b"Set-Cookie", b"b=2; HttpOnly"), (b"X-Request-Id", b"again"), (b"Vary", b"Cookie"),
    ],
    "not-utf8-and-utf8": [(b"X-Bad", b"\xff\xfe"), (b"X-Cut", b"ab\xc3"), (b"X-Good", b"caf\xc3\xa9"),
                          (b"X-Tab", b"a\tb  ")],
    "connection-names-one": [(b"Connection", b"X-Debug, close"), (b"X-Debug", b"1"), (b"Keep-Alive", b"timeout=5"),
                             (b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"text/plain")],
}
STATUSES = [(200, "OK"), (204, "No Content"), (304, "Not Modified"), (500, ""), (200, "Gut \u00fc")]
CLIENTS = [(HttpVersion11, True), (HttpVersion11, False), (HttpVersion10, True), (HttpVersion10, False)]
BODY = b"hello"


@dataclass
class Marks:
    """What the gateway does to an answer before aiohttp sends it."""

    request_id: str | None = None
    stop: bool = False
    force_close: bool = False
    cookies: bool = False
    looked: bool = False  # something read `headers` (the enforcer's sign-in does): the text becomes the source
    names: list[str] = field(default_factory=list)


MARKS = {
    "none": Marks(),
    "request-id": Marks(request_id="0123456789abcdef"),
    "stop": Marks(request_id="id-1", stop=True),
    "cookies-force-close": Marks(request_id="id-2", force_close=True, cookies=True),
    "looked-at": Marks(request_id="id-3", cookies=True, looked=True),
}


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class Protocol:
    ssl_context = None
    peername = None
    sockname = None
    _paused = False

    def __init__(self) -> None:
        self.transport = Transport()


def client_request(version: HttpVersion, keep_alive: bool, method: str) -> tuple[web.Request, Transport]:
    protocol = Protocol()
    request = make_mocked_request(method, "/x", version=version, closing=not keep_alive, protocol=protocol,
                                  transport=protocol.transport, writer=StreamWriter(protocol, asyncio_loop()))
    if keep_alive and version == HttpVersion10:  # make_mocked_request closes every HTTP/1.0 request
        request._message = request._message._replace(should_close=False)
    return request, protocol.transport


def asyncio_loop() -> object:
    import asyncio

    return asyncio.get_running_loop()


def text(headers: list[RawHeader]) -> CIMultiDict[str]:
    return CIMultiDict((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers)


def mark(response: web.StreamResponse, marks: Marks, relayed: bool) -> None:
    if marks.looked:
        assert isinstance(response.headers, CIMultiDict)
    if marks.cookies:
        response.set_cookie("binding", "sealed", path="/", httponly=True, samesite="Lax")
        response.del_cookie("gone", path="/app")
    if marks.force_close:
        response.force_close()
    if relayed:
        assert isinstance(response, RelayedAnswer)
        response.stamp(marks.request_id, marks.stop)
        return
    if marks.request_id is not None:  # what request_id.stamp did to every answer before relayed.py
        response.headers["X-Request-Id"] = marks.request_id
    if marks.stop:
        response.force_close()
        response.headers["Connection"] = "close"


def aiohttps(status: int, reason: str, kept: list[RawHeader], whole: bytes | None) -> web.StreamResponse:
    """The answer as proxy/http.py made it before relayed.py."""
    if whole is not None:
        return web.Response(status=status, reason=reason, body=whole, headers=text(kept))
    response = web.StreamResponse(status=status, reason=reason)
    response.headers.extend(text(kept))
    return response


async def send(response: web.StreamResponse, marks: Marks, relayed: bool, request: web.Request,
               chunks: list[bytes] | None) -> web.StreamResponse:
    mark(response, marks, relayed)
    await response.prepare(request)
    for chunk in chunks or ():
        await response.write(chunk)
    await response.write_eof()
    return response


def dateless(writes: list[bytes]) -> list[bytes]:
    return [re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", w) for w in writes]


CASES = list(itertools.product(HEADER_SETS, ["whole", "empty", "streamed", "streamed-empty"], MARKS))


@pytest.mark.parametrize(("headers_name", "body", "marks_name"), CASES)
async def test_the_relayed_answer_writes_what_aiohttp_would(headers_name, body, marks_name):
    upstream, marks = HEADER_SETS[headers_name], MARKS[marks_name]
    relayed = response_headers_for_client(upstream)
    for (status, reason), (version, keep_alive), method in itertools.product(STATUSES, CLIENTS, ["GET", "HEAD"]):
        bodiless, kept = method == "HEAD" or status in (204, 304), relayed
        whole = None if body.startswith("streamed") else b"" if body == "empty" or bodiless else BODY
        chunks = None if whole is not None else [] if body == "streamed-empty" or bodiless else [b"he", b"llo"]
        if not bodiless:  # the upstream's Content-Length is its body's (HEAD and 304 give the GET's)
            length = str(len(whole if whole is not None else b"".join(chunks or []))).encode()
            kept = [(k, length if k.lower() == b"content-length" else v) for k, v in kept]

        case = (status, reason, version, keep_alive, method)
        request, expected = client_request(version, keep_alive, method)
        theirs = await send(aiohttps(status, reason, kept, whole), marks, False, request, chunks)
        request, got = client_request(version, keep_alive, method)
        ours = await send(RelayedAnswer(status, reason, list(kept), whole), marks, True, request, chunks)
        assert dateless(got.writes) == dateless(expected.writes), case
        assert (ours.body_length, ours.status, ours.reason) == (theirs.body_length, theirs.status, theirs.reason)
        if version == HttpVersion10:  # one difference: aiohttp would keep a connection its head did not keep
            assert ours.keep_alive is (b"\r\nConnection: keep-alive\r\n" in got.writes[0]), case
        else:
            assert ours.keep_alive is theirs.keep_alive, case


async def test_a_whole_answer_goes_in_one_write():
    request, transport = client_request(HttpVersion11, True, "GET")
    answer = RelayedAnswer(200, "OK", list(NGINX), BODY)
    await answer.prepare(request)
    assert transport.writes == []  # the head waits for the body
    await answer.write_eof()
    [write] = transport.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n") and write.endswith(b"\r\n\r\nhello")


async def test_the_apps_set_cookie_headers_are_read_from_its_bytes_without_decoding_the_rest():
    answer = RelayedAnswer(200, "OK", response_headers_for_client(HEADER_SETS["cookies-and-the-apps-request-id"]),
                           BODY)
    assert answer.set_cookie_headers() == ["a=1; Path=/", "b=2; HttpOnly"]
    assert answer._upstream is not None  # the headers are still the upstream's bytes
    assert RelayedAnswer(200, "OK", list(NGINX), BODY).set_cookie_headers() == []
    answer.headers.add("Set-Cookie", "c=3")
    assert answer.set_cookie_headers() == ["a=1; Path=/", "b=2; HttpOnly", "c=3"]


async def test_whether_the_app_sets_a_cookie_is_exactly_whether_it_sent_a_set_cookie_header():
    assert RelayedAnswer(200, "OK", response_headers_for_client(HEADER_SETS["cookies-and-the-apps-request-id"]),
                         BODY).app_sets_cookies
    assert RelayedAnswer(200, "OK", [(b"SET-COOKIE", b"a=1")], BODY).app_sets_cookies  # any case
    plain = RelayedAnswer(200, "OK", [*NGINX, (b"X-Set-Cookie", b"a=1"), (b"X-Note", b"set-cookie: a=1")], BODY)
    assert not plain.app_sets_cookies and plain.set_cookie_headers() == []
    assert not RelayedAnswer(200, "OK", [], BODY).app_sets_cookies
    assert plain._upstream is not None  # still the upstream's bytes: reading it decoded nothing


async def test_the_headers_read_as_text_are_the_upstreams():
    answer = RelayedAnswer(200, "OK", list(HEADER_SETS["not-utf8-and-utf8"]), BODY)
    assert list(answer.headers.items()) == [("X-Bad", "\ufffd\ufffd"), ("X-Cut", "ab\ufffd"), ("X-Good", "café"),
                                            ("X-Tab", "a\tb  ")]
    assert answer.content_type == "application/octet-stream"  # aiohttp's own accessors read them too
    assert RelayedAnswer(200, "OK", list(NGINX), BODY).content_length == 5


@pytest.mark.parametrize("reason", ["O\x01K", "O\x7fK", "\x00"])
async def test_a_reason_with_a_control_character_is_refused_as_aiohttp_refuses_it(reason):
    request, _ = client_request(HttpVersion11, True, "GET")
    with pytest.raises(ValueError):
        await web.Response(status=200, reason=reason, body=BODY).prepare(request)
    request, transport = client_request(HttpVersion11, True, "GET")
    with pytest.raises(ValueError):
        await RelayedAnswer(200, reason, [], BODY).prepare(request)
    assert transport.writes == []


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00b"])
async def test_text_with_a_control_character_never_reaches_the_head(value):
    """The upstream's bytes cannot carry one (httptools refuses them: test_client.py); what the gateway sets on
    an answer is refused."""
    request, transport = client_request(HttpVersion11, True, "GET")
    answer = RelayedAnswer(200, "OK", [], BODY)
    answer.headers["X-Set"] = value
    with pytest.raises(ValueError):
        await answer.prepare(request)
    with pytest.raises(ValueError):
        RelayedAnswer(200, "OK", [], BODY).stamp(value, False)
    assert transport.writes == []
