"""Logout from the app's side ends the Okta session too, and sends the browser through Okta's own sign-out.

When a route's logout path is asked for (its methods only; HEAD with GET, since a HEAD is a GET without the body
and servlet containers run the GET handler for it):
1. the app runs its own logout (the request is forwarded with the user's app cookies; a refusal, 4xx or 5xx, is
   passed on and nothing else happens), or with `logout_answer = "gateway"` the gateway calls the app's logout
   URL server-side instead;
2. the bound Okta session is ended with the API token (`DELETE /api/v1/sessions/{id}`; with `logout_scope =
   "user"` every session of the user), and once Okta confirmed the end (204, or 404: already gone) the revocation
   goes through the bus. An end Okta did not confirm (down, 429, 5xx) is no revocation: SSO would issue the same
   live session again and a tombstone on it would end each new app session at once (a sign-in loop). It is
   retried in the background, a bounded number of times (`RETRY_DELAYS`), and revoked when a retry is confirmed;
3. the answer expires the app's cookies (and passes on those the app's logout set) and the binding, and redirects
   the browser to Okta's `/login/signout?fromURI=…`, so that Okta's cookie in that browser is cleared too. No step
   needs a CORS call or a third-party cookie; the next person on that browser signs in as themselves.
The logout path is matched as the app's container maps it (`logout_form`: `;params`, `//`, a trailing slash,
percent-encoding, dot segments, case), since a logout the app runs and the gateway misses leaves the Okta session
alive for the next user on the browser. The after-logout URL is the route's; the request may name another only in
the `return` parameter and only under one of the route's allowed prefixes (no open redirect).
`after_logout_target()` is that rule, pure. A relative one is made absolute with the request's Host only when that
is a plain `host[:port]` (`plain_host`); a logout with any other Host is refused (400) before anything happens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import web
from yarl import URL

from ..okta.client import InvalidId, OktaClient, OktaError, UserUnknown
from ..proxy.http import continue_if_expected
from ..routing import plain_host, servlet_path
from ..sessions.app_side import MAX_LOGOUT_BODY, AppSide
from ..sessions.binding import Binding
from ..sessions.cookies import only
from ..settings import LogoutRules
from .bodies import read_body
from .bus import Revocation, RevocationBus

log = logging.getLogger("gateway.revocation")

MAX_ENDED = 100_000  # sessions (or users) whose end at logout Okta confirmed, remembered to skip replays
RETRY_DELAYS = (1.0, 5.0, 30.0, 65.0)  # seconds before each retry of a failed Okta end: past one 60 s rate window
MAX_PENDING_RETRIES = 10_000


def after_logout_target(rules: LogoutRules, query: Mapping[str, str], origin: str) -> str:
    """The absolute URL Okta sends the browser to after its sign-out."""
    asked = query.get(rules.param)
    if asked and any(asked.startswith(prefix) for prefix in rules.allowed) and _plain_url(asked):
        return asked
    target = rules.after_logout_url
    return origin + target if target.startswith("/") else target


def okta_sign_out_url(org_url: URL, after: str) -> str:
    return str(org_url.with_path("/login/signout").with_query({"fromURI": after}))


def _plain_url(value: str) -> bool:
    """An http(s) URL a browser reads as written: no backslash, control character or whitespace (which browsers
    drop or rewrite), no credentials, and no dot segment (`/goodbye/../admin`, `%2e%2e`) that would take its path
    out of the allowed prefix once resolved."""
    if "\\" in value or not value.isprintable() or any(c.isspace() for c in value):
        return False
    try:
        url = URL(value)
    except ValueError:
        return False
    path = value.split("#", 1)[0].split("?", 1)[0]
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        return False
    return url.scheme in ("http", "https") and bool(url.host) and url.user is None


def logout_form(raw_path: str) -> str:
    """A request path as servlet containers (and IIS) map it, for comparing with the logout paths: the servlet
    reading (`servlet_path`) with `\\` read as `/`, then any trailing slash dropped and the letters lower-cased.

    It reads more paths as the logout than a given container would (case, `%2F`); with `logout_answer = "app"`
    the app's own answer still decides (a 4xx ends nothing), and a logout too many only signs the user out.
    """
    return servlet_path(raw_path, backslash_is_slash=True).rstrip("/").lower() or "/"


class LogoutInterceptor:
    def __init__(self, rules: LogoutRules, paths: tuple[str, ...], app: AppSide, bus: RevocationBus,
                 okta: OktaClient, org_url: URL) -> None:
        self.rules, self._paths, self._app = rules, frozenset(paths), app
        self._bus, self._okta, self._org_url = bus, okta, org_url
        self._methods = frozenset(rules.methods) | ({"HEAD"} if "GET" in rules.methods else set())
        self._forms = frozenset(logout_form(p) for p in paths)
        self._words = tuple({form.rpartition("/")[2] for form in self._forms})
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._ending: dict[str, asyncio.Task[None]] = {}  # the one Okta end in flight per session (or user)
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()  # ends Okta confirmed

    def wants(self, request: web.Request) -> bool:
        """The logout as the app reads its path (`logout_form`). On every request: an exact path is the common
        logout, and a path without the last segment of a logout path in it (decoded, any case) is none."""
        if request.method not in self._methods:
            return False
        path = request.path
        if path in self._paths:
            return True
        if self.never_wants(path):
            return False
        return logout_form(request.rel_url.raw_path) in self._forms

    def never_wants(self, path: str) -> bool:
        """Whether no request of this decoded path is the logout, whatever its method and its raw spelling: it is
        none of the logout paths and has the last segment of none in it (any case)."""
        if path in self._paths:
            return False
        lowered = path.lower()
        return not any(word in lowered for word in self._words)

    async def __call__(self, request: web.Request, cookies: dict[str, str],
                       binding: Binding | None) -> web.StreamResponse:
        host = plain_host(request.headers.get("Host"))
        if host is None:  # no browser sends one: the after-logout URL must not be built from it
            return web.Response(status=400, text="A plain Host header (host[:port]) is needed.\n",
                                headers={"Cache-Control": "no-store"})
        app_cookies = only(cookies, self._app.present(cookies))
        passed_on: list[str] = []
        if self.rules.answer == "app":
            if request.body_exists:
                await continue_if_expected(request)
            body = await read_body(request, MAX_LOGOUT_BODY) if request.body_exists else None
            if request.body_exists and body is None:
                return web.Response(status=413, text="The logout request is too large.\n",
                                    headers={"Cache-Control": "no-store"})
            answer = await self._app.call(request, request.method, request.raw_path, app_cookies, body,
                                          request.headers.get("Content-Type"))
            if answer is not None and answer[0] >= 400:
                return web.Response(status=answer[0], text="The application refused the logout.\n",
                                    headers={"Cache-Control": "no-store"})
            passed_on = answer[1] if answer is not None else []
        else:
            await self._app.logout(request, cookies)
        if binding is not None:
            await self._end_okta(binding)
        origin = f"{request.scheme}://{host}"
        response = web.Response(status=302, headers={
            "Location": okta_sign_out_url(self._org_url, after_logout_target(self.rules, request.query, origin)),
            "Cache-Control": "no-store"})
        for header in passed_on:
            response.headers.add("Set-Cookie", header)
        self._app.expire(request, response, cookies)
        return response

    async def _end_okta(self, binding: Binding) -> None:
        """End the binding's Okta session (or the user's), and revoke it once Okta confirmed the end.

        A failed end (Okta down, 429, 5xx) is not recorded as a revocation: SSO would issue the same live session
        again and a tombstone on it would end every new app session at once. It is retried in the background a
        few times instead; the browser is sent through Okta's sign-out either way, which ends its session there.
        The binding is stateless, so its cookies can be replayed: there is at most one end in flight (or waiting
        for a retry) per session (per user with logout_scope = "user"), and one whose end Okta confirmed ends
        nothing again (checked here with no wait before the end starts): replays of one logout cost one Okta call,
        not one each. That memo is this interceptor's own, not the revocation store: a binding revoked some other
        way (Universal Logout, which leaves Okta's session alive) must still end its Okta session at logout.
        """
        key = self._key(binding)
        if key in self._ended or key in self._retries:  # ended already, or its end waits for a retry
            return
        ending = self._ending.get(key)
        if ending is None:
            ending = asyncio.get_running_loop().create_task(self._end_once(binding))
            self._ending[key] = ending
            ending.add_done_callback(lambda _: self._ending.pop(key, None))
        await asyncio.shield(ending)  # a replay while it is in flight waits for it, and sends nothing

    async def _end_once(self, binding: Binding) -> None:
        failure = await self._try_end(binding)
        if failure is None:
            self._revoke(binding)
        elif not isinstance(failure, InvalidId):
            self._retry_later(binding)

    async def _try_end(self, binding: Binding) -> OktaError | None:
        """None once Okta confirmed the end (204, or 404: already gone); else what went wrong."""
        try:
            if self.rules.scope == "user":
                await self._okta.end_user_sessions(binding.user_id)
            else:
                await self._okta.close_session(binding.session_id)
        except UserUnknown:  # a user Okta no longer has has no sessions left
            return None
        except OktaError as exc:
            log.warning("ending the Okta session at app logout failed: %s", exc)
            return exc
        return None

    def _key(self, binding: Binding) -> str:
        """What one end at Okta ends: the user's sessions, or the binding's one."""
        return binding.user_id if self.rules.scope == "user" else binding.session_id

    def _revoke(self, binding: Binding) -> None:
        key = self._key(binding)
        self._ended[key] = None
        if len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)
        self._bus.publish(Revocation("app_logout", "app_logout", binding.session_id, binding.user_id, binding.login,
                                     all_sessions=self.rules.scope == "user"))

    def _retry_later(self, binding: Binding) -> None:
        key = self._key(binding)
        if key in self._retries:
            return
        if len(self._retries) >= MAX_PENDING_RETRIES:
            log.warning("too many Okta ends at app logout wait for a retry; this one is not retried")
            return
        task = asyncio.get_running_loop().create_task(self._retry(binding))
        self._retries[key] = task
        task.add_done_callback(lambda _: self._retries.pop(key, None))

    async def _retry(self, binding: Binding) -> None:
        delays = RETRY_DELAYS  # read when the retries start, not when the interceptor was made
        for delay in delays:
            await asyncio.sleep(delay)
            failure = await self._try_end(binding)
            if failure is None:
                self._revoke(binding)
                return
            if isinstance(failure, InvalidId):
                return
        log.warning("ending the Okta session at app logout failed %d more times; given up (its browser was sent "
                    "through Okta's sign-out)", len(delays))

    async def close(self) -> None:
        """Stop the retries still waiting (at shutdown)."""
        tasks = [*self._retries.values(), *self._ending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
