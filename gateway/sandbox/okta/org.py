"""The emulated Okta org's state: users, session tokens, sessions, browser cookies, trusted origins, SAML apps,
event hooks, Universal Logout keys and the System Log. Pure state: no aiohttp here (the HTTP face is app.py, api.py
and pages.py; hook delivery is hooks.py, imported only when a hook is verified; Universal Logout is
universal_logout.py, imported on first use).

Rules of this module, and the okta-reference.md facts it follows:
- Session ids: Classic Engine `102` + 22 url-safe characters, Identity Engine `idx` + 22. User ids `00u` + 17.
- Browser cookie: Classic `sid` whose value is the session id; Identity Engine `idx` whose value is an opaque token
  that maps to the session and is NOT a valid `{id}` for the API ("treat it as no").
- Lifetime: `expiresAt = min(lastActivity + idle, createdAt + maxLifetime)`, maxLifetime 0 = no absolute limit.
  Activity is a browser request carrying the cookie, or a refresh (by id or /me). A GET by id is not activity.
  A session past its expiresAt is gone: every lookup answers "no such session" and it is dropped.
- Session tokens (from /api/v1/authn): single use, 5 minutes on the org clock.
- Ending sessions records System Log events and hands them to verified hooks that subscribed to their type:
  a user's own sign-out → `user.session.end`, actor = the user, externalSessionId = EndedSessionId = the session;
  an API token ending a session → `user.session.end`, actor = the token's admin, externalSessionId = the admin's
  API "session" (`trs…`, never a browser session), target = the user, EndedSessionId = the ended session;
  clearing a user's sessions → `user.session.clear`, then one `user.session.end` per session, one transaction id;
  suspend / deactivate → the lifecycle event, then one `user.session.end` per session, one transaction id.
  Expiry is never delivered (`user.session.expire` does not reach hooks).
Simplified: one global session policy for every user; no MFA flows (a test may set `session.status`); no OAuth
tokens (`oauthTokens` is accepted and has nothing to revoke); no concurrency limit; apps are SAML only.
"""

from __future__ import annotations

import hmac
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from yarl import URL

from . import events as ev
from .events import Actor, Delivery, Event, EventHook
from .faults import Faults, RateLimiter
from .saml import EXPRESSIONS, SamlApp, SigningKey

if TYPE_CHECKING:
    from .hooks import HookDeliverer
    from .universal_logout import LogoutFormat, LogoutKeys

__all__ = ["ApiCall", "Clock", "Faults", "HookFaults", "OktaOrg", "Session", "SessionPolicy", "User"]

Engine = Literal["classic", "identity"]
URL_SAFE = string.ascii_letters + string.digits + "-_"
ALNUM = string.ascii_letters + string.digits
SESSION_TOKEN_LIFETIME = timedelta(minutes=5)


def random_id(prefix: str, length: int, alphabet: str = ALNUM) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


class Clock:
    """The org's clock: wall time plus whatever tests added with advance(); frozen=True stops the wall part."""

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._start = start or datetime.now(UTC)
        self._frozen = frozen
        self._started = time.monotonic()
        self._offset = 0.0

    def now(self) -> datetime:
        running = 0.0 if self._frozen else time.monotonic() - self._started
        return (self._start + timedelta(seconds=running + self._offset)).astimezone(UTC)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the org clock only moves forward")
        self._offset += seconds


@dataclass(slots=True)
class ApiCall:
    """One request to /api/v1/…: recorded when it arrives; status stays None while it has no answer (hang)."""

    method: str
    path: str
    status: int | None = None


@dataclass
class SessionPolicy:
    """The global session policy (okta-reference.md, "Lifetime"); settable at any time, read at every lookup."""

    idle_minutes: int = 120
    lifetime_minutes: int = 0  # 0: no absolute limit
    persistent_cookie: bool = False  # usePersistentCookie: "Stay signed in" may make the cookie outlive the browser


@dataclass
class HookFaults:
    """Test switches for hook delivery (at-least-once, possibly out of order, as Okta promises).

    duplicate     every envelope is sent twice (same events, same uuids)
    out_of_order  whatever is waiting for a hook is sent newest first
    hold          nothing is sent while set; what waits goes out once it is cleared
    """

    duplicate: bool = False
    out_of_order: bool = False
    hold: bool = False

    def reset(self) -> None:
        self.duplicate = self.out_of_order = self.hold = False


@dataclass(eq=False)
class User:
    id: str
    login: str
    password: str = field(repr=False)
    first_name: str = ""
    last_name: str = ""
    status: str = "ACTIVE"  # ACTIVE, SUSPENDED, DEPROVISIONED
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.login

    def actor(self) -> Actor:
        return Actor(self.id, self.login, self.display_name)


@dataclass(eq=False)
class Session:
    """An Okta session. Mutable on purpose: a test may set `status` ("MFA_REQUIRED") or `amr`."""

    id: str
    user: User
    created_at: datetime
    last_activity: datetime
    cookie_value: str = field(repr=False)
    policy: SessionPolicy = field(repr=False)
    status: str = "ACTIVE"
    amr: list[str] = field(default_factory=lambda: ["pwd"])
    last_password_verification: datetime | None = None
    last_factor_verification: datetime | None = None
    persistent: bool = False  # the user chose "Stay signed in" and the policy allows it
    ended: bool = False

    @property
    def user_id(self) -> str:
        return self.user.id

    @property
    def login(self) -> str:
        return self.user.login

    @property
    def expires_at(self) -> datetime:
        idle_end = self.last_activity + timedelta(minutes=self.policy.idle_minutes)
        if self.policy.lifetime_minutes <= 0:
            return idle_end
        return min(idle_end, self.created_at + timedelta(minutes=self.policy.lifetime_minutes))

    def alive(self, now: datetime) -> bool:
        return not self.ended and now < self.expires_at


@dataclass(frozen=True, slots=True)
class TrustedOrigin:
    origin: str
    cors: bool
    redirect: bool


class OktaOrg:
    def __init__(
        self,
        *,
        issuer: str,
        api_token: str = "sandbox-api-token",
        engine: Engine = "identity",
        idle_minutes: int = 120,
        lifetime_minutes: int = 0,
        rate_limit_per_minute: int = 600,
        clock: Clock | None = None,
        persistent_cookie: bool = False,
    ) -> None:
        if engine not in ("classic", "identity"):
            raise ValueError(f"engine must be 'classic' or 'identity', not {engine!r}")
        self.issuer = issuer.rstrip("/")
        self.api_token = api_token
        self.engine: Engine = engine
        self.clock = clock or Clock()
        self.policy = SessionPolicy(idle_minutes, lifetime_minutes, persistent_cookie)
        self.faults = Faults()
        self.rate_limits = RateLimiter(rate_limit_per_minute)
        self.api_calls: list[ApiCall] = []
        self.missing_token_403 = False  # answer a call without a token 403 E0000005 instead of 401 E0000011
        self.report_ended_session_id = True  # put debugData.EndedSessionId into user.session.end events
        self.org_id = random_id("00o", 17)
        self.admin = User(random_id("00u", 17), "sandbox.admin@example.com", secrets.token_urlsafe(16),
                          "Sandbox", "Admin")
        self.api_session_id = random_id("trs", 22, URL_SAFE)  # the API token's externalSessionId in events
        self.users: dict[str, User] = {}
        self._logins: dict[str, User] = {}
        self._sessions: dict[str, Session] = {}
        self._cookies: dict[str, str] = {}  # cookie value -> session id
        self._tokens: dict[str, tuple[User, datetime]] = {}
        self.trusted_origins: dict[str, TrustedOrigin] = {}
        self.apps: dict[str, SamlApp] = {}
        self._signing_key: SigningKey | None = None
        self.hooks: list[EventHook] = []
        self.hook_faults = HookFaults()
        self.hook_timeout = 3.0  # seconds a receiver has to answer (okta-reference.md)
        self.hook_retry_delay = 0.1  # seconds before the one retry of a 5xx or a timeout
        self.deliveries: list[Delivery] = []
        self.system_log: list[Event] = []
        self._deliverer: HookDeliverer | None = None
        self._logout_keys: LogoutKeys | None = None

    # --- users --------------------------------------------------------------------------------------------

    def add_user(self, login: str, password: str, first_name: str = "", last_name: str = "") -> User:
        if login.lower() in self._logins:
            raise ValueError(f"a user {login!r} exists already")
        user = User(random_id("00u", 17), login, password, first_name, last_name, created=self.clock.now())
        self.users[user.id] = user
        self._logins[login.lower()] = user
        return user

    def user(self, user_id_or_login: str) -> User | None:
        return self.users.get(user_id_or_login) or self._logins.get(user_id_or_login.lower())

    def authenticate(self, login: str, password: str) -> User | None:
        """The user when the password is right and the user may sign in; None otherwise (no reason given)."""
        user = self._logins.get(login.lower())
        if user is None or user.status != "ACTIVE":
            return None
        return user if hmac.compare_digest(user.password.encode(), password.encode()) else None

    def suspend_user(self, user_id: str) -> None:
        """Admin suspends the user: `user.lifecycle.suspend`, then every session of the user ends."""
        self._lifecycle(user_id, "SUSPENDED", ev.SUSPEND)

    def deactivate_user(self, user_id: str) -> None:
        """Admin deactivates the user: `user.lifecycle.deactivate`, then every session of the user ends."""
        self._lifecycle(user_id, "DEPROVISIONED", ev.DEACTIVATE)

    def unsuspend_user(self, user_id: str) -> None:
        self._known_user(user_id).status = "ACTIVE"

    def _lifecycle(self, user_id: str, status: str, event_type: str) -> None:
        user = self._known_user(user_id)
        user.status = status
        transaction = random_id("", 27)
        lifecycle = self._event(event_type, self.admin.actor(), [user.actor()], self.api_session_id, transaction)
        self._publish([lifecycle, *self._end_all(user, transaction)])

    def _known_user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        return user

    # --- session tokens ----------------------------------------------------------------------------------

    def issue_session_token(self, user: User) -> tuple[str, datetime]:
        token = random_id("20111", 40, URL_SAFE)
        expires = self.clock.now() + SESSION_TOKEN_LIFETIME
        self._tokens[token] = (user, expires)
        return token, expires

    def redeem_session_token(self, token: str) -> User | None:
        """The token's user, once: a used, expired or unknown token is None."""
        found = self._tokens.pop(token, None)
        if found is None:
            return None
        user, expires = found
        return user if self.clock.now() < expires and user.status == "ACTIVE" else None

    # --- sessions ----------------------------------------------------------------------------------------

    @property
    def cookie_name(self) -> str:
        return "sid" if self.engine == "classic" else "idx"

    def sign_in(self, login: str, *, persistent: bool = False) -> Session:
        """A test shortcut: an ACTIVE session as if the user had signed in (no browser cookie is set anywhere)."""
        user = self.user(login)
        if user is None:
            raise KeyError(f"no user {login!r}")
        return self.start_session(user, persistent=persistent)

    def start_session(self, user: User, *, persistent: bool = False) -> Session:
        now = self.clock.now()
        prefix = "102" if self.engine == "classic" else "idx"
        session_id = random_id(prefix, 22, URL_SAFE)
        cookie = session_id if self.engine == "classic" else secrets.token_urlsafe(48)
        session = Session(session_id, user, now, now, cookie, self.policy, last_password_verification=now,
                          persistent=persistent and self.policy.persistent_cookie)
        self._sessions[session_id] = session
        self._cookies[cookie] = session_id
        self._publish([self._event(ev.SESSION_START, user.actor(), [], session_id, random_id("", 27))])
        return session

    def session(self, session_id: str) -> Session | None:
        """The session if it is alive; an expired one is dropped, as Okta forgets it."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if not session.alive(self.clock.now()):
            self._forget(session)
            return None
        return session

    def sessions_of(self, user_id: str) -> list[Session]:
        return [s for s in list(self._sessions.values()) if s.user_id == user_id and self.session(s.id) is not None]

    def session_for_cookie(self, cookie_value: str | None) -> Session | None:
        session_id = self._cookies.get(cookie_value) if cookie_value else None
        return self.session(session_id) if session_id else None

    def cookie_for(self, session: Session) -> tuple[str, str]:
        """(name, value) of the browser cookie of this session, for a test that plays a signed-in browser."""
        return self.cookie_name, session.cookie_value

    def touch(self, session: Session) -> None:
        """User activity: the idle window starts again (up to the absolute lifetime)."""
        if session.alive(self.clock.now()):
            session.last_activity = self.clock.now()

    refresh = touch  # the Sessions API's lifecycle/refresh is activity by definition

    def sign_out(self, session: Session) -> None:
        """The user ends their own session (/login/signout, DELETE /api/v1/sessions/me)."""
        self._forget(session)
        self._publish([self._event(ev.SESSION_END, session.user.actor(), [], session.id, random_id("", 27),
                                   ended=session.id)])

    def end_session(self, session: Session) -> None:
        """An admin (the API token) ends one session (DELETE /api/v1/sessions/{id})."""
        self._forget(session)
        self._publish([self._event(ev.SESSION_END, self.admin.actor(), [session.user.actor()],
                                   self.api_session_id, random_id("", 27), ended=session.id)])

    def clear_user_sessions(self, user_id: str) -> int:
        """An admin ends every session of the user (DELETE /api/v1/users/{id}/sessions); how many there were."""
        user = self._known_user(user_id)
        transaction = random_id("", 27)
        clear = self._event(ev.SESSION_CLEAR, self.admin.actor(), [user.actor()], self.api_session_id, transaction)
        ends = self._end_all(user, transaction)
        self._publish([clear, *ends])
        return len(ends)

    def _end_all(self, user: User, transaction: str) -> list[Event]:
        ended = self.sessions_of(user.id)
        for session in ended:
            self._forget(session)
        return [self._event(ev.SESSION_END, self.admin.actor(), [user.actor()], self.api_session_id, transaction,
                            ended=s.id) for s in ended]

    def _forget(self, session: Session) -> None:
        session.ended = True
        self._sessions.pop(session.id, None)
        self._cookies.pop(session.cookie_value, None)

    # --- trusted origins ---------------------------------------------------------------------------------

    def add_trusted_origin(self, origin: str, *, cors: bool = True, redirect: bool = True) -> None:
        """Security > API > Trusted Origins: CORS for /api/v1/sessions/me, redirects after sign-in and sign-out."""
        key = _origin(origin)
        if key is None:
            raise ValueError(f"not an origin: {origin!r}")
        self.trusted_origins[key] = TrustedOrigin(key, cors, redirect)

    def is_cors_origin(self, origin: str | None) -> bool:
        found = self.trusted_origins.get(_origin(origin) or "") if origin else None
        return found is not None and found.cors

    def safe_redirect(self, target: str | None) -> str | None:
        """The target when the org may send a browser there (the org itself or a trusted origin), else None."""
        if not target:
            return None
        if target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
        origin = _origin(target)
        if origin is None:
            return None
        if origin == _origin(self.issuer):
            return target
        trusted = self.trusted_origins.get(origin)
        return target if trusted is not None and trusted.redirect else None

    # --- SAML apps ---------------------------------------------------------------------------------------

    def add_saml_app(self, name: str, acs_url: str, audience: str, *, attributes: dict[str, str] | None = None,
                     default_relay_state: str = "") -> SamlApp:
        """A SAML 2.0 app at /app/{name}/sso/saml. attributes: attribute name -> expression, e.g.
        {"okta_session_id": "session.id"} (Okta's expression for the session id); NameID is the login."""
        if not name or not all(c in URL_SAFE for c in name):
            raise ValueError("an app name is letters, digits, '-' and '_'")
        unknown = set((attributes or {}).values()) - EXPRESSIONS
        if unknown:
            raise ValueError(f"unsupported expressions {sorted(unknown)}; use {sorted(EXPRESSIONS)}")
        app = SamlApp(random_id("0oa", 17), random_id("exk", 17), name, acs_url, audience, dict(attributes or {}),
                      default_relay_state)
        self.apps[name] = app
        return app

    @property
    def signing_key(self) -> SigningKey:
        if self._signing_key is None:  # made on first use: RSA key generation costs ~0.1 s
            self._signing_key = SigningKey(URL(self.issuer).host or "sandbox")
        return self._signing_key

    @property
    def signing_certificate_pem(self) -> str:
        return self.signing_key.certificate_pem

    def attribute_values(self, app: SamlApp, session: Session) -> dict[str, str]:
        user = session.user
        values = {"session.id": session.id, "user.id": user.id, "user.login": user.login, "user.email": user.login,
                  "user.firstName": user.first_name, "user.lastName": user.last_name,
                  "user.displayName": user.display_name}
        return {name: values[expression] for name, expression in app.attributes.items()}

    def record_sso(self, app: SamlApp, session: Session) -> None:
        target = Actor(app.id, app.name, app.name, "AppInstance")
        self._publish([self._event(ev.SSO, session.user.actor(), [target], session.id, random_id("", 27))])

    # --- event hooks -------------------------------------------------------------------------------------

    def add_event_hook(self, url: str, event_types: list[str] | tuple[str, ...], *,
                       auth_header: str = "Authorization", secret: str = "") -> EventHook:
        """Register a hook; it receives nothing until `await org.verify_hook(hook)` succeeds."""
        hook = EventHook(random_id("who", 17), url, frozenset(event_types), auth_header, secret)
        self.hooks.append(hook)
        return hook

    async def verify_hook(self, hook: EventHook) -> bool:
        """Okta's one-time verification: GET with x-okta-verification-challenge, expect the echo."""
        return await self._hook_deliverer().verify(hook)

    async def wait_for_hooks(self, seconds: float = 10.0) -> None:
        """Until every event handed to a hook is delivered or given up on (TimeoutError after `seconds`)."""
        if self._deliverer is not None:
            await self._deliverer.drain(seconds)

    async def close(self) -> None:
        """Stop deliveries in flight and close the hook client (the app does it on cleanup)."""
        if self._deliverer is not None:
            await self._deliverer.close()
            self._deliverer = None

    def _hook_deliverer(self) -> HookDeliverer:
        if self._deliverer is None:
            from .hooks import HookDeliverer  # aiohttp is needed only once hooks are in use

            self._deliverer = HookDeliverer(self)
        return self._deliverer

    # --- Universal Logout (universal_logout.py states its rules) ----------------------------------------------

    @property
    def logout_keys(self) -> LogoutKeys:
        if self._logout_keys is None:  # made on first use, as the SAML key is
            from .universal_logout import LogoutKeys

            self._logout_keys = LogoutKeys(random_id("0oa", 17))
        return self._logout_keys

    def rotate_logout_key(self) -> str:
        """A new Universal Logout signing key; the old one leaves the JWKS. Returns the new kid."""
        return self.logout_keys.rotate()

    def universal_logout_request(self, endpoint_url: str, user: User | str, *, fmt: LogoutFormat = "email",
                                 app_id: str | None = None, **overrides: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the POST Okta makes to the endpoint; overrides make bad ones for tests."""
        from .universal_logout import build_request

        return build_request(self, endpoint_url, self._as_user(user), fmt=fmt, app_id=app_id, **overrides)

    async def send_universal_logout(self, endpoint_url: str, user: User | str, fmt: LogoutFormat = "email") -> int:
        """POST a Universal Logout to the endpoint and log it; the answer's status, 0 when nothing answered."""
        from .universal_logout import outcome, send

        known = self._as_user(user)
        status = await send(self, endpoint_url, known, fmt)
        event = self._event(ev.UNIVERSAL_LOGOUT, self.admin.actor(), [known.actor()], self.api_session_id,
                            random_id("", 27))
        event["outcome"] = outcome(status)
        self._publish([event])
        return status

    def _as_user(self, user: User | str) -> User:
        found = user if isinstance(user, User) else self.user(user)
        if found is None:
            raise KeyError(f"no user {user!r}")
        return found

    def _event(self, event_type: str, actor: Actor, targets: list[Actor], external_session_id: str,
               transaction: str, *, ended: str | None = None) -> Event:
        return ev.make_event(event_type, published=self.clock.now(), actor=actor, targets=targets,
                             external_session_id=external_session_id, transaction_id=transaction,
                             ended_session_id=ended if self.report_ended_session_id else None)

    def _publish(self, events: list[Event]) -> None:
        """Into the System Log, and to every verified hook subscribed to the type, in this order, never waiting."""
        self.system_log.extend(events)
        for hook in self.hooks:
            chosen = [e for e in events if hook.wants(e["eventType"])]
            if chosen:
                self._hook_deliverer().submit(hook, chosen)


def _origin(value: str | None) -> str | None:
    if not value:
        return None
    try:
        url = URL(value)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url.origin())
