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
