"""Runtime policy overrides: a route's binding policy as an operator switched it, who did, when, and from what.

`PolicyStore` is the interface; `MemoryPolicies` is the embedded default (this process: a restart forgets them, as
it always did); redis_policies.py's `RedisPolicies` shares them with the fleet.

Rules of this module:
- `overrides` is this process's copy (route name -> `Override`), read without I/O; every change to it, made here
  or taken from the fleet, goes through `on_change` callbacks (route, override or None for "configured again"), in
  the order the store saw the changes.
- `put` and `clear` change the copy at once and then the store: they answer True when the change reached the store
  (the whole fleet, for a shared one), False when it is kept to be written when the store is back.
- An override is kept until it is cleared: it matters as long as the route exists. Which routes exist is not the
  store's concern (the admin side ignores, and logs, one for a route it does not have).
- `Override.read` takes a stored JSON text as hostile: anything but a well-formed override is None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..settings import Mode

__all__ = ["MAX_BY", "MemoryPolicies", "OnChange", "Override", "PolicyStore"]

MAX_BY = 200
_MODES = {m.value: m for m in Mode}


@dataclass(frozen=True, slots=True)
class Override:
    """The route's policy is `mode` since `at` (epoch seconds), switched by `by` from `before`."""

    mode: Mode
    by: str
    at: float
    before: Mode

    def text(self) -> str:
        return json.dumps({"mode": self.mode.value, "by": self.by, "at": self.at, "from": self.before.value},
                          separators=(",", ":"))

    @staticmethod
    def read(text: object) -> Override | None:
        """The override a stored JSON text holds, or None."""
        if not isinstance(text, str) or len(text) > 4 * MAX_BY:
            return None
        try:
            value: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        mode, before, by, at = (_MODES.get(str(value.get("mode"))), _MODES.get(str(value.get("from"))),
                                value.get("by"), value.get("at"))
        if mode is None or before is None or not isinstance(by, str) or len(by) > MAX_BY:
            return None
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            return None
        return Override(mode, by, float(at), before)


OnChange = Callable[[str, Override | None], None]


class PolicyStore(Protocol):
    overrides: dict[str, Override]
    on_change: list[OnChange]

    async def start(self) -> None:
        """Adopt the store's current overrides (before the gateway serves), and follow its changes from now on."""

    async def close(self) -> None: ...

    async def put(self, route: str, override: Override) -> bool:
        """Switch the route's policy here at once, and in the store."""

    async def clear(self, route: str, at: float) -> bool:
        """Return the route to its configured policy here at once, and in the store."""


class MemoryPolicies:
    """The overrides of this process only."""

    def __init__(self) -> None:
        self.overrides: dict[str, Override] = {}
        self.on_change: list[OnChange] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, route: str, override: Override) -> bool:
        apply(self, route, override)
        return True

    async def clear(self, route: str, at: float) -> bool:
        apply(self, route, None)
        return True


def apply(store: PolicyStore, route: str, override: Override | None) -> None:
    """Change the store's copy and tell its `on_change` callbacks."""
    if override is None:
        store.overrides.pop(route, None)
    else:
        store.overrides[route] = override
    for callback in list(store.on_change):
        callback(route, override)
