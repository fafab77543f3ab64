"""The gateway's own short answers (404, 413, 502, 504 …), in HTML or JSON as the client's Accept prefers.

Pure: no aiohttp import; the server turns an `Answer` into a response. Bodies are short and never carry
exception text, upstream addresses or anything else a client should not learn.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def wants_json(accept: str | None, requested_with: str | None = None) -> bool:
    """True for API-style callers: an Accept that names JSON before HTML, or an XMLHttpRequest."""
    if requested_with and requested_with.lower() == "xmlhttprequest":
        return True
    if not accept:
        return False
    accept = accept.lower()
    j = accept.find("json")
    if j < 0:
        return False
    h = accept.find("text/html")
    return h < 0 or j < h


def answer(status: int, detail: str, *, accept: str | None, requested_with: str | None = None) -> Answer:
    title = HTTPStatus(status).phrase
    if wants_json(accept, requested_with):
        body = json.dumps({"error": title, "status": status, "detail": detail}).encode()
        return Answer(status, "application/json", body)
    heading = f"{status} {html.escape(title)}"
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{heading}</title></head>"
        f"<body><h1>{heading}</h1><p>{html.escape(detail)}</p><hr><p>Session Gateway</p></body></html>\n"
    )
    return Answer(status, "text/html; charset=utf-8", page.encode())


NO_ROUTE = "No application is served at this address."
TOO_LARGE = "The request body is larger than this application accepts."
BAD_GATEWAY = "The application did not answer. Try again in a moment."
GATEWAY_TIMEOUT = "The application took too long to answer. Try again in a moment."
BAD_PATH = "The request path could not be mapped to the application."
