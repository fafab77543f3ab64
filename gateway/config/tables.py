"""The schema of the gateway-wide tables: [server], [proxy] (and the route defaults it holds), [okta] with
[okta.event_hook] and [okta.universal_logout], [binding], [admin], [metrics] and [log]."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from ..sessions.binding import BindingCodec, BindingKeyError
from ..settings import (
    CachePolicy,
    EventHookSettings,
    LogSettings,
    MetricsSettings,
    OktaSettings,
    ProxySettings,
    ServerSettings,
    UniversalLogoutSettings,
)
from .reader import (
    Section,
    env_secret,
    fraction,
    network,
    optional_subsection,
    origin_url,
    per_second,
    seconds,
    size,
)

_LOG_LEVELS = ("debug", "info", "warning", "error")


def read_server(s: Section) -> ServerSettings:
    listen = s.get("listen", str, 'an address "host:port"', "127.0.0.1:8080")
    host, port = _listen_address(s, listen)
    workers = s.check("workers", s.get("workers", int, "a whole number of processes", 1), lambda n: 1 <= n <= 64,
                      "a whole number of processes from 1 to 64")
    prefix = s.get("prefix", str, 'a path such as "/.gateway/"', "/.gateway/")
    s.check("prefix", prefix, lambda p: re.fullmatch(r"/[A-Za-z0-9._~-]+/", p) is not None,
            'a path of one segment with a slash at both ends, such as "/.gateway/"')
    proxies = s.get("trusted_proxies", list, "a list of addresses or networks", [])
    trusted = tuple(network(s, "trusted_proxies", p) for p in proxies)
    access_log = s.get("access_log", bool, "true or false", False)
    level = s.check("log_level", s.get("log_level", str, "a log level", "info").lower(),
                    lambda v: v in _LOG_LEVELS, f"one of {', '.join(_LOG_LEVELS)}")
    shutdown = seconds(s, "shutdown_timeout", 10.0)
    header_timeout = seconds(s, "header_timeout", 10.0)
    body_timeout = seconds(s, "body_timeout", 30.0)
    body_min_rate = size(s, "body_min_rate", 500)
    stop_delay = float(s.check("stop_delay", s.get("stop_delay", (int, float), "a number of seconds", 5.0),
                               lambda v: 0 <= v <= 3600, "a number of seconds from 0 to 3600"))
    watch = s.get("watch_config", bool, "true or false", False)
    pid_file = s.get("pid_file", str, "a path for the gateway's process id", None)
    s.check("pid_file", pid_file, lambda p: p is None or (p != "" and "\0" not in p), "a path to a file")
    s.finish()
    return ServerSettings(host, port, workers, prefix, trusted, access_log, level, shutdown, header_timeout,
                          body_timeout, body_min_rate, stop_delay=stop_delay, watch_config=watch,
                          pid_file=str(Path(s.source).parent / pid_file) if pid_file else None)


def _listen_address(s: Section, listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 <= int(port) <= 65535:
        raise s.error("listen", 'an address "host:port" with a port from 0 to 65535', listen)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise s.error("listen", 'an IP address (or "localhost") and a port, "host:port"', listen) from None
    return host, int(port)


def read_proxy(s: Section) -> ProxySettings:
    pool = s.check("pool_size", s.get("pool_size", int, "a whole number of connections", 256),
                   lambda n: 1 <= n <= 100_000, "a number of connections from 1 to 100000")
    keepalive = seconds(s, "keepalive_timeout", 4.0)
    ws_max = size(s, "websocket_max_message", 16 * 2**20)
    return ProxySettings(pool, keepalive, ws_max or 0)


@dataclass(frozen=True, slots=True)
class RouteDefaults:
    connect_timeout: float
    read_timeout: float
    max_request_body: int | None

    @classmethod
    def read(cls, s: Section) -> RouteDefaults:
        return cls(seconds(s, "connect_timeout", 5.0), seconds(s, "read_timeout", 60.0),
                   size(s, "max_request_body", 1 * 2**30))


def read_okta(s: Section) -> OktaSettings:
    api_token = env_secret(s, "api_token", "OKTA_API_TOKEN", "a token written into the file would travel with it")
    org = s.get("org_url", str, 'the org URL, such as "https://example.okta.com"', None)
    org_url = origin_url(s, "org_url", org, 'the org URL, "https://host" (no path)')
    cache = CachePolicy(
        ttl=seconds(s, "cache_ttl", 60.0),
        negative_ttl=seconds(s, "negative_ttl", 30.0),
        revalidate=float(s.check("revalidate", s.get("revalidate", (int, float), "a number of seconds", 10.0),
                                 lambda v: 0 <= v <= 3600, "a number of seconds from 0 to 3600")),
        max_entries=s.check("max_entries", s.get("max_entries", int, "a whole number of entries", 100_000),
                            lambda n: 1 <= n <= 10_000_000, "a number of entries from 1 to 10000000"),
    )
    settings = OktaSettings(
        org_url=org_url,
        api_token=api_token,
        timeout=seconds(s, "timeout", 5.0),
        retries=s.check("retries", s.get("retries", int, "a whole number of retries", 2), lambda n: 0 <= n <= 5,
                        "a number of retries from 0 to 5"),
        cache=cache,
        low_headroom=fraction(s, "rate_limit_low_headroom", 0.2),
        stretch=float(s.check("rate_limit_stretch", s.get("rate_limit_stretch", (int, float), "a factor", 4.0),
                              lambda v: 1 <= v <= 100, "a factor from 1 to 100")),
        max_background_refreshes=s.check(
            "max_background_refreshes", s.get("max_background_refreshes", int, "a whole number", 16),
            lambda n: 0 <= n <= 1000, "a number from 0 to 1000"),
        unknown_ids_per_second=per_second(s, "unknown_ids_per_second", 5.0),
        unknown_ids_per_client=per_second(s, "unknown_ids_per_client", 1.0),
        event_hook=optional_subsection(s, "event_hook", _event_hook),
        universal_logout=optional_subsection(s, "universal_logout", _universal_logout),
    )
    s.finish()
    return settings


def _event_hook(s: Section) -> EventHookSettings:
    s.path = "okta.event_hook"
    secret = env_secret(s, "secret", "OKTA_HOOK_SECRET", "the value Okta sends in the hook's authorization header",
                        min_length=16)
    header = s.check("header", s.get("header", str, "a header name", "Authorization"),
                     lambda v: re.fullmatch(r"[A-Za-z0-9-]{1,64}", v) is not None, "a header name")
    s.finish()
    return EventHookSettings(secret, header)


def _universal_logout(s: Section) -> UniversalLogoutSettings:
    s.path = "okta.universal_logout"
    endpoint = s.get("endpoint_url", str, "the endpoint URL registered in Okta", None)
    url = None
    try:
        url = URL(endpoint) if endpoint else None
    except ValueError:
        pass
    if url is not None and (url.user is not None or url.password is not None):
        raise s.error("endpoint_url", "the endpoint's public URL as registered in Okta; credentials in it are "
                      "refused and not shown", show_value=False)
    # "?" or "#" even with nothing after: Okta's audience is the URL without a query, and must match it exactly
    if (url is None or url.scheme not in ("http", "https") or not url.host or "?" in str(endpoint)
            or "#" in str(endpoint)):
        raise s.error("endpoint_url", 'the endpoint\'s public URL as registered in Okta, such as '
                      '"https://app.example.com/.gateway/okta/universal-logout" (no query)', endpoint)
    leeway = s.check("leeway", float(s.get("leeway", (int, float), "seconds", 60.0)), lambda v: 0 <= v <= 600,
                     "seconds from 0 to 600")
    s.finish()
    return UniversalLogoutSettings(str(endpoint), leeway)


def read_binding_keys(s: Section, needed: bool) -> tuple[str, ...]:
    """The Fernet keys that seal bindings: `keys` from the environment, or `keys_file`, one key a line."""
    text = None
    if "keys" in s.table:
        text = env_secret(s, "keys", "GATEWAY_BINDING_KEYS", "keys written into the file would travel with it")
    else:
        s.known.append("keys")
    path = s.get("keys_file", str, "a path to a file with one key a line", None)
    s.finish()
    if text is not None and path is not None:
        raise s.error("keys_file", "either keys or keys_file, not both", show_value=False)
    if path is not None:
        try:
            text = (Path(s.source).parent / path).read_text(encoding="ascii")  # relative to the configuration
        except (OSError, UnicodeDecodeError):
            raise s.error("keys_file", "a readable file with one Fernet key a line", path) from None
    if text is None:
        if needed:
            raise s.error("keys", "keys (or keys_file) for the binding cookie, since a route binds sessions "
                          '(make one with: session-gateway keygen)', show_value=False)
        return ()
    keys = tuple(k for k in re.split(r"[\s,]+", text) if k)
    try:
        BindingCodec(keys)
    except BindingKeyError as exc:
        raise s.error("keys_file" if path else "keys", f"Fernet keys: {exc}", show_value=False) from None
    return keys


def read_admin_token(s: Section) -> str:
    token = env_secret(s, "token", "GATEWAY_ADMIN_TOKEN", "the operator token opens the status page and the admin "
                       "API", min_length=16)
    s.finish()
    return token


def read_metrics(s: Section, server: ServerSettings) -> MetricsSettings:
    """[metrics] listen: where Prometheus scrapes, never where the gateway itself listens (with `workers > 1`,
    the ports from `port` to `port + workers - 1`, one a worker)."""
    listen = s.get("listen", str, 'an address "host:port" for Prometheus to scrape, such as "0.0.0.0:9090"', None)
    if listen is None:
        raise s.error("listen", 'an address "host:port" for Prometheus to scrape, such as "0.0.0.0:9090"')
    host, port = _listen_address(s, listen)
    workers = server.workers
    last = port + workers - 1
    if port == 0 or last > 65535:
        span = f" (with workers = {workers}, one port a worker up to {last})" if workers > 1 else ""
        raise s.error("listen", f"a port from 1 to 65535 that Prometheus can be told{span}", listen)
    if port <= server.port <= last and _overlap(host, server.host):
        ports = f"ports {port} to {last}, one a worker" if workers > 1 else f"port {port}"
        written = f"[{server.host}]" if ":" in server.host else server.host
        raise s.error("listen", f"an address other than [server] listen's ({written}:{server.port}): the metrics "
                      f"listener takes {ports}", listen)
    s.finish()
    return MetricsSettings(host, port)


def _overlap(a: str, b: str) -> bool:
    """Whether listening on host `a` and host `b` (at one port) would collide: the same address, or a wildcard."""
    first, second = (ipaddress.ip_address("127.0.0.1" if h == "localhost" else h) for h in (a, b))
    return first == second or first.is_unspecified or second.is_unspecified


def read_log(s: Section) -> LogSettings:
    format = s.check("format", s.get("format", str, '"text" or "json"', "text"), lambda v: v in LogSettings.FORMATS,
                     '"text" or "json"')
    s.finish()
    return LogSettings(format)
