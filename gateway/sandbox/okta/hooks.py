"""Event hook delivery: verification, and at-least-once POSTs that never hold up the call that caused them.

As okta-reference.md says: one GET with `x-okta-verification-challenge` to verify; then each event is POSTed
(`Content-Type: application/json` plus the hook's auth header) and must be answered 2xx within the timeout (3 s);
a 5xx, a timeout or a connection failure is retried once, a 4xx never. Events go to each hook in the order they
happened, one envelope per event, one at a time per hook, unless the org's HookFaults say otherwise (duplicates,
newest first, held back). Every attempt is logged in `org.deliveries`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING

import aiohttp

from .events import Attempt, Delivery, Event, EventHook, envelope

if TYPE_CHECKING:
    from .org import OktaOrg

USER_AGENT = "Okta Hooks"
HOLD_POLL = 0.02


class HookDeliverer:
    def __init__(self, org: OktaOrg) -> None:
        self._org = org
        self._queues: dict[str, list[tuple[EventHook, Event]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None

    def submit(self, hook: EventHook, events: list[Event]) -> None:
        """Queue the events for the hook and return at once; a worker per hook sends them."""
        self._queues.setdefault(hook.id, []).extend((hook, e) for e in events)
        self._kick(hook.id)

    async def verify(self, hook: EventHook) -> bool:
        challenge = secrets.token_urlsafe(32)
        headers = {"x-okta-verification-challenge": challenge, "User-Agent": USER_AGENT, **hook.auth_headers()}
        try:
            async with self._client().get(hook.url, headers=headers, timeout=self._timeout()) as answer:
                body = await answer.read()
                ok = answer.status == 200 and _echo(body) == challenge
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        hook.verified = ok
        for hook_id in self._queues:
            self._kick(hook_id)
        return ok

    async def drain(self, seconds: float) -> None:
        """Wait until no hook has anything left to send or in flight."""
        async with asyncio.timeout(seconds):
            while True:
                for hook_id in list(self._queues):
                    self._kick(hook_id)
                busy = [t for t in self._workers.values() if not t.done()]
                if not busy:
                    return
                await asyncio.wait(busy)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._workers.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _kick(self, hook_id: str) -> None:
        """Start the hook's worker if it has work and none runs; outside an event loop, the next call starts it."""
        if not self._queues.get(hook_id):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        worker = self._workers.get(hook_id)
        if worker is None or worker.done():
            self._workers[hook_id] = loop.create_task(self._work(hook_id))

    async def _work(self, hook_id: str) -> None:
        queue = self._queues[hook_id]
        faults = self._org.hook_faults
        while queue:
            if faults.hold:
                await asyncio.sleep(HOLD_POLL)
                continue
            batch = list(queue)
            queue.clear()
            if faults.out_of_order:
                batch.reverse()
            for hook, event in batch:
                body = envelope(issuer=self._org.issuer, hook=hook, events=[event], now=self._org.clock.now())
                for copy in range(1, 3 if faults.duplicate else 2):
                    await self._deliver(hook, body, copy)

    async def _deliver(self, hook: EventHook, body: dict[str, object], copy: int) -> None:
        events: list[Event] = body["data"]["events"]  # type: ignore[index]
        record = Delivery(hook.id, str(body["eventId"]), [e["uuid"] for e in events],
                          [e["eventType"] for e in events], copy)
        self._org.deliveries.append(record)
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT,
                   **hook.auth_headers()}
        for attempt in (1, 2):
            record.attempts.append(await self._post(hook.url, data, headers))
            status = record.attempts[-1].status
            if status is not None and status < 500:
                return  # delivered, or refused with a 4xx: not retried
            if attempt == 1:
                await asyncio.sleep(self._org.hook_retry_delay)

    async def _post(self, url: str, data: bytes, headers: dict[str, str]) -> Attempt:
        try:
            async with self._client().post(url, data=data, headers=headers, timeout=self._timeout()) as answer:
                await answer.read()
                return Attempt(answer.status)
        except TimeoutError:
            return Attempt(None, "timeout")
        except aiohttp.ClientError as exc:
            return Attempt(None, type(exc).__name__)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._http

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._org.hook_timeout)


def _echo(body: bytes) -> object:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed.get("verification") if isinstance(parsed, dict) else None
