"""A configuration table written out as a TOML file, for gateways the tests, benches and demo run as processes.

Only what configurations hold: strings, numbers, booleans, lists of those, tables within tables
([okta.event_hook], a route's [route.binding_cookie]) and the array of tables under "route".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def toml_text(config: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for name, section in config.items():
        if name != "route":
            lines.extend(_table(f"[{name}]", name, section))
    for route in config.get("route", ()):
        lines.extend(_table("[[route]]", "route", route))
    return "\n".join(lines) + "\n"


def _table(header: str, name: str, items: Mapping[str, Any]) -> list[str]:
    lines = [header]
    lines.extend(f"{k} = {_value(v)}" for k, v in items.items() if not isinstance(v, Mapping))
    for k, v in items.items():
        if isinstance(v, Mapping):
            lines.extend(_table(f"[{name}.{k}]", f"{name}.{k}", v))
    return lines


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
