"""The client's answer to a proxied request: the upstream's head relayed as the bytes it came in.

Why not aiohttp's Response: it takes its headers as text in a CIMultiDict (two decodes per header and two copies
of the dict before a byte is sent), then fills in defaults, checks every header for control characters and
serializes them again. The upstream's headers here are bytes that httptools already read and found free of CR,
LF and every other control character but tab; they go out as they came (text that is not UTF-8 becomes U+FFFD,
as aiohttp's text would have made it), with the headers aiohttp would add, added the same way:

- A whole answer (one whose body had arrived with its head, empty or not) keeps the upstream's Content-Length
  or gets one (as a `web.Response` would), and its head and body go out in one write when aiohttp's handler
  ends it. Any other streams, as a `web.StreamResponse`: its head goes at once, its body is chunked when the
  upstream gave no length (HTTP/1.1), or ends with the connection (HTTP/1.0).
- Date and Server when the upstream sent none; Content-Type (application/octet-stream) on a body without one;
  no body, and for 1xx, 204 and 304 no Content-Length, where the status or the method forbid them.
- Connection: `keep-alive` to an HTTP/1.0 client that keeps the connection, `close` to an HTTP/1.1 client that
  does not (`force_close`), or `close` to either once `stamp` says the gateway is stopping.
- X-Request-Id: `stamp`'s, in place of the app's. Set-Cookie: the upstream's, each as it came, then those set
  with `set_cookie` or `del_cookie` (the enforcer's binding).

`headers` is the answer's headers as text, as on any response: built from the upstream's bytes the first time
anything looks at them (`_headers`, which StreamResponse's own accessors read too), and from then on what the
head is written from. The relay itself never looks: `set_cookie_headers()` reads the Set-Cookie values from the
bytes, and `app_sets_cookies` (read when the answer is made) says whether there are any.

aiohttp's private parts this relies on (hence aiohttp's pin in pyproject.toml; tests/proxy/test_relayed.py
compares what this writes with what aiohttp's Response and StreamResponse write, byte for byte, and fails if
they move): StreamResponse's `_headers` (overridden here), `_status`, `_reason`, `_keep_alive`, `_cookies`, `_req`,
`_payload_writer` and `_eof_sent` (which `prepared` and `write_eof` read), and the request's `_prepare_hook` (the
`on_response_prepare` signal, sent as aiohttp sends it).
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import must_be_empty_body, rfc822_formatted_time, should_remove_content_length
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11
from multidict import CIMultiDict

from .client import RawHeader, headers_as_text

_CRLF = b"\r\n"
_COLON = b": "
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp's rule for header text: no control character but tab
_REQUEST_ID_LINES = re.compile(rb"\r\nx-request-id:[^\r]*", re.IGNORECASE)
_LENGTH_LINES = re.compile(rb"\r\ncontent-length:[^\r]*", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\ncontent-length: *([^\r]*)", re.IGNORECASE)
_SET_COOKIES = re.compile(rb"\r\nset-cookie: *([^\r]*)", re.IGNORECASE)
_SERVER = f"\r\nServer: {SERVER_SOFTWARE}".encode()
# the headers whose presence changes what is added: one pass over the lower-cased lines finds them all
_WATCHED = re.compile(rb"\r\n(content-length|content-type|date|server|connection|x-request-id|set-cookie):")


class RelayedAnswer(web.StreamResponse):
    """The upstream's answer as the client gets it; `whole`, its body when it is all here (None: it streams)."""

    _upstream: list[RawHeader] | None = None

    def __init__(self, status: int, reason: str, headers: list[RawHeader], whole: bytes | None) -> None:
        super().__init__(status=status, reason=reason)
        self._upstream = headers
        self._lines: tuple[bytes, frozenset[bytes]] | None = None
        # read here rather than when the head is written (the same one pass): a before_answer learns from an
        # attribute, not a call, whether the app set a cookie
        self.app_sets_cookies = b"set-cookie" in self._header_lines()[1]
        self._whole = whole
        self._head = b""
        self._request_id: str | None = None
        self._says_close = False

    @property  # type: ignore[override]
    def _headers(self) -> CIMultiDict[str]:
        upstream = self._upstream
        if upstream is not None:  # the first look: the upstream's headers become the answer's, as text
            self._upstream = self._lines = None
            self._text.extend(headers_as_text(upstream))
        return self._text

    @_headers.setter
    def _headers(self, value: CIMultiDict[str]) -> None:
        self._text = value

    def set_cookie_headers(self) -> list[str]:
        """The Set-Cookie headers the app sent, as text (the gateway's own cookies are in `cookies`)."""
        if self._upstream is None:
            return self._text.getall("Set-Cookie", [])
        lines, present = self._header_lines()
        return [value.decode() for value in _SET_COOKIES.findall(lines)] if b"set-cookie" in present else []

    def stamp(self, request_id: str | None, close: bool) -> None:
        """request_id.stamp's marks: the request's id, and (a stop) `Connection: close`."""
        if request_id is not None:
            if not request_id.isprintable():
                raise ValueError(f"a request id that cannot be a header: {request_id!r}")
            self._request_id = request_id
        if close:
            self.force_close()
            self._says_close = True

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        await request._prepare_hook(self)
        writer = self._payload_writer = request.writer
        self._req = request
        head, length, chunked = self._head_for(request)
        if self._whole is not None:
            self._head = head  # sent with the body, by write_eof
            return writer
        await writer.write(head)
        if chunked:
            writer.enable_chunking()
        writer.length = length
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._whole is not None and not self._eof_sent:
            assert not data, "a whole answer has its body already"
            data = self._head + self._whole
        await super().write_eof(data)

    def _header_lines(self) -> tuple[bytes, frozenset[bytes]]:
        """The headers to send, each after a CRLF (the upstream's bytes, or the text they became), and which of
        the `_WATCHED` ones they have (lower-case names)."""
        if self._upstream is None:
            for name, value in self._text.items():
                _refuse_control(name + value)
            lines = "".join([f"\r\n{k}: {v}" for k, v in self._text.items()]).encode()
            return lines, frozenset(_WATCHED.findall(lines.lower()))
        if self._lines is None:
            upstream = self._upstream
            lines = _CRLF + _CRLF.join(map(_COLON.join, upstream)) if upstream else b""
            if not lines.isascii():
                lines = lines.decode("utf-8", "replace").encode()
            self._lines = lines, frozenset(_WATCHED.findall(lines.lower()))
        return self._lines

    def _head_for(self, request: web.BaseRequest) -> tuple[bytes, int | None, bool]:
        """The head, the body's length (None: unknown), and whether the body goes chunked; aiohttp's
        StreamResponse._prepare_headers (and Response._start, for a whole answer) in the same order."""
        version, method, status, whole = request.version, request.method, self._status, self._whole
        reason = self._reason
        if not reason.isprintable():
            _refuse_control(reason)
        lines, present = self._lines or self._header_lines()  # kept since __init__, unless read as text since
        empty = must_be_empty_body(method, status)
        unlengthed = empty and should_remove_content_length(method, status)
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        has_length = b"content-length" in present
        length: int | None = None
        if whole is not None:
            length = len(whole)  # the upstream's Content-Length, if it sent one: httptools framed the body by it
        elif has_length and not unlengthed and (found := _LENGTH.search(lines)) is not None:
            length = int(found.group(1))
        if has_length and unlengthed:
            lines = _LENGTH_LINES.sub(b"", lines)
        out = [f"HTTP/{version[0]}.{version[1]} {status} {reason}".encode(), lines]
        if self._request_id is not None:
            ours = b"\r\nX-Request-Id: " + self._request_id.encode()
            if b"x-request-id" in present and (app := _REQUEST_ID_LINES.search(lines)) is not None:
                after = _REQUEST_ID_LINES.sub(b"", lines[app.end():])  # where the app's was, as aiohttp puts it
                out[1] = lines[:app.start()] + ours + after
            else:
                out.append(ours)
        if self._says_close:
            out.append(b"\r\nConnection: close")
        if whole is not None and not has_length and not unlengthed and (whole or (status != 304 and method != "HEAD")):
            out.append(b"\r\nContent-Length: %d" % len(whole))
        if self._cookies:
            for cookie in self._cookies.values():
                value = cookie.output(header="")[1:]
                _refuse_control(value)
                out.append(f"\r\nSet-Cookie: {value}".encode())
        chunked = False
        if whole is None and length is None and not empty:
            if version >= HttpVersion11:
                chunked = True
                out.append(b"\r\nTransfer-Encoding: chunked")
            else:
                keep_alive = False
        if empty:
            if whole is not None:
                self._whole = b""  # HEAD, 1xx, 204, 304: no body, whatever came
        elif length != 0 and b"content-type" not in present:
            out.append(b"\r\nContent-Type: application/octet-stream")
        if b"date" not in present:
            out.append(b"\r\nDate: " + rfc822_formatted_time().encode())
        if b"server" not in present:
            out.append(_SERVER)
        self._keep_alive = keep_alive
        if not self._says_close and b"connection" not in present:
            if keep_alive:
                if version == HttpVersion10:
                    out.append(b"\r\nConnection: keep-alive")
            elif version == HttpVersion11:
                out.append(b"\r\nConnection: close")
        out.append(b"\r\n\r\n")
        return b"".join(out), length, chunked


def _refuse_control(text: str) -> None:
    if _CONTROL.search(text) is not None:
        raise ValueError(f"a control character in the answer's head: {text!r}")
