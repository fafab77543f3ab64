"""The gateway's log lines: one setup for the process, the request each line is about, the access line.

Rules of this module:
- `[log] format` picks one of two formatters, both the standard library's or python-json-logger's, configured
  here and not written here: "text", a line a person reads, and "json", one object a line. Both carry the same
  fields: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message` and, on a line logged while a
  request is handled, `request_id`, `client`, `method`, `path` and `route` once it is matched; the access line adds
  `status`, `bytes`, `duration_ms` and `upstream_ms`. Structured facts go in `extra=` (an audit line's source and
  reason, the start line's routes): the JSON object has them as fields, the text line has them in its message.
- The request a line is about is one contextvar, `current`, set once when the gateway's handler starts: aiohttp
  runs each request in a task of its own, whose context is a copy, so nothing leaks into the next request and
  nothing needs resetting. A filter on the handler copies it onto each record, so that lines of every logger
  (the enforcer, the sign-in, the logout, the Okta client, aiohttp's) carry it, and tasks started during the
  request (a validation, an app logout's retries) carry the id of the request that started them.
- Nothing secret reaches a line: a path is logged without its query (SAMLResponse, RelayState, code and tokens
  travel there) and without path parameters (`;jsessionid=…`); a session id only as `shorten()` makes it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import IO, Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-Id"
MAX_PATH = 1024  # characters of a path in a line; the rest is cut (aiohttp admits request lines of 16 KiB)

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_JSON = "%(asctime)s %(levelname)s %(name)s %(message)s"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class RequestLog:
    """What every line about one request says of it; `route` and `upstream_s` are filled in as they are known."""

    __slots__ = ("request_id", "client", "method", "target", "started", "route", "upstream_s")

    def __init__(self, request_id: str, client: str, method: str, target: str) -> None:
        self.started = time.monotonic()  # aiohttp's own clock, under uvloop, counts whole milliseconds
        self.request_id = request_id
        self.client = client
        self.method = method
        self.target = target  # the request target as sent, query included: cut by `loggable_path` when logged
        self.route: str | None = None
        self.upstream_s: float | None = None  # until the upstream's answer head came


current: ContextVar[RequestLog | None] = ContextVar("gateway_request", default=None)


class _RequestIds:
    """16 random hex digits a request: unguessable, and telling no one how many requests came before (a counter
    would). The kernel's random bytes are read 4 KiB at a time, 512 ids, rather than in a getrandom() syscall per
    request; a forked worker starts with none of its parent's (`os.register_at_fork`), so no two share an id."""

    _READ = 4096

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._digits):
            self._digits, at = os.urandom(self._READ).hex(), 0
        self._at = at + 16
        return self._digits[at:at + 16]

    def forget(self) -> None:
        self._digits, self._at = "", 0


_REQUEST_IDS = _RequestIds()
os.register_at_fork(after_in_child=_REQUEST_IDS.forget)
new_request_id = _REQUEST_IDS.next


def begin(request_id: str, client: str, method: str, target: str) -> RequestLog:
    """The request the current task handles, from now on in every line it logs."""
    entry = RequestLog(request_id, client, method, target)
    current.set(entry)
    return entry


def loggable_path(target: str) -> str:
    """The path of a request target, without query or fragment and without path parameters (`;jsessionid=…`):
    where apps put tokens and session ids. At most MAX_PATH characters."""
    path = target.partition("?")[0].partition("#")[0]
    if ";" in path:
        path = "/".join(segment.partition(";")[0] for segment in path.split("/"))
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "…"


def shorten(session_id: str | None) -> str | None:
    """A session id as it may be shown (in a log line, on the status page): enough to tell two apart."""
    return None if session_id is None else session_id[:6] + "…"


class RequestFields(logging.Filter):
    """Puts the current request's fields on each record that passes (and leaves those a caller gave alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        entry = current.get()
        if entry is not None:
            fields = record.__dict__
            fields.setdefault("request_id", entry.request_id)
            fields.setdefault("client", entry.client)
            fields.setdefault("method", entry.method)
            fields.setdefault("path", loggable_path(entry.target))
            if entry.route is not None:
                fields.setdefault("route", entry.route)
        return True


def formatter(format: str) -> logging.Formatter:
    """The formatter of `[log] format`, with its times in UTC as ISO 8601 ("2026-12-02T03:04:05.678Z")."""
    chosen: logging.Formatter
    if format == "json":
        chosen = JsonFormatter(_JSON, rename_fields=_JSON_NAMES)
    else:
        chosen = logging.Formatter(_TEXT, defaults={"request_id": "-"})
    chosen.converter = time.gmtime
    chosen.default_time_format = "%Y-%m-%dT%H:%M:%S"
    chosen.default_msec_format = "%s.%03dZ"
    return chosen


def handler(format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing lines of `format` to `stream` (stderr), each with its request's fields."""
    made = logging.StreamHandler(stream or sys.stderr)
    made.setFormatter(formatter(format))
    made.addFilter(RequestFields())
    return made


def setup(level: str, format: str = "text", stream: IO[str] | None = None) -> None:
    """The process's logging: one handler on the root logger, at `level`. Called again (a reload), it replaces the
    handlers there were."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler(format, stream))
    root.setLevel(level.upper())
    # what no line of ours shows, not gathered for each record (the Logging HOWTO's "Optimization"): a fifth of
    # the cost of a text line
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def follow(level: str, format: str) -> None:
    """A reload: the new level, and the new format on the handlers `setup()` made (a test's are left alone)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for made in root.handlers:
        if any(isinstance(f, RequestFields) for f in made.filters):
            made.setFormatter(formatter(format))


class AccessLogger(AbstractAccessLogger):
    """One line per answered request (logger `gateway.access`, at INFO), with the same fields as every other line
    and the answer's: status, bytes, duration_ms and, for a proxied request, upstream_ms (until the upstream's
    answer head arrived). aiohttp calls it in the request's task, once the answer is sent."""

    def log(self, request: BaseRequest, response: StreamResponse, took: float) -> None:
        entry = current.get()
        duration = round((took if entry is None else time.monotonic() - entry.started) * 1000, 2)
        fields: dict[str, Any] = {"status": response.status, "bytes": response.body_length, "duration_ms": duration}
        if entry is None:  # refused before any handler of the gateway ran (aiohttp's 400 for a malformed request)
            client, method, path = request.remote or "-", request.method, loggable_path(request.raw_path)
            fields.update(request_id=new_request_id(), client=client, method=method, path=path)
            self.logger.info('%s "%s %s" %d %d B %.1f ms', client, method, path, response.status,
                             response.body_length, duration, extra=fields)
            return
        path = loggable_path(entry.target)
        if entry.upstream_s is not None:
            fields["upstream_ms"] = round(entry.upstream_s * 1000, 2)
        self.logger.info('%s "%s %s" %d %d B %.1f ms%s', entry.client, entry.method, path, response.status,
                         response.body_length, duration, "" if entry.route is None else f" route {entry.route}",
                         extra=fields)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
