"""Several `session-gateway run` replicas sharing one redis-server, in front of one Okta sandbox and one set of
legacy apps (gateway/sandbox/fleet.py says where each listens)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_support import RedisProcess

from gateway.sandbox.fleet import Fleet


@dataclass
class RedisFleet(Fleet):
    redis: RedisProcess | None = None
    replicas: list[Any] = field(default_factory=list)  # conftest.GatewayProcess, one per replica


async def start_replica(process_class: Any, config_text: str, path: Path, port: int) -> Any:
    """A replica process, started in a thread so that this event loop keeps answering as Okta meanwhile."""
    process = process_class(path, port)
    await asyncio.to_thread(_write_and_start, process, path, config_text)
    return process


def _write_and_start(process: Any, path: Path, config_text: str) -> None:
    path.write_text(config_text)
    process.start()
