"""What the configuration says, as frozen values: every layer that needs a setting reads it from here.

Rules of this module:
- A leaf: plain frozen dataclasses and enums, no behaviour beyond defaults. It imports nothing of the gateway but
  the plugin interfaces (an app profile and a source's options are settings too), so that proxy/, sessions/,
  okta/, store/ and revocation/ may all import it while gateway/config/, above them, parses TOML into it.
- Defaults here are the documented defaults; gateway/config/ checks every value before it builds one.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from yarl import URL

from .plugin import AppProfile, SourceOptions

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    workers: int
    prefix: str
    trusted_proxies: tuple[IPNetwork, ...]
    access_log: bool
    log_level: str
    shutdown_timeout: float
    header_timeout: float  # seconds for a whole request head (and an idle keep-alive connection)
    body_timeout: float  # seconds a request body may pause between bytes while the gateway reads it
    body_min_rate: int | None  # bytes a second a request body must average past its first body_timeout; None: any
    stop_delay: float = 5.0  # seconds a SIGTERM keeps the listener accepting after readyz turned 503
    watch_config: bool = False  # reload when the configuration file changes
    pid_file: str | None = None  # where `session-gateway reload` finds the running gateway


@dataclass(frozen=True, slots=True)
class ProxySettings:
    pool_size: int
    keepalive_timeout: float
    websocket_max_message: int


@dataclass(frozen=True, slots=True)
class EventHookSettings:
    secret: str = field(repr=False)
    header: str = "Authorization"


@dataclass(frozen=True, slots=True)
class UniversalLogoutSettings:
    endpoint_url: str  # the URL registered in Okta: the JWT's audience
    leeway: float = 60.0


@dataclass(frozen=True, slots=True)
class OktaSettings:
    org_url: URL
    api_token: str = field(repr=False)
    timeout: float
    retries: int
    cache: CachePolicy
    low_headroom: float
    stretch: float
    max_background_refreshes: int
    unknown_ids_per_second: float = 5.0  # Okta lookups of ids the cache does not know, all clients together
    unknown_ids_per_client: float = 1.0  # the same, per client address (an IPv6 one by its /64)
    event_hook: EventHookSettings | None = None
    universal_logout: UniversalLogoutSettings | None = None


@dataclass(frozen=True, slots=True)
class CachePolicy:
    ttl: float = 60.0
    negative_ttl: float = 30.0
    revalidate: float = 10.0
    max_entries: int = 100_000


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    OBSERVE = "observe"
    OFF = "off"


class Unbound(enum.StrEnum):
    RELOGIN = "relogin"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class SessionRules:
    """A route's binding rules, from its configuration."""

    unbound: Unbound = Unbound.RELOGIN
    idle_timeout: float | None = None  # the gateway's own idle timeout, seconds
    extend_okta_every: float | None = None  # refresh the Okta session on activity at most this often
    touch_every: float = 60.0  # re-save the binding's last activity at most this often


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """The binding cookie's name and attributes. secure None: Secure when the request came by https."""

    name: str = "gateway_binding"
    path: str = "/"
    domain: str | None = None
    secure: bool | None = None
    httponly: bool = True
    samesite: str = "Lax"


@dataclass(frozen=True, slots=True)
class LogoutRules:
    """What the gateway does when the app's logout is asked for (the paths are the app profile's)."""

    methods: tuple[str, ...] = ("GET", "POST")
    scope: str = "session"  # "session": end this Okta session; "user": every session of the user
    answer: str = "app"  # "app": the app runs its own logout first; "gateway": the gateway answers it alone
    after_logout_url: str = "/"  # where Okta sends the browser after its sign-out: a path here or a URL
    allowed: tuple[str, ...] = ()  # URL prefixes the request may ask for instead, in `param`
    param: str = "return"


@dataclass(frozen=True, slots=True)
class RouteSessions:
    """How one route ties its app's sessions to Okta sessions."""

    mode: Mode
    profile: AppProfile  # the chosen profile with the route's overrides applied
    sources: tuple[str, ...] = ("saml",)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    rules: SessionRules = field(default_factory=SessionRules)
    cookie: CookieSettings = field(default_factory=CookieSettings)
    app_cookie_domain: str | None = None  # the Domain the app sets its session cookies with, if any
    logout: LogoutRules = field(default_factory=LogoutRules)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis (or Valkey): a URL, or Sentinel's addresses and the service it watches."""

    url: str | None = field(default=None, repr=False)  # redis://, rediss:// or unix://; may hold a password
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None  # rediss:// (or Sentinel with tls = true): the CA that signs the server's cert
    tls_cert_file: str | None = None  # a client certificate, when Redis asks for one
    tls_key_file: str | None = None
    tls: bool = False  # Sentinel: reach the primary over TLS (a URL says so by its scheme)
    connect_timeout: float = 1.0
    timeout: float = 0.25  # each command; past it Redis counts as away until a ping answers again


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where the fleet's shared state lives: "memory" (this process only) or "redis"."""

    backend: str = "memory"
    key_prefix: str = "session-gateway"  # every key of this gateway is "{<key_prefix>}:…": one Cluster slot
    retention: float = 86_400.0  # seconds a tombstone, watermark, jti or hook delivery id is kept
    redis: RedisSettings | None = None
    required_for_ready: bool = False  # Redis away fails readyz (default: shown, never failing; README says why)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """[metrics]: the listener that serves /metrics to Prometheus without a token. With `workers > 1`, worker i
    (from 0) listens on `port + i`: each has its own registry."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How log lines are written: "text" for a person, "json" (one object a line) for a collector."""

    FORMATS = ("text", "json")

    format: str = "text"
