"""The Okta event hook endpoint: verification, authenticated deliveries, acknowledged at once, acted on after.

- GET with `x-okta-verification-challenge` answers `{"verification": <challenge>}` (Okta's one-time check; the
  echo reveals nothing, so it is answered with or without the secret).
- POST must carry the configured header with the configured secret, compared in constant time: otherwise 401 and
  nothing happens. The body is read whole up to 1 MiB (413 beyond) and must be UTF-8 JSON that the parser can
  nest (400 otherwise: bad bytes, deep nesting); `read_delivery` is that rule, pure. The answer (200) goes out
  before the events are acted on, well inside Okta's 3 s: the events are acted on by a task that starts on the
  next turn of the event loop, one after the other in the order of the delivery.
- Okta delivers at least once and possibly out of order: events are deduplicated by `uuid` through the "seen once"
  store (store/seen.py: this process's bounded set, or store/redis_seen.py's, kind "hook", shared by the fleet, so
  that a delivery Okta sends again to another replica is acted on once), each uuid kept for `retention` seconds;
  what they revoke does not depend on order (events.py). Redis away costs at most one store timeout per delivery,
  after the answer, and the dedupe falls back to this process's set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..metrics import Metrics
from ..store.seen import MemorySeen, SeenOnce
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
                 seen: SeenOnce | None = None, remember: int = 100_000, retention: float = 86_400.0,
                 clock: Callable[[], float] = time.time) -> None:
        """seen: where delivered uuids are kept (by default a MemorySeen of `remember` uuids, this process's)."""
        self._secret = secret.encode()
        self._header = header
        self._bus = bus
        self._metrics = metrics
        self._seen = seen if seen is not None else MemorySeen(remember)
        self._retention = retention
        self._clock = clock
        self._acting: set[asyncio.Task[None]] = set()

    def rekey(self, secret: str, header: str) -> None:
        """A reload's secret and header, for the next delivery."""
        self._secret, self._header = secret.encode(), header

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
        task = asyncio.get_running_loop().create_task(self._act(events))  # its first step: the next turn
        self._acting.add(task)
        task.add_done_callback(self._acting.discard)
        return web.Response(status=200, headers=NO_STORE)

    async def close(self) -> None:
        """Let the deliveries being acted on finish (each waits on the store at most its timeout per event)."""
        await asyncio.gather(*self._acting, return_exceptions=True)

    def _authentic(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._secret)

    async def _act(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                await self._act_on(event)
            except Exception:  # one failing event must not lose the rest of the delivery
                log.exception("acting on an event hook event failed")

    async def _act_on(self, event: dict[str, Any]) -> None:
        uuid = event.get("uuid")
        if isinstance(uuid, str):
            now = self._clock()
            if await self._seen.seen(uuid, now + self._retention, now):
                self._metrics.hook_events.labels("duplicate").inc()
                return
        revocation = revocation_of(event)
        if revocation is None:
            self._metrics.hook_events.labels("ignored").inc()
            return
        self._metrics.hook_events.labels("revoked").inc()
        self._bus.publish(revocation)
