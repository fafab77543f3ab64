"""Request bodies of the gateway's own endpoints (event hooks, Universal Logout, the operator's forms and API).

Rules of this module:
- A body is read whole or refused: `StreamReader.read(n)` answers with whatever one chunk brought, so a body
  that came in several TCP segments would be read cut short; `read_bounded` reads until the end or the limit.
  A request whose Content-Length already says it is too long is refused without reading (`read_body`).
- JSON is UTF-8 text (no byte-order detection: json.loads would take UTF-16 and UTF-32 bytes too), and nesting
  too deep for the parser is "not JSON", never a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import StreamReader, web


class NotJson(ValueError):
    """The bytes are not one UTF-8 JSON value the parser can nest."""


async def read_bounded(stream: StreamReader, limit: int) -> bytes | None:
    """The whole stream, or None once it is longer than limit."""
    data = bytearray()
    async for chunk in stream.iter_chunked(limit + 1):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


async def read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than limit (by its Content-Length, unread, or as read)."""
    if (request.content_length or 0) > limit:
        return None
    return await read_bounded(request.content, limit)


def load_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body (an empty body is null), or NotJson."""
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NotJson("not UTF-8 JSON") from None
