"""TOML configuration → frozen, validated settings.

Rules of this package:
- Pure: reads one file, touches no network, imports no aiohttp.
- Every error is one `ConfigError` whose message names the file, the key and what was expected. The first error
  stops the load; the CLI prints it and exits with status 2.
- Unknown keys are errors (with a did-you-mean); so are wrong types, bad URLs, duplicate route names and routes
  that another route hides.
- A string value may reference the environment as `${NAME}`; a missing variable is an error, and one error names
  every missing variable of the file. The value itself never appears in a message, since such values are usually
  secrets.

One job a module: this one reads the file and puts the settings together; reader.py is the reading machinery
(typed reads, `${NAME}`, unknown keys, kinds of values); tables.py, routes.py and sessions.py are the schema. The
settings types are gateway/settings.py's; domain rules stay with the domain (config calls BindingCodec to check
keys, gateway/plugin.py to find plugins).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..routing import RouteTable
from ..settings import LogSettings, MetricsSettings, OktaSettings, ProxySettings, ServerSettings, StoreSettings
from .reader import ConfigError, Section, check_environment, optional_subsection, subsection
from .routes import check_routes, read_route
from .store import read_store
from .tables import (
    RouteDefaults,
    read_admin_token,
    read_binding_keys,
    read_log,
    read_metrics,
    read_okta,
    read_proxy,
    read_server,
)

__all__ = ["ConfigError", "Settings", "load", "parse"]


@dataclass(frozen=True, slots=True)
class Settings:
    source: str
    server: ServerSettings
    proxy: ProxySettings
    routes: RouteTable
    okta: OktaSettings | None = None
    binding_keys: tuple[str, ...] = field(default=(), repr=False)  # Fernet keys: the first seals, all open
    admin_token: str | None = field(default=None, repr=False)  # the operator's: status page and admin API
    store: StoreSettings = field(default_factory=StoreSettings)
    metrics: MetricsSettings | None = None  # [metrics]: the listener for Prometheus; None: none
    log: LogSettings = field(default_factory=LogSettings)


def load(path: str | os.PathLike[str]) -> Settings:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: expected a readable file; cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: expected UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: expected valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(f"{source}: expected valid TOML: arrays or inline tables nested too deeply") from None
    return parse(data, source)


def parse(data: Mapping[str, Any], source: str = "<config>") -> Settings:
    check_environment(data, source)
    top = Section(source, "", data)
    server = read_server(subsection(top, "server"))
    proxy_section = subsection(top, "proxy")
    proxy = read_proxy(proxy_section)
    defaults = RouteDefaults.read(proxy_section)
    proxy_section.finish()
    routes_value = top.get("route", list, "an array of tables [[route]] (at least one)", [])
    if not routes_value:
        raise top.error("route", "at least one [[route]] table", show_value=False)
    okta = read_okta(subsection(top, "okta")) if "okta" in data else None
    read = [read_route(source, i, table, defaults, okta is not None) for i, table in enumerate(routes_value)]
    routes = [route for route, _ in read]
    keys = read_binding_keys(subsection(top, "binding"), any(r.sessions is not None for r in routes))
    admin = optional_subsection(top, "admin", read_admin_token)
    store = read_store(subsection(top, "store"))
    metrics = optional_subsection(top, "metrics", lambda s: read_metrics(s, server))
    log = read_log(subsection(top, "log"))
    if server.workers > 1 and store.backend == "memory":
        raise ConfigError(f'{source}: store.backend: expected "redis" with [server] workers = {server.workers}: '
                          "the memory store is one process's, so each worker would keep its own revocations, "
                          "replay set and policy switches")
    top.finish()
    check_routes(source, routes, [from_env for _, from_env in read], server.prefix)
    return Settings(source=source, server=server, proxy=proxy, routes=RouteTable(routes), okta=okta,
                    binding_keys=keys, admin_token=admin, store=store, metrics=metrics, log=log)
