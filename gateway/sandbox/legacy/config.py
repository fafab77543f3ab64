"""The legacy app's settings: who it trusts, where the browser sees it, and how long its own sessions live.

Two places matter and they may differ:
- `external_url` is the app as the browser sees it (behind the gateway: the gateway's URL plus the route's path
  prefix). The ACS URL, the Destination/Recipient checks, links and redirects are all made from it.
- `base_path` is where the app's own routes live on its listening socket: "" when the gateway strips the route's
  prefix (or there is none), the prefix itself when the gateway forwards paths unchanged.
Without a gateway, external_url is the app's own origin and base_path "".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from yarl import URL

EIGHT_HOURS = 8 * 3600


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LegacyAppConfig:
    name: str
    external_url: str  # e.g. "http://127.0.0.1:8080/app": the browser's view, may carry a path prefix
    idp_sso_url: str  # "{org.issuer}/app/{name}/sso/saml"
    idp_certificate_pem: str
    audience: str  # the SP entity id; also the Issuer of the app's AuthnRequests
    idp_issuer: str | None = None  # when set, the Assertion's Issuer must be this
    base_path: str = ""  # where the routes live on the app's own socket (see the module docstring)
    cookie_name: str = "JSESSIONID"
    cookie_path: str = "/"
    acs_path: str = "/saml/acs"
    logout_path: str = "/logout"
    clock: Callable[[], datetime] = field(default=utc_now)
    session_idle_seconds: float = EIGHT_HOURS
    clock_skew_seconds: float = 60.0  # tolerance on NotBefore / NotOnOrAfter
    max_post_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        url = URL(self.external_url)
        if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
            raise ValueError(f"external_url must be an http(s) URL without query or fragment: {self.external_url!r}")
        for key in ("base_path", "acs_path", "logout_path", "cookie_path"):
            value = getattr(self, key)
            if key == "base_path" and value == "":
                continue
            if not value.startswith("/") or (key == "base_path" and value.endswith("/")):
                raise ValueError(f"{key} must start with '/' (base_path: and not end with one): {value!r}")
        if self.acs_path == self.logout_path:
            raise ValueError("acs_path and logout_path must differ")
        if self.session_idle_seconds <= 0 or self.max_post_bytes <= 0 or self.clock_skew_seconds < 0:
            raise ValueError("session_idle_seconds and max_post_bytes must be positive, clock_skew_seconds >= 0")

    @property
    def external_prefix(self) -> str:
        """The path prefix the browser sees in front of every app path ("" when there is none)."""
        return URL(self.external_url).path.rstrip("/")

    @property
    def acs_url(self) -> str:
        """The ACS as the browser (and so the IdP) knows it: Destination and Recipient must say exactly this."""
        return self.external_url.rstrip("/") + self.acs_path

    @property
    def secure_cookie(self) -> bool:
        return URL(self.external_url).scheme == "https"

    def link(self, path: str) -> str:
        """An app path ("/page/1") as the browser must request it ("/app/page/1")."""
        return self.external_prefix + path

    def route(self, path: str) -> str:
        """An app path as this server routes it."""
        return self.base_path + path
