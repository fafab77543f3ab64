"""Request smuggling at the socket: raw requests against the gateway in front of an upstream that records every
request it parses (with httptools, as a keep-alive HTTP/1.1 server reads them) and answers each with a marker
naming it. For every case the upstream must see exactly the requests the client sent, or none; never a second,
smuggled one; and the client gets one answer per request, its own, or a 4xx for what the gateway refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools
import pytest
from raw_http import send_raw, statuses

from conftest import route

pytestmark = pytest.mark.hostile

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=victim\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class RecordingUpstream:
    """A keep-alive HTTP/1.1 server that records each request it reads and answers it with its own marker."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def targets(self, prefix: str = "") -> list[str]:
        return [s.target for s in self.seen if s.target.startswith(prefix)]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done: list[Seen] = []
        current: list[Seen] = []

        class Callbacks:
            def on_message_begin(self) -> None:
                current.append(Seen("", "", []))

            def on_url(self, url: bytes) -> None:
                current[-1].target += url.decode("latin-1")

            def on_header(self, name: bytes, value: bytes) -> None:
                current[-1].headers.append((name.decode("latin-1"), value.decode("latin-1")))

            def on_body(self, body: bytes) -> None:
                current[-1].body += body

            def on_message_complete(self) -> None:
                message = current.pop()
                message.method = parser.get_method().decode("latin-1")
                done.append(message)

        parser = httptools.HttpRequestParser(Callbacks())
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
                for message in done:
                    self.seen.append(message)
                    marker = f"{message.method} {message.target}".encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Marker: %b\r\n\r\n%b"
                                 % (len(marker), marker, marker))
                done.clear()
                await writer.drain()
        except (httptools.HttpParserError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    recording = RecordingUpstream()
    server = await asyncio.start_server(recording.serve, "127.0.0.1", 0)
    recording.port = server.sockets[0].getsockname()[1]
    yield recording
    server.close()


@pytest.fixture
async def gateway(upstream, start_gateway):
    server = await start_gateway(route(upstream.origin))
    return server


def post(target: str, headers: bytes, body: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST %b %b\r\nHost: app.example\r\n%b\r\n%b" % (target.encode(), version, headers, body)


def answers_to(raw: bytes) -> list[bytes]:
    """The X-Marker of each answer on the connection: which request each answer was for."""
    return [line.partition(b":")[2].strip() for line in raw.split(b"\r\n") if line.lower().startswith(b"x-marker:")]


# --- finding 1: Connection names Content-Length --------------------------------------------------------------


async def test_connection_naming_content_length_smuggles_nothing(upstream, gateway):
    """The attack of issue 10: the gateway dropped Content-Length and the upstream read the body as a request."""
    attack = post("/c/connection-cl", b"Connection: Content-Length\r\nContent-Length: %d\r\n" % len(SMUGGLED),
                  SMUGGLED)
    then = b"GET /c/after HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"  # the client's own second
    raw = await send_raw(gateway.host, gateway.port, attack + then, idle=3)
    assert upstream.targets() == ["/c/connection-cl", "/c/after"]
    assert upstream.seen[0].body == SMUGGLED
    assert upstream.seen[0].header("Content-Length") == [str(len(SMUGGLED))]
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answers_to(raw) == [b"POST /c/connection-cl", b"GET /c/after"]


async def test_smuggling_under_concurrency_never_hands_one_client_anothers_answer(upstream, gateway):
    """Attackers and plain clients at once over the gateway's pooled connections: each gets its own answer."""

    async def attacker(n: int) -> None:
        raw = await send_raw(gateway.host, gateway.port, post(
            f"/c/attack-{n}", b"Connection: Content-Length, close\r\nContent-Length: %d\r\n" % len(SMUGGLED),
            SMUGGLED), idle=5)
        assert answers_to(raw) == [f"POST /c/attack-{n}".encode()]

    async def client(n: int) -> None:
        raw = await send_raw(gateway.host, gateway.port,
                             b"GET /c/plain-%d HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n" % n,
                             idle=5)
        assert answers_to(raw) == [b"GET /c/plain-%d" % n]

    await asyncio.gather(*(f(n) for n in range(40) for f in (attacker, client)))
    assert "/smuggled" not in upstream.targets()
    assert len(upstream.seen) == 80


# --- the standing corpus --------------------------------------------------------------------------------------

CHUNKED_SMUGGLE = b"0\r\n\r\n" + SMUGGLED
# Framings the gateway's parser accepts, each followed by a second request on the same connection: whatever the
# gateway reads there (a pipelined request, or nothing), the upstream must read the same, and nothing else.
ACCEPTED: dict[str, tuple[bytes, bytes]] = {
    "te-space-before-value": (b"Transfer-Encoding:  chunked\r\n", b"5\r\nabcde\r\n0\r\n\r\n"),
    "te-tab-before-value": (b"Transfer-Encoding:\tchunked\r\n", b"5\r\nabcde\r\n0\r\n\r\n"),
    "te-chunk-extension": (b"Transfer-Encoding: chunked\r\n", b"5;x=y\r\nabcde\r\n0\r\n\r\n"),
    "cl-leading-zero": (b"Content-Length: 05\r\n", b"abcde"),
}
REFUSED: dict[str, bytes] = {
    "cl-te": post("/c/cl-te", b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", CHUNKED_SMUGGLE),
    "te-cl": post("/c/te-cl", b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"5c\r\n" + SMUGGLED),
    "te-xchunked": post("/c/te-xchunked", b"Transfer-Encoding: xchunked\r\n", CHUNKED_SMUGGLE),
    "te-xchunked-cl": post("/c/te-xchunked-cl", b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
                           CHUNKED_SMUGGLE),
    "te-identity-chunked": post("/c/te-identity-chunked", b"Transfer-Encoding: identity, chunked\r\n",
                                b"5\r\nabcde\r\n" + CHUNKED_SMUGGLE),
    # the gateway would take the chunks off and send the still gzipped bytes upstream as the body
    "te-gzip-chunked": post("/c/te-gzip-chunked", b"Transfer-Encoding: gzip, chunked\r\n",
                            b"5\r\nabcde\r\n" + CHUNKED_SMUGGLE),
    "te-chunked-identity": post("/c/te-chunked-identity", b"Transfer-Encoding: chunked, identity\r\n",
                                CHUNKED_SMUGGLE),
    "te-two-headers": post("/c/te-two", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                           CHUNKED_SMUGGLE),
    "te-space-before-colon": post("/c/te-colon", b"Transfer-Encoding : chunked\r\n", CHUNKED_SMUGGLE),
    "cl-space-before-colon": post("/c/cl-colon", b"Content-Length : 5\r\n", b"abcde" + SMUGGLED),
    "cl-plus": post("/c/cl-plus", b"Content-Length: +5\r\n", b"abcde" + SMUGGLED),
    "cl-list-same": post("/c/cl-list", b"Content-Length: 5, 5\r\n", b"abcde" + SMUGGLED),
    "cl-list-differ": post("/c/cl-list2", b"Content-Length: 5,6\r\n", b"abcdef" + SMUGGLED),
    "cl-twice-same": post("/c/cl-twice", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"abcde" + SMUGGLED),
    "cl-twice-differ": post("/c/cl-twice2", b"Content-Length: 5\r\nContent-Length: 50\r\n", b"abcde" + SMUGGLED),
    "cl-negative": post("/c/cl-neg", b"Content-Length: -1\r\n", b"abcde" + SMUGGLED),
    "cl-huge": post("/c/cl-huge", b"Content-Length: 99999999999999999999999\r\n", b"abcde"),
    "cl-hex": post("/c/cl-hex", b"Content-Length: 0x5\r\n", b"abcde" + SMUGGLED),
    "bare-lf": b"POST /c/bare-lf HTTP/1.1\nHost: a\nContent-Length: 5\n\nabcde" + SMUGGLED,
    "bare-lf-in-a-header": b"POST /c/lf HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\nabcde" + SMUGGLED,
    "obs-fold": post("/c/obs-fold", b"X-A: b\r\n c\r\nContent-Length: 5\r\n", b"abcde" + SMUGGLED),
    "obs-fold-te": post("/c/obs-fold-te", b"Transfer-Encoding: identity\r\n chunked\r\nContent-Length: 5\r\n",
                        b"abcde" + SMUGGLED),
    "nul-in-header": b"GET /c/nul HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "cr-in-header": b"GET /c/cr HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
    "oversize-header": b"GET /c/big HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
    "oversize-line": b"GET /c/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "too-many-headers": b"GET /c/many HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200))
    + b"\r\n",
    "two-hosts": b"GET /c/two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no-host": b"GET /c/no-host HTTP/1.1\r\n\r\n",
    "http-0.9": b"GET /c/http09\r\n\r\n",
    "http-2.0-text": b"GET /c/http2 HTTP/2.0\r\nHost: a\r\n\r\n",
    "http-1.9": b"GET /c/http19 HTTP/1.9\r\nHost: a\r\n\r\n",
    "odd-method": b"G\x01ET /c/odd-method HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form": b"GET http://evil.example/c/absolute HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form-https": b"GET https://a/c/absolute-https HTTP/1.1\r\nHost: a\r\n\r\n",
    "asterisk-form": b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "authority-form": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "bad-chunk-size": post("/c/bad-chunk", b"Transfer-Encoding: chunked\r\n", b"5 \r\nabcde\r\n" + CHUNKED_SMUGGLE),
    "chunk-bare-lf": post("/c/chunk-lf", b"Transfer-Encoding: chunked\r\n", b"5\nabcde\n0\n\n" + SMUGGLED),
    "body-after-close-http-1.0": post("/c/http10-nolength", b"", b"abcde" + SMUGGLED, b"HTTP/1.0"),
}
# Connection naming every framing, routing and gateway header: each must still reach the upstream as the gateway
# means it (and the body framed by what was sent)
CONNECTION_NAMES = ["Content-Length", "Transfer-Encoding", "Host", "X-Forwarded-For", "X-Forwarded-Proto",
                    "X-Forwarded-Host", "Forwarded", "Cookie", "Authorization", "Content-Type", "Content-Encoding",
                    "Keep-Alive", "TE", "Upgrade", "Expect", "Trailer", "close"]


async def exchange(gateway, data: bytes) -> bytes:
    """Send a case on its own connection; each case ends so that the gateway closes it (`Connection: close`, or a
    refusal), so the idle limit is only a bound."""
    return await send_raw(gateway.host, gateway.port, data, idle=3)


async def test_accepted_framing_variants_reach_the_upstream_as_the_gateway_read_them(upstream, gateway):
    cases = {name: post(f"/c/{name}", headers, body)
             + b"GET /c/%b/next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % name.encode()
             for name, (headers, body) in ACCEPTED.items()}
    raws = dict(zip(cases, await asyncio.gather(*(exchange(gateway, data) for data in cases.values())), strict=True))
    for name, raw in raws.items():
        assert upstream.targets(f"/c/{name}") == [f"/c/{name}", f"/c/{name}/next"], name
        assert answers_to(raw) == [f"POST /c/{name}".encode(), f"GET /c/{name}/next".encode()], name
        seen = next(s for s in upstream.seen if s.target == f"/c/{name}")
        assert seen.body == b"abcde", name


async def test_http_1_0_with_a_body_is_forwarded_with_its_length(upstream, gateway):
    raw = await exchange(gateway, post("/c/http10", b"Content-Length: 5\r\n", b"abcde", b"HTTP/1.0"))  # closes
    assert upstream.targets() == ["/c/http10"] and upstream.seen[0].body == b"abcde"
    assert statuses(raw) == [200] or raw.startswith(b"HTTP/1.0 200")


async def test_refused_requests_never_reach_the_upstream(upstream, gateway):
    raws = dict(zip(REFUSED, await asyncio.gather(*(exchange(gateway, data) for data in REFUSED.values())),
                    strict=True))
    for name, raw in raws.items():
        head = raw.split(b"\r\n", 1)[0]
        assert head[:5] == b"HTTP/" and head[9:10] == b"4", (name, raw[:200])
        assert b"Traceback" not in raw, name
    assert upstream.seen == [], [s.target for s in upstream.seen]


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_connection_naming_any_header_removes_none_the_gateway_relies_on(upstream, gateway, framing):
    names = ", ".join(CONNECTION_NAMES)
    cases: dict[str, bytes] = {}
    for name in CONNECTION_NAMES:
        headers = (b"Connection: %b, close\r\nCookie: app=1\r\nAuthorization: Basic eA==\r\n"
                   b"Content-Type: text/plain\r\n" % name.encode())
        if framing == "length":
            cases[name] = post(f"/c/{name}", headers + b"Content-Length: %d\r\n" % len(SMUGGLED), SMUGGLED)
        else:
            body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
            cases[name] = post(f"/c/{name}", headers + b"Transfer-Encoding: chunked\r\n", body)
    cases["all"] = post("/c/all", b"Connection: %b, close\r\nContent-Length: %d\r\n" % (names.encode(),
                                                                                         len(SMUGGLED)), SMUGGLED)
    raws = await asyncio.gather(*(exchange(gateway, data) for data in cases.values()))
    for name, raw in zip(cases, raws, strict=True):
        assert answers_to(raw) == [f"POST /c/{name}".encode()], name
        assert upstream.targets(f"/c/{name}") == [f"/c/{name}"], name
        seen = next(s for s in upstream.seen if s.target == f"/c/{name}")
        assert seen.body == SMUGGLED, name
        assert seen.header("Host") == [f"127.0.0.1:{upstream.port}"], name
        assert seen.header("X-Forwarded-For") == ["127.0.0.1"], name
        assert len(seen.header("Content-Length")) + len(seen.header("Transfer-Encoding")) == 1, name
        if name != "all":
            assert seen.header("Cookie") == ["app=1"] and seen.header("Content-Type") == ["text/plain"], name
    assert "/smuggled" not in upstream.targets()


# --- the upstream's side of the same rule ---------------------------------------------------------------------


async def test_an_answer_the_gateway_did_not_ask_for_is_never_handed_to_the_next_client(start_gateway, raw_upstream,
                                                                                      http):
    """An upstream that answers one request twice: the second answer must not become the next client's."""

    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nSet-Cookie: JSESSIONID=alice\r\n\r\nsecond")
            await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(twice)))
    for _ in range(5):
        async with http.get(gateway.make_url("/")) as r:
            assert await r.read() == b"first" and "Set-Cookie" not in r.headers


async def test_connection_from_the_upstream_cannot_strip_the_answers_framing(start_gateway, raw_upstream):
    async def named(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: Content-Length, Content-Type, Set-Cookie\r\n"
                         b"Content-Length: 5\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\r\nhello")
            await writer.drain()

    gateway = await start_gateway(route(await raw_upstream(named)))
    raw = await send_raw(gateway.host, gateway.port, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", idle=3)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 5" in head and b"Content-Type: text/plain" in head and b"Set-Cookie: a=1" in head
    assert statuses(raw) == [200, 200] and rest.endswith(b"\r\n\r\nhello")


async def test_a_request_that_asks_for_another_protocol_is_answered_and_its_connection_closed(upstream, gateway):
    """aiohttp reads no further request after `Upgrade: h2c` (or anything but a WebSocket): the connection must be
    closed after the answer, or a pipelined request behind it hangs there, neither answered nor refused."""
    for protocol in (b"h2c", b"foo"):
        first = b"/c/upgrade-%b" % protocol
        head = b"GET %b HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: %b\r\n\r\n" % (first, protocol)
        raw = await send_raw(gateway.host, gateway.port, head + SMUGGLED, idle=3)
        assert answers_to(raw) == [b"GET " + first], raw[:300]
        assert b"Connection: close" in raw.split(b"\r\n\r\n", 1)[0]
    assert upstream.targets() == ["/c/upgrade-h2c", "/c/upgrade-foo"]
