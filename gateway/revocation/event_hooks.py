"""The Okta event hook endpoint: verification, authenticated deliveries, acknowledged at once, acted on after.

- GET with `x-okta-verification-challenge` answers `{"verification": <challenge>}` (Okta's one-time check; the
  echo reveals nothing, so it is answered with or without the secret).
- POST must carry the configured header with the configured secret, compared in constant time: otherwise 401 and
  nothing happens. The body is read whole up to 1 MiB (413 beyond) and must be UTF-8 JSON that the parser can
  nest (400 otherwise: bad bytes, deep nesting); `read_delivery` is that rule, pure. The answer (200) goes out
  before the events are acted on, well inside Okta's 3 s, and the events are handed to the revocation bus on the
  next turn of the event loop.
- Okta delivers at least once and possibly out of order: events are deduplicated by `uuid` (bounded memory), and
  what they revoke does not depend on order (events.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from ..metrics import Metrics
from .bodies import NotJson, load_json, read_body
from .bus import RevocationBus
from .events import events_of, revocation_of

log = logging.getLogger("gateway.revocation")

MAX_BODY = 1024 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def read_delivery(body: bytes) -> list[dict[str, Any]] | None:
    """The events of a delivery body (see events.py), or None when the body is not a JSON value."""
    try:
        return events_of(load_json(body))
    except NotJson:
        return None


class EventHookReceiver:
    def __init__(self, secret: str, header: str, bus: RevocationBus, metrics: Metrics, *,
                 remember: int = 100_000) -> None:
        self._secret = secret.encode()
        self._header = header
        self._bus = bus
        self._metrics = metrics
        self._remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def verify(self, request: web.Request) -> web.Response:
        challenge = request.headers.get("x-okta-verification-challenge", "")
        if not challenge or len(challenge) > 512:
            return web.json_response({"error": "no verification challenge"}, status=400, headers=NO_STORE)
        return web.json_response({"verification": challenge}, headers=NO_STORE)

    async def deliver(self, request: web.Request) -> web.Response:
        if not self._authentic(request.headers.get(self._header, "")):
            self._metrics.hook_deliveries.labels("unauthenticated").inc()
            return web.json_response({"error": "unauthenticated"}, status=401, headers=NO_STORE)
        body = await read_body(request, MAX_BODY)
        if body is None:
            self._metrics.hook_deliveries.labels("malformed").inc()
            return web.json_response({"error": "too large"}, status=413, headers=NO_STORE)
        events = read_delivery(body)
        if events is None:
            self._metrics.hook_deliveries.labels("malformed").inc()
            return web.json_response({"error": "not JSON"}, status=400, headers=NO_STORE)
        self._metrics.hook_deliveries.labels("accepted").inc()
        asyncio.get_running_loop().call_soon(self._act, events)
        return web.Response(status=200, headers=NO_STORE)

    def _authentic(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._secret)

    def _act(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            uuid = event.get("uuid")
            if isinstance(uuid, str):
                if uuid in self._seen:
                    self._metrics.hook_events.labels("duplicate").inc()
                    continue
                self._seen[uuid] = None
                if len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
            revocation = revocation_of(event)
            if revocation is None:
                self._metrics.hook_events.labels("ignored").inc()
                continue
            self._metrics.hook_events.labels("revoked").inc()
            try:
                self._bus.publish(revocation)
            except Exception:  # one failing revocation must not lose the rest of the delivery
                log.exception("acting on an event hook revocation failed")
