"""Real, tiny distributions for the plugin tests: a `*.dist-info` folder with an `entry_points.txt` in the group
`session_gateway.plugins` (and the modules it names, when given) in a folder put on sys.path, so that
importlib.metadata finds it as it finds an installed distribution, and the gateway loads it as it loads any."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway import plugin
from gateway.config import ConfigError, parse


def write_distribution(root: Path, name: str, entry_points: dict[str, str],
                       modules: dict[str, str] | None = None) -> Path:
    """A distribution `name` in `root` whose plugins are `entry_points` (plugin name → "module:attribute"), and the
    modules' sources (dotted name → text; a package's __init__ is written for every dotted parent). Returns root."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{plugin_name} = {value}\n" for plugin_name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{plugin.ENTRY_POINT_GROUP}]\n{lines}")
    for module, text in (modules or {}).items():
        parts = module.split(".")
        for i in range(1, len(parts)):
            init = root.joinpath(*parts[:i], "__init__.py")
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()
        root.joinpath(*parts[:-1], parts[-1] + ".py").write_text(text)
    return root


def forget_plugins() -> None:
    """The gateway's memory of what is installed and what it loaded, dropped: the next lookup reads anew."""
    plugin._installed.cache_clear()
    plugin._load.cache_clear()


@contextmanager
def on_path(*roots: Path) -> Iterator[None]:
    """The folders first on sys.path for the duration (in that order); afterwards the path is as it was, the modules
    imported from them are unloaded, and the gateway has forgotten them."""
    before = list(sys.path)
    sys.path[:0] = [str(r) for r in roots]
    importlib.invalidate_caches()
    forget_plugins()
    try:
        yield
    finally:
        sys.path[:] = before
        for module_name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            if any(where.startswith(str(r)) for r in roots):
                del sys.modules[module_name]
        importlib.invalidate_caches()
        forget_plugins()


def bound(**route: Any) -> dict[str, Any]:
    """A configuration of one route "hr" that binds sessions, with `route`'s keys."""
    return {"okta": {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"},
            "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
            "route": [{"name": "hr", "upstream": "http://127.0.0.1:9000", **route}]}


def config_error(data: dict[str, Any]) -> str:
    """The one-line message of the ConfigError that parsing `data` (as "gw.toml") raises."""
    with pytest.raises(ConfigError) as caught:
        parse(data, "gw.toml")
    message = str(caught.value)
    assert "\n" not in message, message
    return message
