"""Session enforcement on a route: identify, validate, decide(), act. The rules are in policy.py; this is the shell.

Per request of a route whose policy is not `off`:
1. read the cookies once (cookies.py); at the app's ACS, a sign-in (sign_in.py: forwarded first, bound once
   the app accepted it; an id Okta must be asked about spends the gateway's budget of unknown ids, shared and per
   client, given back when Okta knows the session);
2. the binding cookie counts only if it opens with one of our keys, was sealed for this route, and belongs to the
   app session cookie sent, read as every server would read it (cookies.py: an ambiguous one binds nothing);
3. the session-id sources (Okta's cookie, a trusted header) may name a session: it must be the bound one, and
   a claim binds nothing on its own (policy.py says why);
4. the named session is validated through the cache, and decide() says what to do;
5. forward (the binding cookie never reaches the app; the binding is re-sealed on the answer when it must be:
   activity, key rotation, the app rotating its session cookie; dropped when the app ends its own
   session), or end the app session: expire its cookies and ours, call its logout server-side, close its open
   WebSockets, and send a browser to sign-in or answer an API call 401; or 503 while Okta cannot say.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from aiohttp import web
from yarl import URL

from .. import answers
from ..buckets import Budget
from ..metrics import Metrics
from ..plugin import RequestInfo, SidSource, SignInReader, make_source
from ..proxy.http import Forwarder, error_response
from ..proxy.relayed import RelayedAnswer
from ..proxy.upstream import UpstreamPools
from ..proxy.websocket import WebSocketForwarder, is_websocket_upgrade
from ..revocation.bus import Revocation, RevocationBus
from ..revocation.logout import LogoutInterceptor
from ..routing import Route
from ..sessions.app_side import AppSide
from ..sessions.binding import Binding, Opened, Remembered
from ..sessions.binding_cookie import BindingStorage
from ..sessions.cache import Entry
from ..sessions.cookies import AMBIGUOUS, AppCookieReader, cookie_header_for_app, parse_cookie_header, read_set_cookie
from ..sessions.policy import (
    ENDED_IN_OKTA,
    FORWARD,
    NEVER,
    Action,
    Decision,
    Facts,
    decide,
    holds_until,
    session_to_validate,
)
from ..sessions.sockets import OpenSockets
from ..sessions.validation import SessionValidator
from ..settings import IPNetwork, Mode, RouteSessions, Unbound
from ..store import user_keys
from .sign_in import SignIns

log = logging.getLogger("gateway.sessions")

SESSION_ENDED = "Your session has ended. Sign in again."
OKTA_UNAVAILABLE = "Sign-in cannot be checked right now. Try again in a moment."
_MAX_EXTENDED = 100_000
_MAX_REFUSED_REVOKED = 10_000
SEEN_BYTES = 8 * 1024 * 1024  # what a route keeps of the Cookie headers it has read
_SEEN_FIXED = 700  # a remembered header's _Seen, tuple, dict slots and the Opened it shares with the codec's memo
_PER_COOKIE = 130  # a parsed cookie's two str objects and its dict slot
PLAIN_PATH_BYTES = 1024 * 1024  # what a route keeps of the paths it found to be neither its ACS nor a logout
_PLAIN_SLOT = 100  # a remembered path's dict slot


class _Seen:
    """What one Cookie header says, and the last plain forward decided for it: until when it holds, from which
    cache entry, in which mode."""

    __slots__ = ("cookies", "app", "opened", "binding", "for_app", "until", "entry", "session_id", "mode",
                 "generation")

    def __init__(self, cookies: dict[str, str], app: tuple[str, str] | None, opened: Opened | None,
                 for_app: str) -> None:
        self.cookies, self.app, self.opened, self.for_app = cookies, app, opened, for_app
        self.binding = opened.binding if opened is not None else None
        self.until = NEVER
        self.entry: Entry | None = None
        self.session_id = ""  # the entry's
        self.mode = Mode.OFF
        self.generation = -1

    def remember(self, until: float, entry: Entry, session_id: str, mode: Mode, generation: int) -> None:
        self.until, self.entry, self.session_id, self.mode, self.generation = until, entry, session_id, mode, generation


class Enforcer:
    """Enforces one route's binding policy. `mode` may be switched while the gateway runs."""

    def __init__(
        self, route: Route, sessions: RouteSessions, *, validator: SessionValidator, storage: BindingStorage,
        http: Forwarder, websocket: WebSocketForwarder, pools: UpstreamPools, sockets: OpenSockets,
        bus: RevocationBus, okta_url: URL, metrics: Metrics, unknown_ids: Budget,
        trusted_proxies: Sequence[IPNetwork] = (), clock: Callable[[], float] = time.time,
    ) -> None:
        self.route, self.sessions, self.mode = route, sessions, sessions.mode
        self._validator, self._storage, self._http, self._ws = validator, storage, http, websocket
        self._pools, self._sockets, self._metrics, self._clock = pools, sockets, metrics, clock
        self._bus, self._store = bus, bus.store
        made = [make_source(name, sessions.source_options) for name in sessions.sources]
        self._identifiers = [s for s in made if isinstance(s, SidSource)]
        self._reader = next((s for s in made if isinstance(s, SignInReader)), None)
        if self._reader is None and _ends_what_it_cannot_bind(sessions):
            log.warning("route %s: none of its sid_sources reads the sign-in (add \"saml\"), so no app session can be "
                        "bound and unbound = \"relogin\" ends every one", route.name)
        self._profile = sessions.profile
        self._own = sessions.cookie.name
        self._app_cookie = AppCookieReader(self._profile.session_cookies)
        self.app = AppSide(route, sessions, pools, storage)
        self._logout = LogoutInterceptor(sessions.logout, self._profile.logout_paths, self.app, bus,
                                         validator.client, okta_url)
        self._sign_ins = None if self._reader is None else SignIns(
            route, self._reader, saml_attribute=sessions.source_options.saml_attribute, validator=validator,
            storage=storage, http=http, app=self.app, store=self._store, metrics=metrics, unknown_ids=unknown_ids,
            trusted_proxies=trusted_proxies, clock=clock)
        self._extended: dict[str, float] = {}
        self._refused_revoked: dict[str, None] = {}  # revoked sessions refused here (oldest first), bounded
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_memo: Remembered[str, _Seen] = Remembered(SEEN_BYTES)
        self._cookie_headers = self._seen_memo.entries
        self._plain_memo: Remembered[str, None] = Remembered(PLAIN_PATH_BYTES)
        self._plain_paths = self._plain_memo.entries
        self._forwarded = metrics.decisions.get(route.name, FORWARD.action, FORWARD.reason)
        self._hit = metrics.lookups["hit"]
        self._held = validator.cache.entries

    def __call__(self, request: web.Request) -> Awaitable[web.StreamResponse]:
        """The request's answer, to be awaited. A warm hit (the same Cookie header as a plain forward whose facts
        still hold) is the forwarder's own coroutine, with no frame of ours around it: on that path every call
        shows in the gateway's cost per request, so its checks are written out here rather than called."""
        mode = self.mode
        if mode is Mode.OFF:
            return self._forward_plain(request)
        header = request.headers.get("Cookie", "")
        seen = self._cookie_headers.get(header) or self._seen(header)
        path = request.path
        if path not in self._plain_paths and (special := self._special(request, seen, path, mode)) is not None:
            return special
        upgrade = is_websocket_upgrade(request)
        if (seen.mode is mode and seen.generation == self._store.generation and not upgrade
                and (entry := seen.entry) is not None and self._clock() < seen.until
                and self._held.get(seen.session_id) is entry):
            # the same facts as the last request: forward, counted as a cache hit and a forward, as the long way
            # would; the answer is looked at only when it sets a cookie
            self._hit.value += 1.0
            self._forwarded.value += 1.0

            def answered(response: RelayedAnswer, request: web.Request = request, seen: _Seen = seen,
                         enforcer: Enforcer = self) -> None:  # defaults, not a closure: no cells in this frame
                if response.app_sets_cookies:
                    enforcer._on_answer(request, response, None, seen.binding, seen.app)

            return self._http(request, self.route, cookie=seen.for_app, before_answer=answered)
        return self._decided(request, seen, mode, upgrade)

    def _special(self, request: web.Request, seen: _Seen, path: str,
                 mode: Mode) -> Awaitable[web.StreamResponse] | None:
        """The answer of a sign-in at the ACS or of the app's logout; None (and the path remembered as plain when
        it never is either) for any other request."""
        if request.method == "POST" and self._sign_ins is not None and path == self._profile.acs_path:
            return self._sign_ins(request, seen.for_app)
        if mode is Mode.ENFORCE and self._logout.wants(request):
            self._metrics.decisions.get(self.route.name, "logout", "app_logout").inc()
            return self._logout(request, seen.cookies, seen.binding)
        self._plain(path)
        return None

    async def _decided(self, request: web.Request, seen: _Seen, mode: Mode, upgrade: bool) -> web.StreamResponse:
        """The long way: the facts, the validation, decide(), and what it says."""
        cookies, app, opened, for_app, binding = seen.cookies, seen.app, seen.opened, seen.for_app, seen.binding
        generation = self._store.generation
        facts = self._facts(request, cookies, app is not None, opened)
        session_id = session_to_validate(facts)
        validation = None
        if session_id is not None:
            validation = await self._validator.validate(session_id, self.route.grace)
            facts.okta = validation.view
            facts.last_extended = self._extended.get(session_id)
        now = self._clock()
        decision = decide(facts, self.sessions.rules, mode, now)
        if decision is FORWARD:
            self._forwarded.inc()
            if validation is not None and not self._identifiers:
                self._remember(seen, facts, validation.entry, mode, generation)
        else:
            self._metrics.decisions.get(self.route.name, decision.action, decision.reason).inc()
        if decision.action is Action.END:
            self._on_end(facts, decision.reason, now)
            return await self._end(request, cookies, binding, decision.reason)
        if decision.action is Action.UNAVAILABLE:
            return error_response(request, 503, OKTA_UNAVAILABLE)
        if decision.would is not Action.FORWARD:
            self._metrics.would_end.get(self.route.name, decision.reason).inc()
            log.debug("route %s: observe: enforce would %s (%s)", self.route.name, decision.would, decision.reason)
        if decision.extend_okta and session_id is not None:
            self._extend(session_id, now)
        reseal = self._resealed(decision, binding, app, now)
        if upgrade:
            keys = user_keys(binding.user_id, binding.login) if binding is not None else ()
            return await self._websocket(request, for_app, session_id, keys)
        return await self._http(request, self.route, cookie=for_app,
                                before_answer=lambda response: self._on_answer(request, response, reseal, binding,
                                                                               app))

    # --- forwarding --------------------------------------------------------------------------------------

    async def _forward_plain(self, request: web.Request) -> web.StreamResponse:
        if is_websocket_upgrade(request):
            return await self._ws(request, self.route)
        return await self._http(request, self.route)

    async def _websocket(self, request: web.Request, cookie: str, session_id: str | None,
                         user_keys: tuple[str, ...]) -> web.StreamResponse:
        if session_id is None:
            return await self._ws(request, self.route, cookie=cookie)
        stop = self._sockets.opened(session_id, user_keys)
        try:
            return await self._ws(request, self.route, cookie=cookie, stop=stop)
        finally:
            self._sockets.closed(session_id, stop)

    def _facts(self, request: web.Request, cookies: dict[str, str], has_app_session: bool,
               opened: Opened | None) -> Facts:
        """What the request, the binding and the revocation store say, before Okta is asked anything."""
        claimed = self._claimed(request, cookies) if self._identifiers else None
        if opened is None:
            return Facts(has_app_session=has_app_session, binding=None, claimed_session_id=claimed)
        binding, store = opened.binding, self._store
        return Facts(has_app_session=has_app_session, binding=binding, stale_key=opened.stale_key,
                     claimed_session_id=claimed, session_ended_at=store.session_ended(binding.session_id),
                     user_revoked_before=max(store.user_ended_before(key)
                                             for key in user_keys(binding.user_id, binding.login)))

    def _on_end(self, facts: Facts, reason: str, now: float) -> None:
        """A bound session found ended in Okta is a revocation too (its source: the lookup); a revoked one that
        was still asked for shows, on its first refused request, how long after the revocation it could still
        have been served (the time its source gave: the tombstone's, or the user's watermark). A lookup's
        revocation has no such time (Okta's 404 does not say when), so it is not observed."""
        binding = facts.binding
        if binding is None:
            return
        if reason in ENDED_IN_OKTA:
            self._bus.publish(Revocation("lookup", reason, binding.session_id, binding.user_id, None))
        elif reason == "revoked":
            revoked_at = facts.session_ended_at if facts.session_ended_at is not None else facts.user_revoked_before
            if revoked_at and binding.session_id not in self._refused_revoked:
                self._refused_revoked[binding.session_id] = None
                if len(self._refused_revoked) > _MAX_REFUSED_REVOKED:
                    del self._refused_revoked[next(iter(self._refused_revoked))]
                self._metrics.revoked_served.observe(max(now - revoked_at, 0.0))

    def _seen(self, header: str) -> _Seen:
        """What a Cookie header says: its cookies, the app session cookie, the binding that belongs to it, and the
        header the app gets. The app session cookie is read from the header the app gets, as the app will read
        it, or AMBIGUOUS (then no binding belongs to it). A browser sends the same header request after request:
        remembered within the route's byte budget, unless it carries an app session with no binding of ours
        (ended at once, or forwarded unbound: nothing to save, and a client could vary it at will)."""
        seen = self._cookie_headers.get(header)
        if seen is None:
            cookies = parse_cookie_header(header)
            for_app = cookie_header_for_app(header, self._own)
            app = self._app_cookie.read(for_app)
            opened = self._storage.open_for(cookies.get(self._own), app) if app is not AMBIGUOUS else None
            seen = _Seen(cookies, app, opened, for_app)
            if app is None or opened is not None:
                size = (2 * sys.getsizeof(header) + (sys.getsizeof(for_app) if for_app is not header else 0)
                        + sys.getsizeof(cookies) + len(cookies) * _PER_COOKIE + _SEEN_FIXED)
                self._seen_memo.remember(header, seen, size)
        return seen

    def _remember(self, seen: _Seen, facts: Facts, entry: Entry | None, mode: Mode, generation: int) -> None:
        """What a plain forward decided, for the next request with the same Cookie header: it holds while the
        validation's entry of a live session is the one cached and fresh, and no rule of time has turned. A route
        that reads a session id from the request itself (`sid_sources` other than the sign-in) remembers nothing:
        each request may claim another."""
        if entry is not None and entry.session is not None:
            seen.remember(min(holds_until(facts, self.sessions.rules), entry.fresh_until), entry, entry.session.id,
                          mode, generation)

    def _plain(self, path: str) -> None:
        """Remember a decoded path that is neither the ACS nor, by any method or spelling, the logout: the next
        request of it is neither, found with one look-up. A client may vary paths at will: the memo is bounded."""
        if path != self._profile.acs_path and self._logout.never_wants(path):
            self._plain_memo.remember(path, None, sys.getsizeof(path) + _PLAIN_SLOT)

    def _resealed(self, decision: Decision, binding: Binding | None, app: tuple[str, str] | None,
                  now: float) -> Binding | None:
        """The binding to seal on the answer, as the decision asks (touch, rekey), or None to leave the browser's."""
        if binding is None or app is None or not (decision.touch or decision.rekey):
            return None
        if decision.rekey:
            binding = replace(binding, app_fingerprint=self._storage.codec.fingerprint(*app))
        return binding.touched(now) if decision.touch else binding

    def _on_answer(self, request: web.Request, response: RelayedAnswer, reseal: Binding | None,
                   binding: Binding | None, app: tuple[str, str] | None) -> None:
        """The app's answer, before it is sent: follow its session cookie, and re-seal or drop our binding."""
        base = reseal
        for header in response.set_cookie_headers():
            set_cookie = read_set_cookie(header, self._clock())
            if set_cookie is None or not self.app.is_app_cookie(set_cookie.name):
                continue
            self.app.learn(set_cookie)
            if app is None or set_cookie.name != app[0]:
                continue
            if set_cookie.expired:  # the app ended its own session: the binding goes with it
                self._storage.write(request, response, None)
                return
            current = base or binding
            if current is not None and set_cookie.value != app[1]:  # rotated: the binding follows
                base = replace(current, app_fingerprint=self._storage.codec.fingerprint(set_cookie.name,
                                                                                          set_cookie.value))
        if base is not None:
            self._storage.write(request, response, base)

    # --- ending an app session -----------------------------------------------------------------------------

    async def _end(self, request: web.Request, cookies: dict[str, str], binding: Binding | None,
                   reason: str) -> web.StreamResponse:
        """End the app session; only one no binding vouches for waits on the rate of server-side logouts."""
        response = self._ended_answer(request)
        self.app.expire(request, response, cookies)
        await self.app.logout(request, cookies, limited=binding is None)
        if binding is not None:
            self._metrics.sockets_closed.inc(self._sockets.end(binding.session_id))
        log.debug("route %s: ended an app session (%s)", self.route.name, reason)
        return response

    def _ended_answer(self, request: web.Request) -> web.Response:
        if answers.wants_json(request.headers.get("Accept"), request.headers.get("X-Requested-With")):
            response = error_response(request, 401, SESSION_ENDED)
        else:
            status = 302 if request.method in ("GET", "HEAD") else 303
            response = web.Response(status=status, headers={"Location": self._profile.sign_in_url})
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- sources and Okta --------------------------------------------------------------------------------

    def _claimed(self, request: web.Request, cookies: dict[str, str]) -> str | None:
        info = RequestInfo(request.headers, cookies, request.remote)
        for source in self._identifiers:
            found = source.identify(info)
            if found:
                return found
        return None

    def take_over(self, previous: Enforcer) -> None:
        """A reload's enforcer of the same route shares when each session was last refreshed in Okta: without it
        every active session would be refreshed once more after each reload, a burst on the org's rate limit.
        Nothing else is taken: the cookie memo holds bindings opened with the old keys."""
        self._extended = previous._extended

    def _extend(self, session_id: str, now: float) -> None:
        """Refresh the Okta session in the background, at most once per interval (decide() says when)."""
        self._extended[session_id] = now
        if len(self._extended) > _MAX_EXTENDED:
            self._extended.pop(next(iter(self._extended)))
        task = asyncio.get_running_loop().create_task(self._refresh(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, session_id: str) -> None:
        try:
            await self._validator.client.refresh_session(session_id)
            self._metrics.okta_extensions.inc()
        except Exception as exc:
            log.info("route %s: refreshing an Okta session failed: %s", self.route.name, type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._logout.close()


def _ends_what_it_cannot_bind(sessions: RouteSessions) -> bool:
    """Whether the route ends what it cannot bind: a policy that is not off, with unbound = relogin."""
    return sessions.mode is not Mode.OFF and sessions.rules.unbound is Unbound.RELOGIN
