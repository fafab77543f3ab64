"""The operator's endpoints under the gateway prefix: the status page, its JSON, metrics, and policy switches.

Rules of this module:
- Everything here needs the operator token (`[admin] token`, from the environment). An API client sends it as
  `Authorization: Bearer …`; a browser signs in once with a form and gets a cookie (HttpOnly, SameSite=Strict,
  Path under the prefix) holding an HMAC of the token, never the token. Tokens compare in constant time.
- A form that changes something carries a CSRF token (an HMAC of the cookie) and must come from this origin when
  the browser says where it comes from: the Origin's scheme, host and port equal the gateway's own (its Host, and
  the scheme the connection or a trusted proxy's X-Forwarded-Proto says). The API (`PUT`, Bearer) needs neither,
  since a browser never sends a Bearer header on its own.
- Guessing the token is slowed down: failed sign-ins (a wrong token in the form or a Bearer header) are counted
  per client address and overall (`SignInThrottle`, on buckets.py's `Budget`; the client address as
  proxy/headers.py's `client_address` reads it); while either is used up, sign-ins get 429 with Retry-After
  and their token is not even compared.
- Every input is hostile until read: any cookie, token or form value (odd bytes, other digits than ASCII, another
  charset, multipart, deep JSON) is a 4xx, never an exception. Forms are urlencoded UTF-8 of at most 4 KiB.
- A policy switch takes effect on the next request and writes one audit line: who (bearer, the operator cookie, the
  CLI's user agent), the route, from and to. It is an override kept by the policy store (store/policies.py): this
  process's memory (configured values come back at restart), or Redis, where every replica takes it at once and a
  replica that starts adopts the fleet's overrides before it serves (`RoutePolicies.start`). Clearing it (DELETE,
  Bearer; the status page's "configured" button; `session-gateway admin policy ROUTE --clear`) returns the route to
  its configured policy everywhere, with an audit line too. An override for a route this configuration does not
  bind sessions on is ignored, and logged once.
- Without `[admin]` none of these endpoints exist (404).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from .buckets import Budget
from .enforcement.enforcer import Enforcer
from .metrics import PREFIX, Metrics
from .proxy.headers import client_address, is_trusted
from .revocation.bodies import NotJson, load_json, read_body
from .revocation.bus import SOURCES, RevocationBus
from .routing import Route, plain_host
from .sessions.sockets import OpenSockets
from .settings import IPNetwork, Mode
from .status import MODES, RevocationView, RouteView, login_html, status_data, status_html
from .store.policies import MAX_BY, MemoryPolicies, Override, PolicyStore
from .store.redis import RedisLink

audit = logging.getLogger("gateway.audit")
log = logging.getLogger("gateway.admin")

COOKIE = "gateway_operator"
COOKIE_LIFETIME = 8 * 3600
NO_STORE = {"Cache-Control": "no-store"}
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM = 4096
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_ISSUED = re.compile(r"[0-9]{1,12}")
_NOTICE = re.compile(r"Route [A-Za-z0-9_.-]{1,64}: policy (enforce|observe|off) -> (enforce|observe|off)"
                     r"(, as configured)?\.")
NOT_SHARED = ("the store (Redis) is away: this replica only for now; every replica takes it when the store is "
              "back")
CONFIGURED = "configured"  # the status page's value for "clear the override"


class Operator:
    """The operator token, as a Bearer header or as the signed cookie the sign-in form sets."""

    def __init__(self, token: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._prefix = prefix
        self._clock = self.clock = clock

    def check_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._token)

    def cookie_ok(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and self._cookie_ok(cookie)

    def cookie(self) -> str:
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac('operator:' + issued)}"

    def csrf(self, request: web.Request) -> str:
        return self._mac("csrf:" + request.cookies.get(COOKIE, ""))

    def csrf_ok(self, request: web.Request, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.csrf(request).encode())

    def _cookie_ok(self, cookie: str) -> bool:
        issued, _, mac = cookie.partition(".")
        if _ISSUED.fullmatch(issued) is None or self._clock() - int(issued) > COOKIE_LIFETIME:
            return False  # str.isdigit() would take "²1", which int() refuses
        return hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac("operator:" + issued).encode())

    def _mac(self, message: str) -> str:
        # a cookie header's odd bytes arrive as lone surrogates: hashed as they came, never an exception
        return hmac.new(self._token, message.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


class SignInThrottle:
    """Sign-ins with the operator token, per client address and overall (`Budget`: each a bucket of `burst` tries
    that refills at `rate` a second). A try reserves a token before its token is compared and gives it back when
    the token was right, so that only failed sign-ins count and no more tries than the buckets hold are compared
    at once. The table of addresses is bounded (the overall bucket holds whatever it forgets)."""

    def __init__(self, clock: Callable[[], float] = time.time, *, burst: float = 5, rate: float = 0.5,
                 overall_burst: float = 20, overall_rate: float = 2.0, max_addresses: int = 10_000) -> None:
        self._clock = clock
        self._budget = Budget(burst=burst, per_second=rate, shared_burst=overall_burst,
                              shared_per_second=overall_rate, now=clock(), max_clients=max_addresses)

    def reserve(self, address: str) -> float:
        """0 when a sign-in from `address` may be tried now (a token is reserved for it), else the seconds until
        one may."""
        now = self._clock()
        if self._budget.take(address, now):
            return 0.0
        return max(self._budget.wait(address, now), 1e-3)

    def not_a_guess(self, address: str) -> None:
        """The try reserved for `address` compared a right token, or none at all: it costs nothing."""
        self._budget.give_back(address)


class RoutePolicies:
    """Each route's policy now: its configured one, or the override the policy store holds, applied to the route's
    enforcer as soon as the store has it (a switch made here, or one taken from the fleet). Built whether or not
    `[admin]` is configured: a replica without the endpoints still follows the fleet's switches."""

    def __init__(self, routes: tuple[Route, ...], enforcers: dict[str, Enforcer], store: PolicyStore | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._routes, self._enforcers = routes, enforcers
        self.store: PolicyStore = store if store is not None else MemoryPolicies()
        self._clock = clock
        self._ignored: set[str] = set()
        self.store.on_change.append(self._apply)

    async def start(self) -> None:
        """Adopt the fleet's overrides: before the gateway serves."""
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    def follow(self, routes: tuple[Route, ...], enforcers: dict[str, Enforcer]) -> None:
        """A reload's routes and enforcers, each set to the override the store holds for it: runtime switches
        outlive a reload. An override of a route the new configuration lacks (or binds no sessions on) stays in
        the store unused, as the fleet's other replicas may still have the route; it applies again if the route
        comes back."""
        self._routes, self._enforcers = routes, enforcers
        for name, enforcer in enforcers.items():
            override = self.store.overrides.get(name)
            enforcer.mode = enforcer.sessions.mode if override is None else override.mode

    def override(self, name: str) -> Override | None:
        return self.store.overrides.get(name) if name in self._enforcers else None

    def unswitchable(self, name: str) -> web.Response | None:
        """The error answer for a route whose policy cannot be switched, or None."""
        if name in self._enforcers:
            return None
        known = any(r.name == name for r in self._routes)
        return _json_error(409 if known else 404, "this route binds no sessions (it has no [okta] policy)"
                           if known else "no such route")

    async def switch(self, name: str, mode: Mode, by: str) -> PolicySwitch:
        enforcer = self._enforcers[name]
        before = enforcer.mode
        shared = await self.store.put(name, Override(mode, by[:MAX_BY], self._clock(), before))
        return PolicySwitch(name, before, enforcer.mode, enforcer.sessions.mode, shared)

    async def clear(self, name: str) -> PolicySwitch:
        enforcer = self._enforcers[name]
        before = enforcer.mode
        shared = await self.store.clear(name, self._clock())
        return PolicySwitch(name, before, enforcer.mode, enforcer.sessions.mode, shared)

    def _apply(self, route: str, override: Override | None) -> None:
        enforcer = self._enforcers.get(route)
        if enforcer is None:
            if route not in self._ignored and len(self._ignored) < 1000:
                self._ignored.add(route)
                log.warning("policy override for route %r ignored: this configuration binds no sessions on it",
                            route[:64])
            return
        mode = enforcer.sessions.mode if override is None else override.mode
        if enforcer.mode is not mode:
            log.info("policy route=%s now %s (%s)", route, mode.value,
                     "configured" if override is None else f"switched by {override.by}")
        enforcer.mode = mode


class Admin:
    def __init__(self, operator: Operator, prefix: str, routes: tuple[Route, ...], enforcers: dict[str, Enforcer],
                 metrics: Metrics, bus: RevocationBus | None, sockets: OpenSockets, *,
                 trusted_proxies: Sequence[IPNetwork] = (), throttle: SignInThrottle | None = None,
                 policies: RoutePolicies | None = None, store: RedisLink | None = None) -> None:
        """policies: the routes' policies and where their overrides are kept (by default this process's memory)."""
        self._store = store
        self._operator, self._prefix, self._routes = operator, prefix, routes
        self._enforcers, self._metrics, self._bus, self._sockets = enforcers, metrics, bus, sockets
        self._trusted = tuple(trusted_proxies)
        self._throttle = throttle or SignInThrottle(operator.clock)
        self.policies = policies if policies is not None else RoutePolicies(routes, enforcers, clock=operator.clock)

    def follow(self, token: str | None, routes: tuple[Route, ...], enforcers: dict[str, Enforcer],
               trusted_proxies: Sequence[IPNetwork]) -> None:
        """A reload's operator token (signed-in browsers sign in again when it changed; None, [admin] removed:
        the token stays until a restart), routes and enforcers."""
        if token is not None and not self._operator.check_token(token):
            self._operator = Operator(token, self._prefix, self._operator.clock)
        self._routes, self._enforcers, self._trusted = routes, enforcers, tuple(trusted_proxies)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        p = self._prefix
        router.add_get(p + "status", self.status_page)
        router.add_get(p + "status.json", self.status_json)
        router.add_post(p + "login", self.login)
        router.add_get(p + "metrics", self.metrics)
        router.add_put(p + "admin/routes/{name}/policy", self.put_policy)
        router.add_post(p + "admin/routes/{name}/policy", self.post_policy)
        router.add_delete(p + "admin/routes/{name}/policy", self.delete_policy)

    # --- reading ---------------------------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        if self._who(request) is None:
            return _html(login_html(self._prefix), status=401)
        notice = request.query.get("notice", "")
        notice = notice if _NOTICE.fullmatch(notice) else ""  # only what post_policy says: no text of a link's
        page = status_html(self.data(), prefix=self._prefix, csrf=self._operator.csrf(request), notice=notice)
        return _html(page)

    async def status_json(self, request: web.Request) -> web.Response:
        if self._who(request) is None:
            return _refused()
        return web.json_response(self.data(), headers=NO_STORE)

    async def metrics(self, request: web.Request) -> web.Response:
        if self._who(request) is None:
            return _refused()
        return web.Response(body=generate_latest(self._metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})

    def data(self) -> dict[str, Any]:
        routes = [self._route_view(r) for r in self._routes]
        revocations = [RevocationView(a.revocation.source, a.revocation.reason, a.revocation.session_id,
                                      a.revocation.user_id, a.revocation.login, a.revocation.happened_at, a.acted_at)
                       for a in (self._bus.recent if self._bus is not None else ())]
        return status_data(routes, self._counters(), revocations)

    def _route_view(self, r: Route) -> RouteView:
        override = self.policies.override(r.name)
        return RouteView(r.name, r.host, r.path, r.upstream_origin, r.sessions.profile.name if r.sessions else None,
                         r.sessions.mode.value if r.sessions else "off",
                         self._enforcers[r.name].mode.value if r.name in self._enforcers else "off",
                         switched_by=override.by if override else None,
                         switched_at=override.at if override else None,
                         switched_from=override.before.value if override else None)

    def _counters(self) -> dict[str, Any]:
        m = self._metrics
        lookups = {result: count.value for result, count in m.lookups.items()}
        total = sum(lookups.values())
        served = lookups["hit"] + lookups["refresh"] + lookups["negative"]
        calls: dict[str, float] = {}
        for operation, outcome in m.okta_calls:
            calls[outcome] = calls.get(outcome, 0.0) + m.value(PREFIX + "okta_calls_total", operation=operation,
                                                               outcome=outcome)
        return {
            "requests": int(sum(c.value for c in m.requests.children.values())),
            "validations": int(total),
            "cache_hit_ratio": round(served / total, 4) if total else None,
            "okta_calls": int(sum(calls.values())),
            **{f"okta_calls_{k}": int(v) for k, v in calls.items() if v},
            "okta_rate_limit": int(m.value(PREFIX + "okta_rate_limit_limit")) or None,
            "okta_rate_limit_remaining": int(m.value(PREFIX + "okta_rate_limit_remaining")) or None,
            "revocations": int(sum(m.value(PREFIX + "revocations_total", source=s) for s in SOURCES)),
            "open_websockets": len(self._sockets),
            **self._store_state(),
        }

    def _store_state(self) -> dict[str, Any]:
        """The shared store as the operator needs to see it: there or away, what waits to be written, how late."""
        if self._store is None:
            return {"store": "memory (this process)"}
        m = self._metrics
        return {"store": "redis, up" if self._store.up else "redis, away",
                "store_buffered_revocations": int(m.value(PREFIX + "store_buffered_revocations")),
                "store_replay_lag_s": round(m.value(PREFIX + "store_replay_lag_seconds"), 3)}

    # --- switching a route's policy --------------------------------------------------------------------------

    async def put_policy(self, request: web.Request) -> web.Response:
        if self._who(request) != "bearer":
            return _refused()
        try:
            body = load_json(await read_body(request, MAX_FORM) or b"[]")  # too large: not an object
        except NotJson:
            return _json_error(400, "expected a JSON body such as {\"mode\": \"observe\"}")
        mode = body.get("mode") if isinstance(body, dict) else None
        return _switched(await self._switch(request.match_info["name"], mode, _bearer(request), request.remote))

    async def delete_policy(self, request: web.Request) -> web.Response:
        """Back to the configured policy, on every replica."""
        if self._who(request) != "bearer":
            return _refused()
        return _switched(await self._clear(request.match_info["name"], _bearer(request), request.remote))

    async def post_policy(self, request: web.Request) -> web.Response:
        if self._who(request) != "operator cookie":
            return _refused()
        form = await _form(request)
        if isinstance(form, web.Response):
            return form
        if not self._operator.csrf_ok(request, form.get("csrf", "")) or not self._same_origin(request):
            return _json_error(403, "the form did not come from this status page")
        name, mode, by = request.match_info["name"], form.get("mode"), "operator cookie (status page)"
        switched = await (self._clear(name, by, request.remote) if mode == CONFIGURED
                          else self._switch(name, mode, by, request.remote))
        if isinstance(switched, web.Response):
            return switched
        notice = f"Route {switched.route}: policy {switched.before.value} -> {switched.after.value}"
        notice += ", as configured." if mode == CONFIGURED else "."
        raise web.HTTPSeeOther(str(URL(self._prefix + "status").with_query(notice=notice)))

    async def _switch(self, name: str, mode: object, by: str, peer: str | None) -> PolicySwitch | web.Response:
        """Switch the route's policy and audit it; the error answer when it cannot be switched."""
        refused = self.policies.unswitchable(name)
        if refused is not None:
            return refused
        if mode not in MODES:
            return _json_error(400, f"mode must be one of {', '.join(MODES)}")
        switched = await self.policies.switch(name, Mode(str(mode)), by)
        audit.info("policy route=%s from=%s to=%s by=%s peer=%s", name, switched.before.value, switched.after.value,
                   by, peer or "-", extra=_policy_fields("policy_switch", name, switched, by))
        return switched

    async def _clear(self, name: str, by: str, peer: str | None) -> PolicySwitch | web.Response:
        """Return the route to its configured policy and audit it; the error answer when it has none to return to."""
        refused = self.policies.unswitchable(name)
        if refused is not None:
            return refused
        cleared = await self.policies.clear(name)
        audit.info("policy cleared route=%s from=%s to=%s by=%s peer=%s", name, cleared.before.value,
                   cleared.after.value, by, peer or "-", extra=_policy_fields("policy_clear", name, cleared, by))
        return cleared

    # --- the browser's sign-in -------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        address = self._client(request)
        wait = self._throttle.reserve(address)
        if wait > 0:
            raise _too_many(wait)
        form = await _form(request)
        if isinstance(form, web.Response):
            self._throttle.not_a_guess(address)
            return form
        if not self._same_origin(request) or not self._operator.check_token(form.get("token", "")):
            return _html(login_html(self._prefix, failed=True), status=401)  # the reserved try stays spent
        self._throttle.not_a_guess(address)
        response = web.HTTPSeeOther(self._prefix + "status")
        response.set_cookie(COOKIE, self._operator.cookie(), path=self._prefix, httponly=True, samesite="Strict",
                            secure=request.secure, max_age=COOKIE_LIFETIME)
        raise response


    # --- who is asking, and from where ------------------------------------------------------------------------

    def _who(self, request: web.Request) -> str | None:
        """"bearer" or "operator cookie" when the request carries the operator's credentials, else None. A wrong
        Bearer token counts as a failed sign-in; while sign-ins are held back, a Bearer request gets 429."""
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            address = self._client(request)
            wait = self._throttle.reserve(address)
            if wait > 0:
                raise _too_many(wait)
            if self._operator.check_token(presented.strip()):
                self._throttle.not_a_guess(address)
                return "bearer"
        return "operator cookie" if self._operator.cookie_ok(request) else None

    def _client(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers.items(), self._trusted)

    def _same_origin(self, request: web.Request) -> bool:
        """The form's Origin, when the browser sends one, is exactly this gateway's: scheme, host and port."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # no Origin (an old browser, a script): the SameSite=Strict cookie still guards
        scheme, sep, authority = origin.partition("://")
        own = self._own_origin(request)
        return bool(sep) and own is not None and _origin_key(scheme, authority) == own

    def _own_origin(self, request: web.Request) -> tuple[str, str, int] | None:
        scheme, authority = request.scheme, request.headers.get("Host")
        if is_trusted(request.remote, self._trusted):  # a TLS-terminating proxy says how the browser came
            proto = request.headers.get("X-Forwarded-Proto", "").partition(",")[0].strip().lower()
            scheme = proto if proto in ("http", "https") else scheme
            authority = request.headers.get("X-Forwarded-Host", "").partition(",")[0].strip() or authority
        return _origin_key(scheme, authority)


def _origin_key(scheme: str, authority: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, the port made explicit; None unless it is a plain one."""
    host = plain_host(authority)
    scheme = scheme.lower()
    if host is None or scheme not in ("http", "https"):
        return None
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name, port = name + "]", rest[1:]
    else:
        name, _, port = host.partition(":")
    return scheme, name.rstrip("."), int(port) if port else 443 if scheme == "https" else 80


@dataclass(frozen=True, slots=True)
class PolicySwitch:
    """One switch of a route's policy: from what (`before`) to what (`after`), and what its configuration says."""

    route: str
    before: Mode
    after: Mode
    configured: Mode
    shared: bool = True  # it reached the policy store (for Redis: every replica), not only this process


def _policy_fields(event: str, route: str, switched: PolicySwitch, by: str) -> dict[str, str]:
    """An audit line's facts as fields of a JSON line (the client is the request's, as on every line)."""
    return {"event": event, "route": route, "from": switched.before.value, "to": switched.after.value, "by": by}


def _bearer(request: web.Request) -> str:
    """Who a Bearer request is, for the audit line: odd bytes of its user agent escaped, never a logging error."""
    agent = request.headers.get("User-Agent", "no user agent")[:60].encode("ascii", "backslashreplace").decode()
    return f"bearer ({agent})"


def _switched(switched: PolicySwitch | web.Response) -> web.Response:
    if isinstance(switched, web.Response):
        return switched
    answer = {"route": switched.route, "from": switched.before.value, "to": switched.after.value,
              "configured": switched.configured.value}
    if not switched.shared:
        answer["warning"] = NOT_SHARED
    return web.json_response(answer, headers=NO_STORE)


async def _form(request: web.Request) -> dict[str, str] | web.Response:
    """A small urlencoded UTF-8 form (the first of each field), or the 4xx to answer instead."""
    if request.content_type != FORM_TYPE or (request.charset or "utf-8").lower() not in _UTF8:
        return _json_error(415, f"expected {FORM_TYPE} in UTF-8")
    body = await read_body(request, MAX_FORM)
    if body is None:
        return _json_error(413, "the form is too large")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16, errors="strict")
    except ValueError:  # bad UTF-8 (raw or %-escaped), too many fields, too large
        return _json_error(400, "the form could not be read")
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name, value)
    return form


def _too_many(wait: float) -> web.HTTPTooManyRequests:
    return web.HTTPTooManyRequests(
        text=json.dumps({"error": "too many failed sign-ins; try again later", "status": 429}),
        content_type="application/json", headers={"Retry-After": str(max(math.ceil(wait), 1)), **NO_STORE})


def _html(page: str, status: int = 200) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=NO_STORE)


def _refused() -> web.Response:
    return _json_error(401, "the operator token is needed")


def _json_error(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail, "status": status}, status=status, headers=NO_STORE)
