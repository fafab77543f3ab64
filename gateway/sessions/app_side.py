"""What the gateway does to the app's own session: expire its cookies in an answer, and call the app server-side.

Ending a session (enforcement/enforcer.py) and intercepting the app's logout (revocation/logout.py) both need it.
The app's cookies are expired with the Path and Domain the app set them with, which the gateway learns from the app's
Set-Cookie headers (`learn()`), falling back to the route's settings. Calls to the app go through the route's
upstream pool with only the user's app cookies, never the gateway's own.

The server-side logout is called once per app cookie value (a bounded memory of the values already logged out).
For app sessions no binding vouches for (`limited`), at most `LOGOUTS_PER_SECOND` a second (a burst of as
many): every unbound request ends its app session, so without this a flood of requests with made-up cookies
would be a flood of logout calls to the app. A call left out changes nothing for the browser, whose cookies are
expired and whose requests are refused all the same. A bound session's logout never waits on that limit: a
flood of unbound requests must not let a revoked session's server side live on.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from aiohttp import web

from ..buckets import TokenBucket
from ..proxy.headers import request_headers_for_upstream
from ..proxy.http import body_once, with_request_id
from ..proxy.upstream import UpstreamPools
from ..routing import Route
from ..settings import RouteSessions
from .binding_cookie import BindingStorage
from .cookies import SetCookie, app_cookie_names, matches, only

log = logging.getLogger("gateway.sessions")

MAX_LOGOUT_BODY = 64 * 1024
LOGOUTS_PER_SECOND = 20.0
_LOGGED_OUT_KEPT = 10_000  # hashes of the app cookies already logged out, the oldest forgotten first


class AppSide:
    def __init__(self, route: Route, sessions: RouteSessions, pools: UpstreamPools, storage: BindingStorage) -> None:
        self.route, self._sessions, self._pools, self._storage = route, sessions, pools, storage
        self._profile = sessions.profile
        self._learned: dict[str, tuple[str | None, str | None]] = {}  # app cookie -> (Path, Domain) as set
        self._logged_out: OrderedDict[int, None] = OrderedDict()
        self._unbound_logouts = TokenBucket(LOGOUTS_PER_SECOND, LOGOUTS_PER_SECOND, time.monotonic())

    def is_app_cookie(self, name: str) -> bool:
        return matches(name, self._profile.session_cookies)

    def learn(self, set_cookie: SetCookie) -> None:
        self._learned[set_cookie.name] = (set_cookie.path, set_cookie.domain)

    def present(self, cookies: dict[str, str]) -> list[str]:
        return app_cookie_names(cookies, self._profile.session_cookies)

    def expire(self, request: web.BaseRequest, response: web.StreamResponse, cookies: dict[str, str]) -> None:
        """Expire, in this answer, every app session cookie the browser sent, and the gateway's binding."""
        for name in self.present(cookies):
            path, domain = self._learned.get(name, (None, None))
            response.del_cookie(name, path=path or self._profile.cookie_path,
                                domain=domain or self._sessions.app_cookie_domain)
        if self._sessions.cookie.name in cookies:
            self._storage.write(request, response, None)

    async def logout(self, request: web.Request, cookies: dict[str, str], *, limited: bool = True) -> None:
        """Call the app's own logout URL with the user's app cookies, so that its server-side session dies too
        (once per app cookie value; within the rate when `limited`: a session no binding vouches for)."""
        present = self.present(cookies)
        if self._profile.logout_url is None or not present:
            return
        app_cookies = only(cookies, present)
        if not self._may_log_out(app_cookies, limited):
            log.debug("route %s: the app's logout was not called (called before, or over the rate)", self.route.name)
            return
        await self.call(request, "GET", self._profile.logout_url, app_cookies)

    def _may_log_out(self, app_cookies: str, limited: bool) -> bool:
        key = hash(app_cookies)
        if key in self._logged_out or (limited and not self._unbound_logouts.take(time.monotonic())):
            return False
        self._logged_out[key] = None
        if len(self._logged_out) > _LOGGED_OUT_KEPT:
            self._logged_out.popitem(last=False)
        return True

    async def call(self, request: web.Request, method: str, path: str, app_cookies: str,
                   body: bytes | None = None, content_type: str | None = None) -> tuple[int, list[str]] | None:
        """(status, Set-Cookie headers) of the app's answer to this request, its body read and dropped; None when
        the app could not be asked (the log says why)."""
        target = self.route.upstream_target(path)
        if target is None:
            return None
        sent: list[tuple[str, str]] = [("Cookie", app_cookies), ("Accept", "text/html")]
        if body is not None:
            sent += [("Content-Length", str(len(body))), ("Content-Type", content_type or "")]
        headers = with_request_id(request_headers_for_upstream(
            sent, peer=request.remote, scheme=request.scheme, host=request.headers.get("Host", ""),
            upstream_host=self.route.upstream.raw_authority, preserve_host=self.route.preserve_host,
            trusted_proxies=(),
        ))
        try:
            answer = await self._pools.http(self.route).request(
                method, target, headers, body_once(body) if body is not None else None,
                body_length=len(body) if body is not None else None, connect_timeout=self.route.connect_timeout,
                read_timeout=self.route.read_timeout)
            try:
                async for _ in answer.iter_body():
                    pass
                return answer.status, [v for k, v in answer.headers if k.lower() == "set-cookie"]
            finally:
                answer.close()
        except Exception as exc:  # the browser's answer does not depend on it; the log says so
            log.warning("route %s: calling the app's %s %s failed: %s", self.route.name, method, path,
                        type(exc).__name__)
            return None
