"""The operator's endpoints under the gateway prefix: the status page, its JSON, metrics, and policy switches.

Rules of this module:
- Everything here needs the operator token (`[admin] token`, from the environment). An API client sends it as
  `Authorization: Bearer …`; a browser signs in once with a form and gets a cookie (HttpOnly, SameSite=Strict,
  Path under the prefix) holding an HMAC of the token, never the token. Tokens compare in constant time.
- A form that changes something carries a CSRF token (an HMAC of the cookie) and must come from this origin when
  the browser says where it comes from; the API (`PUT`, Bearer) needs neither, since a browser never sends a
  Bearer header on its own.
- A policy switch takes effect on the next request, is held in memory (configured values come back at restart),
  and writes one audit line: who (bearer, the operator cookie, the CLI's user agent), the route, from and to.
- Without `[admin]` none of these endpoints exist (404).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from .metrics import Metrics
from .revocation.bus import SOURCES, RevocationBus
from .routing import Route
from .sessions.enforce import Enforcer
from .sessions.policy import Mode
from .sessions.sockets import OpenSockets
from .status import MODES, RevocationView, RouteView, login_html, status_data, status_html

audit = logging.getLogger("gateway.audit")

COOKIE = "gateway_operator"
COOKIE_LIFETIME = 8 * 3600
NO_STORE = {"Cache-Control": "no-store"}


class Operator:
    """The operator token, as a Bearer header or as the signed cookie the sign-in form sets."""

    def __init__(self, token: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._prefix = prefix
        self._clock = clock

    def check_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._token)

    def who(self, request: web.Request) -> str | None:
        """"bearer" or "operator cookie" when the request carries the operator's credentials, else None."""
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.check_token(presented.strip()):
            return "bearer"
        cookie = request.cookies.get(COOKIE, "")
        return "operator cookie" if cookie and self._cookie_ok(cookie) else None

    def cookie(self) -> str:
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac('operator:' + issued)}"

    def csrf(self, request: web.Request) -> str:
        return self._mac("csrf:" + request.cookies.get(COOKIE, ""))

    def csrf_ok(self, request: web.Request, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.csrf(request).encode())

    def _cookie_ok(self, cookie: str) -> bool:
        issued, _, mac = cookie.partition(".")
        if not issued.isdigit() or self._clock() - int(issued) > COOKIE_LIFETIME:
            return False
        return hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac("operator:" + issued).encode())

    def _mac(self, message: str) -> str:
        return hmac.new(self._token, message.encode(), hashlib.sha256).hexdigest()


class Admin:
    def __init__(self, operator: Operator, prefix: str, routes: tuple[Route, ...], enforcers: dict[str, Enforcer],
                 metrics: Metrics, bus: RevocationBus | None, sockets: OpenSockets) -> None:
        self._operator, self._prefix, self._routes = operator, prefix, routes
        self._enforcers, self._metrics, self._bus, self._sockets = enforcers, metrics, bus, sockets

    def add_routes(self, router: web.UrlDispatcher) -> None:
        p = self._prefix
        router.add_get(p + "status", self.status_page)
        router.add_get(p + "status.json", self.status_json)
        router.add_post(p + "login", self.login)
        router.add_get(p + "metrics", self.metrics)
        router.add_put(p + "admin/routes/{name}/policy", self.put_policy)
        router.add_post(p + "admin/routes/{name}/policy", self.post_policy)

    # --- reading ---------------------------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        if self._operator.who(request) is None:
            return _html(login_html(self._prefix), status=401)
        notice = request.query.get("notice", "")[:200]
        page = status_html(self.data(), prefix=self._prefix, csrf=self._operator.csrf(request), notice=notice)
        return _html(page)

    async def status_json(self, request: web.Request) -> web.Response:
        if self._operator.who(request) is None:
            return _refused()
        return web.json_response(self.data(), headers=NO_STORE)

    async def metrics(self, request: web.Request) -> web.Response:
        if self._operator.who(request) is None:
            return _refused()
        return web.Response(body=generate_latest(self._metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})

    def data(self) -> dict[str, Any]:
        routes = [RouteView(r.name, r.host, r.path, r.upstream_origin,
                            r.sessions.profile.name if r.sessions else None,
                            r.sessions.mode.value if r.sessions else "off",
                            self._enforcers[r.name].mode.value if r.name in self._enforcers else "off")
                  for r in self._routes]
        revocations = [RevocationView(a.revocation.source, a.revocation.reason, a.revocation.session_id,
                                      a.revocation.user_id, a.revocation.login, a.revocation.happened_at, a.acted_at)
                       for a in (self._bus.recent if self._bus is not None else ())]
        return status_data(routes, self._counters(), revocations)

    def _counters(self) -> dict[str, Any]:
        m = self._metrics
        lookups = {result: count.value for result, count in m.lookups.items()}
        total = sum(lookups.values())
        served = lookups["hit"] + lookups["refresh"] + lookups["negative"]
        calls: dict[str, float] = {}
        for operation, outcome in m.okta_calls:
            calls[outcome] = calls.get(outcome, 0.0) + m.value("gateway_okta_calls_total", operation=operation,
                                                               outcome=outcome)
        return {
            "requests": int(sum(c.value for c in m.requests.children.values())),
            "validations": int(total),
            "cache_hit_ratio": round(served / total, 4) if total else None,
            "okta_calls": int(sum(calls.values())),
            **{f"okta_calls_{k}": int(v) for k, v in calls.items() if v},
            "okta_rate_limit": int(m.value("gateway_okta_rate_limit_limit")) or None,
            "okta_rate_limit_remaining": int(m.value("gateway_okta_rate_limit_remaining")) or None,
            "revocations": int(sum(m.value("gateway_revocations_total", source=s) for s in SOURCES)),
            "open_websockets": len(self._sockets),
        }

    # --- switching a route's policy --------------------------------------------------------------------------

    async def put_policy(self, request: web.Request) -> web.Response:
        who = self._operator.who(request)
        if who != "bearer":
            return _refused()
        try:
            body = json.loads(await request.content.read(4096) or b"null")
        except (ValueError, UnicodeDecodeError):
            return _json_error(400, "expected a JSON body such as {\"mode\": \"observe\"}")
        mode = body.get("mode") if isinstance(body, dict) else None
        by = f"bearer ({request.headers.get('User-Agent', 'no user agent')[:60]})"
        return self._switch(request.match_info["name"], mode, by, request.remote)

    async def post_policy(self, request: web.Request) -> web.Response:
        if self._operator.who(request) != "operator cookie":
            return _refused()
        form = await request.post()
        if not self._operator.csrf_ok(request, str(form.get("csrf", ""))) or not _same_origin(request):
            return _json_error(403, "the form did not come from this status page")
        answer = self._switch(request.match_info["name"], form.get("mode"), "operator cookie (status page)",
                              request.remote)
        if answer.status != 200:
            return answer
        changed = json.loads(answer.text or "{}")
        notice = f"Route {changed['route']}: policy {changed['from']} -> {changed['to']}."
        raise web.HTTPSeeOther(str(URL(self._prefix + "status").with_query(notice=notice)))

    def _switch(self, name: str, mode: object, by: str, peer: str | None) -> web.Response:
        enforcer = self._enforcers.get(name)
        if enforcer is None:
            known = any(r.name == name for r in self._routes)
            return _json_error(409 if known else 404, "this route binds no sessions (it has no [okta] policy)"
                               if known else "no such route")
        if mode not in MODES:
            return _json_error(400, f"mode must be one of {', '.join(MODES)}")
        before = enforcer.mode
        enforcer.mode = Mode(str(mode))
        audit.info("policy route=%s from=%s to=%s by=%s peer=%s", name, before.value, enforcer.mode.value, by,
                   peer or "-")
        return web.json_response({"route": name, "from": before.value, "to": enforcer.mode.value,
                                  "configured": enforcer.sessions.mode.value}, headers=NO_STORE)

    # --- the browser's sign-in -------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not _same_origin(request) or not self._operator.check_token(str(form.get("token", ""))):
            return _html(login_html(self._prefix, failed=True), status=401)
        response = web.HTTPSeeOther(self._prefix + "status")
        response.set_cookie(COOKIE, self._operator.cookie(), path=self._prefix, httponly=True, samesite="Strict",
                            secure=request.secure, max_age=COOKIE_LIFETIME)
        raise response


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None  # no Origin (an old browser, a script): the SameSite=Strict cookie still guards
    try:
        return URL(origin).raw_authority.lower() == request.host.lower()
    except ValueError:
        return False


def _html(page: str, status: int = 200) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=NO_STORE)


def _refused() -> web.Response:
    return _json_error(401, "the operator token is needed")


def _json_error(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail, "status": status}, status=status, headers=NO_STORE)
