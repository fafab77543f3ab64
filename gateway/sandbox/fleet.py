"""Several replicas of one gateway in front of one World (the Okta sandbox and the apps): where each listens.

Replica 0 listens on the address the apps and Okta know the gateway by (the ACS, the Universal Logout audience);
the others on ports of their own, as pods behind one Service. Tests and benches start the replicas as
`session-gateway run` processes with `replica_config()`; a browser's cookies are the same on every replica
(browsers keep cookies by host, not by port).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .okta.org import OktaOrg
from .stack import World, free_port


@dataclass
class Fleet:
    world: World
    ports: list[int]  # replica i listens on 127.0.0.1:ports[i]

    @property
    def org(self) -> OktaOrg:
        return self.world.org

    @property
    def gateway_url(self) -> str:
        return self.world.gateway_url

    def url(self, path: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[replica]}{path}"


def replica_ports(world: World, replicas: int) -> list[int]:
    return [int(world.gateway_url.rpartition(":")[2])] + [free_port() for _ in range(replicas - 1)]


def replica_config(world: World, port: int) -> dict[str, Any]:
    """The fleet's one configuration, listening on this replica's port."""
    config = copy.deepcopy(world.config)
    config["server"]["listen"] = f"127.0.0.1:{port}"
    return config
