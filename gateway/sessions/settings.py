"""A route's session-binding settings, as configuration gives them (pure values; config.py builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..plugin import AppProfile, SourceOptions
from .policy import Mode, SessionRules


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
class RouteSessions:
    """How one route ties its app's sessions to Okta sessions."""

    mode: Mode
    profile: AppProfile  # the chosen profile with the route's overrides applied
    sources: tuple[str, ...] = ("saml",)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    rules: SessionRules = field(default_factory=SessionRules)
    cookie: CookieSettings = field(default_factory=CookieSettings)
    app_cookie_domain: str | None = None  # the Domain the app sets its session cookies with, if any
