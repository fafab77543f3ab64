"""One gateway's link to Redis (or Valkey): its keys, its time limits, and whether Redis is there.

Rules of this module:
- Every key of a gateway is `{<key_prefix>}:<name>`: one hash tag, so that a Redis Cluster keeps them all in one
  slot (the scripts and transactions of the store touch several at once), and several gateways or apps share one
  Redis by their prefixes.
- Every command runs under `[store] timeout`. One that fails or times out marks Redis away: one log line, the
  `session_gateway_store_up` gauge at 0, and `StoreUnavailable` to the caller. While away, a command fails at
  once, with no round trip, and a probe pings every `PROBE_EVERY` seconds; the first answer marks Redis back (a
  log line, the gauge at 1) and runs the `on_up` callbacks (the fan-out writes what it kept, and catches up). So
  no request waits on Redis longer than the timeout, and an outage costs one timeout, not one per request.
- Redis is the distributed engine: nothing here orders, elects or replicates on its own. A Sentinel setup is
  followed by redis-py's Sentinel client (it asks the Sentinels for the primary on each new connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from ..metrics import Metrics
from ..settings import RedisSettings, StoreSettings
from . import StoreUnavailable as StoreUnavailable  # defined beside the interfaces; importable from here too

log = logging.getLogger("gateway.store")

T = TypeVar("T")
PROBE_EVERY = 1.0


class RedisLink:
    def __init__(self, store: StoreSettings, metrics: Metrics) -> None:
        assert store.redis is not None
        self.settings = store.redis
        self.prefix = store.key_prefix
        self.retention = store.retention
        self._metrics = metrics
        self.client = connect(store.redis)
        self.up = False
        self.on_up: list[Callable[[], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None
        self._ever_up = False

    def key(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    async def start(self) -> None:
        """Try Redis once (the gateway starts whether or not it answers) and keep probing while it is away."""
        await self._ping()
        if not self.up:
            self._away("not reachable at start-up")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.client.aclose()

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]], *, limit: float | None = None) -> T:
        """`op(client)` within `limit` (the command timeout); StoreUnavailable (at once while Redis is away) if not."""
        if not self.up:
            raise StoreUnavailable("redis is away")
        try:
            return await asyncio.wait_for(op(self.client), limit or self.settings.timeout)
        except (TimeoutError, RedisError, OSError) as exc:
            self._away(type(exc).__name__)
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None

    def blocking_client(self, block: float) -> aioredis.Redis:
        """A client of its own for a blocking read of up to `block` seconds (the command timeout would cut it)."""
        return connect(self.settings, timeout=block + self.settings.timeout)

    def _away(self, why: str) -> None:
        was_up, self.up = self.up, False
        self._metrics.store_up.set(0)
        if was_up or not self._ever_up:
            log.warning("store: redis is away (%s); serving from this process's state, revocations are kept and "
                        "written when it is back", why)
            self._ever_up = True  # one line per outage, the first included
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(PROBE_EVERY)
            await self._ping()

    async def _ping(self) -> None:
        try:
            await asyncio.wait_for(self.client.ping(), self.settings.connect_timeout + self.settings.timeout)
        except (TimeoutError, RedisError, OSError):
            return
        self.up = self._ever_up = True
        self._metrics.store_up.set(1)
        if self._was_away():
            log.warning("store: redis is back")
        else:
            log.info("store: redis is up")
        for callback in list(self.on_up):
            try:
                await callback()
            except StoreUnavailable:
                return  # away again: the probe started by _away() goes on

    def _was_away(self) -> bool:
        return self._probe is not None and not self._probe.done()


def connect(settings: RedisSettings, *, timeout: float | None = None) -> aioredis.Redis:
    """A redis-py asyncio client for the settings: by URL, or the primary that the Sentinels name."""
    options: dict[str, Any] = {
        "socket_timeout": timeout or settings.timeout, "socket_connect_timeout": settings.connect_timeout,
        "retry_on_timeout": False, "health_check_interval": 0, "decode_responses": True,
    }
    if settings.username:
        options["username"] = settings.username
    if settings.password:
        options["password"] = settings.password
    files = (("ssl_ca_certs", settings.tls_ca_file), ("ssl_certfile", settings.tls_cert_file),
             ("ssl_keyfile", settings.tls_key_file))
    tls: dict[str, Any] = {k: v for k, v in files if v}
    if settings.url is not None:
        return aioredis.Redis.from_url(settings.url, **options, **tls)
    assert settings.service_name is not None
    sentinel_options: dict[str, Any] = {"socket_timeout": settings.timeout,
                                        "socket_connect_timeout": settings.connect_timeout}
    if settings.sentinel_password:
        sentinel_options["password"] = settings.sentinel_password
    if settings.tls:
        options.update(ssl=True, **tls)
    sentinel = Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_options, **options)  # type: ignore[no-untyped-call]
    primary: aioredis.Redis = sentinel.master_for(settings.service_name, **options)
    return primary
