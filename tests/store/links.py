"""Links to the tests' real redis-server processes, and a wait for what a background task does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from gateway.metrics import Metrics
from gateway.settings import RedisSettings, StoreSettings
from gateway.store.redis import RedisLink


def link_to(url: str, prefix: str = "hr-app", **redis: float) -> RedisLink:
    return RedisLink(StoreSettings("redis", prefix, 3600.0, RedisSettings(url=url, **redis)), Metrics())


async def started(url: str, **redis: float) -> RedisLink:
    link = link_to(url, **redis)
    await link.start()
    return link


@contextlib.asynccontextmanager
async def linked(url: str, count: int = 2, **redis: float) -> AsyncIterator[list[RedisLink]]:
    """`count` replicas' links to one Redis, started, and closed afterwards."""
    made = [await started(url, **redis) for _ in range(count)]
    try:
        yield made
    finally:
        for link in made:
            await link.close()


async def wait_until(condition: Callable[[], bool], limit: float = 5.0) -> float:
    """Seconds it took for `condition()` to hold (it fails the test after `limit`)."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < limit, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - began
