"""Health: `healthz` (the process answers) and `readyz` (it can serve: what a load balancer needs to know).

`readyz` lists every problem, not the first: the configuration in effect (the upstream pools up), the Okta API
accepting the gateway's token, the store when one is configured, each route's upstream reachable, and a stop under
way. It does no I/O of its own: a flood of readyz never reaches an upstream, Okta or Redis. What it reads is kept
current in the background:
- `watch_credentials` asks Okta about our token now and then; a rejected token fails readyz until Okta accepts it
  again. Okta unreachable does not (the routes' `fail_mode` says what then happens to requests).
- `UpstreamChecks` checks each distinct upstream origin of the routes every `CHECK_EVERY` seconds: an answer the proxy
  received from it since the last check is proof enough (a busy gateway adds no connects); otherwise a TCP connect
  within `CHECK_TIMEOUT` (what "reachable" means to a load balancer: no request, no TLS handshake). An idle keep-alive
  connection in the pool is no proof: an app that stopped listening (draining, or gone with its socket left half-open)
  keeps the connections it had. The proof costs at most one interval: an upstream that stops fails readyz within two
  checks (`2 * CHECK_EVERY`, plus `CHECK_TIMEOUT` if its connects hang). A route with `required_for_ready = false` is
  shown but never fails readyz. A new pod takes no traffic before the gateway has seen its app listen: the first round
  runs before the gateway listens (a few milliseconds; at most `CHECK_TIMEOUT` when a connect hangs), and a route a
  reload adds is "checking", failing readyz if it is required, until its origin's first check (run at once) is done.
  readyz reports each check as it found it; how many failures in a row take a pod out is the load balancer's setting
  (Kubernetes' `failureThreshold`).
- A shared store (Redis) is pinged by the same loop and shown (`"store": "up"` or `"away"`), but by default never
  fails readiness: every replica shares one Redis, so failing on it would take the whole app out of its load
  balancer for a Redis blip, while the gateway serves safely without it (README: "Running several replicas").
  `[store] required_for_ready = true` makes "away" a problem, for operators who would rather lose the replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .okta.client import OktaClient
from .proxy.request_id import Stop
from .proxy.upstream import UpstreamPools
from .routing import Route
from .store import StoreUnavailable
from .store.redis import RedisLink

log = logging.getLogger("gateway.health")

_CREDENTIALS_RECHECK = (30.0, 300.0)  # seconds between checks of our Okta token: while in doubt, while good
CHECK_EVERY = 2.0  # seconds between two checks of an upstream origin (and pings of the store)
CHECK_TIMEOUT = 1.0  # seconds a TCP connect to an upstream may take before the upstream counts as unreachable
_NO_STORE = {"Cache-Control": "no-store"}

Connect = Callable[[str, int], Awaitable[None]]  # host, port; raises OSError when nothing accepts


@dataclass(frozen=True, slots=True)
class Reach:
    """What the last check of one upstream origin found."""

    up: bool
    error: str = ""


async def tcp_connect(host: str, port: int) -> None:
    """Open a TCP connection and close it at once: the upstream's listener accepts connections."""
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, host, port)
    transport.abort()


class UpstreamChecks:
    """The reachability of each route's upstream, kept current by one background task; read without I/O.

    Built from the routes and the pools that serve them (their answers count as proof; readyz fails while they are
    not up); `update()` swaps in another generation of both (a reload): origins still named keep what they know,
    new ones are checked at once."""

    def __init__(self, routes: Iterable[Route], pools: UpstreamPools | None = None, store: RedisLink | None = None,
                 *, every: float = CHECK_EVERY, timeout: float = CHECK_TIMEOUT, connect: Connect = tcp_connect) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self.pools, self._store = pools, store
        self._every, self._timeout, self._connect = every, timeout, connect
        self._reach: dict[str, Reach] = {}
        self._checked_at: dict[str, float] = {}  # time.monotonic() of each origin's last check
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, routes: Iterable[Route], pools: UpstreamPools | None = None) -> None:
        self.routes = tuple(routes)
        if pools is not None:
            self.pools = pools
        self._wake.set()

    def reach(self, route: Route) -> Reach | None:
        """The last check of the route's origin; None before its first."""
        return self._reach.get(route.upstream_origin)

    async def start(self) -> None:
        """The first round before the gateway listens (at most `CHECK_TIMEOUT`), then one every `CHECK_EVERY`."""
        await self.check()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                # not wait_for: Python 3.11's returns the event's result when a cancellation (close) comes with it
                # (a reload's update() just before a stop), and the loop would never end
                async with asyncio.timeout(self._every):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.check()

    async def check(self) -> None:
        """One round: every origin the routes name, at once, and a ping of the store."""
        origins = {route.upstream_origin: route for route in self.routes}
        await asyncio.gather(*(self._check(origin, route) for origin, route in origins.items()), self._ping_store())
        for gone in set(self._reach) - set(origins):
            del self._reach[gone], self._checked_at[gone]

    async def _check(self, origin: str, route: Route) -> None:
        started = time.monotonic()
        if self._answered_since(route, self._checked_at.get(origin)):
            found = Reach(True)
        else:
            url = route.upstream
            try:
                async with asyncio.timeout(self._timeout):
                    await self._connect(url.host or "", url.port or (443 if url.scheme == "https" else 80))
                found = Reach(True)
            except TimeoutError:
                found = Reach(False, f"no TCP connect within {self._timeout:g} s")
            except (OSError, ValueError) as exc:  # ValueError: a name the resolver cannot take (too long, a NUL)
                found = Reach(False, _connect_error(url.host or "", exc))
        self._log_change(origin, self._reach.get(origin), found)
        self._reach[origin], self._checked_at[origin] = found, started

    def _answered_since(self, route: Route, since: float | None) -> bool:
        if since is None or self.pools is None:
            return False
        try:
            answered = self.pools.http(route).answered_at
        except KeyError:  # the pools are not up (yet, or any more)
            return False
        return answered is not None and answered >= since

    def _log_change(self, origin: str, was: Reach | None, now: Reach) -> None:
        names = ", ".join(r.name for r in self.routes if r.upstream_origin == origin)
        if not now.up and (was is None or was.up):
            log.warning("readiness: upstream %s (route %s) is unreachable: %s", origin, names, now.error)
        elif now.up and was is not None and not was.up:
            log.warning("readiness: upstream %s (route %s) is reachable again", origin, names)

    async def _ping_store(self) -> None:
        if self._store is None or not self._store.up:
            return  # while away, the link's own probe finds it back
        try:
            await self._store.run(lambda client: client.ping())
        except StoreUnavailable:
            pass  # the link has marked it away and logged it


def _connect_error(host: str, exc: OSError | ValueError) -> str:
    """"connection refused", not asyncio's "Connect call failed ('127.0.0.1', 9)", which names no cause."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class Health:
    """The two endpoints. `stopping` is set by a graceful stop: readyz answers 503 from then on."""

    def __init__(self, checks: UpstreamChecks, okta: OktaClient | None, store: RedisLink | None = None, *,
                 store_required: bool = False, stop: Stop | None = None) -> None:
        self._checks, self._okta = checks, okta
        self._store, self._store_required = store, store_required
        self._stop = Stop() if stop is None else stop

    @property
    def stopping(self) -> bool:
        """Set by a graceful stop: readyz answers 503, and every answer closes its connection (`Stop`)."""
        return self._stop.asked

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self._stop.asked = value

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers=_NO_STORE)

    async def readyz(self, request: web.Request) -> web.Response:
        body, problems = self.readiness()
        status = "stopping" if self.stopping else "not ready" if problems else "ready"
        body = {"status": status, **body}
        if problems:
            body["problems"] = problems
        return web.json_response(body, status=503 if problems else 200, headers=_NO_STORE)

    def readiness(self) -> tuple[dict[str, object], list[str]]:
        """What readyz shows, and every problem that fails it."""
        problems = ["the gateway is stopping"] if self.stopping else []
        if self._checks.pools is None or not self._checks.pools.ready:
            problems.append("upstream pools are not up")
        body: dict[str, object] = {"configuration": "loaded"}
        if self._okta is not None:
            body["okta"] = {True: "token accepted", False: "token rejected", None: "not known yet"}[
                self._okta.credentials_ok]
            if self._okta.credentials_ok is False:
                problems.append("Okta rejects the gateway's API token")
        if self._store is not None:
            body["store"] = "up" if self._store.up else "away"
            if self._store_required and not self._store.up:
                problems.append("the store (redis) is away, and [store] required_for_ready = true")
        routes: dict[str, object] = {}
        for route in self._checks.routes:
            shown, problem = _route_readiness(route, self._checks.reach(route))
            routes[route.name] = shown
            if problem and route.required_for_ready:
                problems.append(problem)
        body["routes"] = routes
        return body, problems


def _route_readiness(route: Route, reach: Reach | None) -> tuple[dict[str, object], str | None]:
    origin = route.upstream_origin
    shown: dict[str, object] = {"upstream": origin, "required": route.required_for_ready}
    if reach is None:
        shown["upstream_status"] = "checking"
        return shown, f"route {route.name}: upstream {origin} not checked yet"
    if reach.up:
        shown["upstream_status"] = "reachable"
        return shown, None
    shown["upstream_status"] = "unreachable"
    shown["error"] = reach.error
    return shown, f"route {route.name}: upstream {origin} is unreachable ({reach.error})"


async def watch_credentials(client: OktaClient) -> None:
    """Keep readiness honest about our Okta token: a rejected token fails /readyz until Okta accepts it again."""
    while True:
        ok = await client.check_credentials()
        await asyncio.sleep(_CREDENTIALS_RECHECK[1] if ok else _CREDENTIALS_RECHECK[0])
