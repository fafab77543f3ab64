"""Several gateway replicas as an operator runs them: `session-gateway run` processes with one configuration (but
their listen address), in front of one Okta sandbox and one set of legacy apps, sharing one redis-server.

Replica 0 listens on the address the apps and Okta know the gateway by (the ACS, the Universal Logout audience);
the others on ports of their own, as pods behind one Service. A browser's cookies are the same on every replica
(browsers keep cookies by host, not by port), so a browser signed in through one replica is signed in on all.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_support import RedisProcess

from gateway.sandbox.okta.org import OktaOrg
from gateway.sandbox.stack import World, free_port


@dataclass
class Fleet:
    world: World
    redis: RedisProcess
    replicas: list[Any] = field(default_factory=list)  # conftest.GatewayProcess, one per replica

    @property
    def org(self) -> OktaOrg:
        return self.world.org

    @property
    def gateway_url(self) -> str:
        return self.world.gateway_url

    def url(self, path: str, replica: int = 0) -> str:
        return self.gateway_url + path if replica == 0 else self.replicas[replica].url(path)


def replica_config(world: World, replica: int) -> dict[str, Any]:
    """The fleet's one configuration, with this replica's listen address (replica 0 keeps the world's)."""
    config = copy.deepcopy(world.config)
    if replica:
        config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    return config


async def start_replica(process_class: Any, config_text: str, path: Path, port: int) -> Any:
    """A replica process, started in a thread so that this event loop keeps answering as Okta meanwhile."""
    process = process_class(path, port)
    await asyncio.to_thread(_write_and_start, process, path, config_text)
    return process


def _write_and_start(process: Any, path: Path, config_text: str) -> None:
    path.write_text(config_text)
    process.start()
