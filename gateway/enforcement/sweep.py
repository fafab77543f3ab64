"""The sweep of open WebSockets: an open socket makes no requests, so nothing else would notice its session end.

Every `interval` seconds each Okta session behind an open socket is validated (through the cache, as a request
would be), and `socket_decision()` says whether its sockets close. The sweep gathers and acts; the rule is in
sessions/policy.py. Revocations close sockets at once through the revocation bus; the sweep catches what Okta
ended without telling the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..metrics import Metrics
from ..sessions.policy import Action, socket_decision
from ..sessions.sockets import OpenSockets
from ..sessions.validation import SessionValidator

INTERVAL = 5.0  # seconds between revalidations of the sessions behind open WebSockets


class SocketSweep:
    def __init__(self, validator: SessionValidator, sockets: OpenSockets, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time, interval: float = INTERVAL) -> None:
        self._validator, self._sockets, self._metrics = validator, sockets, metrics
        self._clock, self._interval = clock, interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.once()

    async def once(self) -> int:
        """Revalidate every session with an open socket, close the sockets of those that ended; how many closed."""
        closed = 0
        for session_id in self._sockets.sessions():
            validation = await self._validator.validate(session_id)
            if socket_decision(validation.view, self._clock()).action is Action.END:
                closed += self._sockets.end(session_id)
        self._metrics.sockets_closed.inc(closed)
        return closed
