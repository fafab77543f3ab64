"""Build the aiohttp application: wire the parts together, and run their background tasks for the app's lifetime.

What a request reaches is dispatch.py's; the parts are built here once, from the settings, and nowhere else.

With `[store] backend = "redis"` there is one RedisLink for the process; the bus records in an in-process mirror
(a MemoryStore: the hot path reads only it) that the fan-out keeps current. The link and the fan-out start before
the app serves (the fleet's state is loaded into the mirror first; Redis away then is not fatal) and close after.
The memory store is the same MemoryStore, with no link, no fan-out and no task.

What a reload may change is built per generation (dispatch.py's `Generation`: the route table, upstream pools,
forwarders, enforcers with their binding keys); what lives as long as the process is built once here: the Okta
client, the validator and its cache (kept while the org stays the same), the revocation bus, the store's link and
the fan-out, the open-sockets registry, the policy store. `reconfigure` (the Reloader's apply) builds the next
generation, starts its pools, then re-points every part that reads the configuration and swaps the generation in,
with no await in between: a request sees the old configuration or the new one, never half of each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from . import logs
from .admin import Admin, Operator, RoutePolicies
from .buckets import Budget
from .config import Settings
from .dispatch import (
    ClientFaultsAtDebug,
    Generation,
    Generations,
    Handler,
    direct,
    expect_continue_only,
    expect_later,
    not_found,
    plainly_spelled,
    proxy_handler,
)
from .enforcement.enforcer import Enforcer
from .enforcement.sign_in import unknown_id_budget
from .enforcement.sweep import SocketSweep
from .health import Health, UpstreamChecks, watch_credentials
from .metrics import Metrics
from .okta.client import OktaClient
from .proxy.http import Forwarder
from .proxy.request_id import Stop
from .proxy.upstream import UpstreamPools
from .proxy.websocket import WebSocketForwarder
from .reload import Reloader
from .revocation.bus import RevocationBus
from .revocation.event_hooks import EventHookReceiver
from .revocation.fanout import FanOut
from .revocation.jwks import KeySet, jwks_fetcher
from .revocation.tokens import TokenVerifier
from .revocation.universal_logout import handle, user_revoker
from .sessions.binding import BindingCodec
from .sessions.binding_cookie import BindingStorage
from .sessions.cache import ValidationCache
from .sessions.sockets import OpenSockets
from .sessions.validation import SessionValidator
from .settings import OktaSettings
from .store.memory import MemoryStore
from .store.policies import MemoryPolicies
from .store.redis import RedisLink
from .store.redis_policies import RedisPolicies
from .store.redis_revocations import RedisRevocations
from .store.redis_seen import RedisSeen
from .store.redis_sessions import RedisSessions
from .store.seen import MemorySeen, SeenOnce

log = logging.getLogger("gateway")

SETTINGS = web.AppKey("settings", Settings)  # as the gateway started; the Reloader's settings are the current ones
POOLS = web.AppKey("pools", UpstreamPools)  # the first generation's (GENERATIONS: the current one)
METRICS = web.AppKey("metrics", Metrics)
VALIDATOR = web.AppKey("validator", SessionValidator)
ENFORCERS = web.AppKey("enforcers", dict[str, Enforcer])
SOCKETS = web.AppKey("sockets", OpenSockets)
BUS = web.AppKey("bus", RevocationBus)
SWEEP = web.AppKey("sweep", SocketSweep)
STORE_LINK = web.AppKey("store_link", RedisLink)
FANOUT = web.AppKey("fanout", FanOut)
POLICIES = web.AppKey("policies", RoutePolicies)
HOOKS = web.AppKey("hooks", EventHookReceiver)
GENERATIONS = web.AppKey("generations", Generations)
RELOADER = web.AppKey("reloader", Reloader)
PROXY: web.AppKey[Handler] = web.AppKey("proxy")  # the router's catch-all; `serve_directly` calls it without the router
CHECKS = web.AppKey("checks", UpstreamChecks)  # readiness of the routes' upstreams: update(routes, pools) on reload
HEALTH = web.AppKey("health", Health)  # health.stopping = True makes readyz 503 during a graceful stop
ADMIN = web.AppKey("admin", Admin)
LEAVING = web.AppKey("leaving", asyncio.Event)  # set when the gateway stops: open WebSockets close with 1001


def build_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The gateway. `clock` (epoch seconds) is what session lifetimes are compared with; tests move it."""
    app = web.Application(handler_args={"max_field_size": 16384, "max_line_size": 16384,
                                         "logger": ClientFaultsAtDebug(logging.getLogger("aiohttp.server"))})
    app[SETTINGS] = settings
    app[METRICS] = metrics = Metrics()
    app[LEAVING] = asyncio.Event()
    link = RedisLink(settings.store, metrics) if settings.store.backend == "redis" else None
    if link is not None:
        app[STORE_LINK] = link
        app.cleanup_ctx.append(_store_ctx)  # before the validator's and the policies': up first, closed last
    app[SOCKETS] = OpenSockets()
    if settings.okta is not None:
        app[VALIDATOR] = validator = _validator(settings.okta, metrics, clock, link)
        mirror = MemoryStore(retention=settings.store.retention) if link is not None else MemoryStore()
        app[BUS] = bus = RevocationBus(mirror, validator, app[SOCKETS], metrics, clock=clock)
        if link is not None:
            app[FANOUT] = FanOut(bus, mirror, RedisRevocations(link), metrics, clock=clock)
        app[SWEEP] = SocketSweep(validator, app[SOCKETS], metrics, clock=clock)
    stop = Stop()
    lasting = _Lasting(app, clock, unknown_id_budget(settings.okta) if settings.okta is not None else None, stop)
    first = lasting.generation(settings, 1)
    app[GENERATIONS] = generations = Generations(first, stop)
    app[POOLS], app[ENFORCERS] = first.pools, first.enforcers
    app.cleanup_ctx.append(_pools_ctx)
    if settings.okta is not None:
        app.cleanup_ctx.append(_okta_ctx)
    # always, so that a replica without [admin] follows the fleet's switches too
    app[POLICIES] = RoutePolicies(settings.routes.routes, first.enforcers,
                                  RedisPolicies(link) if link is not None else MemoryPolicies(), clock=clock)
    app.cleanup_ctx.append(_policies_ctx)

    prefix = settings.server.prefix
    own = web.UrlDispatcher()  # the gateway's endpoints, gathered here and then added behind plainly_spelled
    if settings.okta is not None and settings.okta.event_hook is not None:
        hook = settings.okta.event_hook
        app[HOOKS] = receiver = EventHookReceiver(
            hook.secret, hook.header, app[BUS], metrics, seen=RedisSeen(link, "hook") if link is not None else None,
            retention=settings.store.retention, clock=clock)
        own.add_get(prefix + "okta/events", receiver.verify)
        own.add_post(prefix + "okta/events", receiver.deliver)
    if settings.okta is not None and settings.okta.universal_logout is not None:
        replays = RedisSeen(link, "jti") if link is not None else MemorySeen()
        own.add_post(prefix + "okta/universal-logout", _universal_logout(app, settings.okta, clock, replays))
    if settings.admin_token is not None:
        app[ADMIN] = admin = Admin(Operator(settings.admin_token, prefix, clock), prefix, settings.routes.routes,
                                   first.enforcers, metrics, app.get(BUS), app[SOCKETS],
                                   trusted_proxies=settings.server.trusted_proxies, policies=app[POLICIES],
                                   store=link)
        admin.add_routes(own)
    app[CHECKS] = checks = UpstreamChecks(settings.routes.routes, first.pools, link)
    app.cleanup_ctx.append(_checks_ctx)
    app[HEALTH] = health = Health(checks, app[VALIDATOR].client if VALIDATOR in app else None, link,
                                  store_required=settings.store.required_for_ready, stop=stop)
    own.add_get(prefix + "healthz", health.healthz, allow_head=True)
    own.add_get(prefix + "readyz", health.readyz, allow_head=True)
    for r in own.routes():
        if r.resource is not None:
            app.router.add_route(r.method, r.resource.canonical, plainly_spelled(r.handler, generations),
                                 expect_handler=expect_continue_only)
    app.router.add_route("*", prefix + "{tail:.*}", plainly_spelled(not_found, generations),
                         expect_handler=expect_continue_only)
    app[PROXY] = proxy = proxy_handler(generations)
    app.router.add_route("*", "/{tail:.*}", proxy, expect_handler=expect_later)

    async def apply(new: Settings) -> None:
        await reconfigure(app, lasting, new)

    app[RELOADER] = Reloader(settings, apply, metrics)
    app.cleanup_ctx.append(_reloader_ctx)
    app.on_shutdown.append(_leaving)
    return app


def serve_directly(runner: web.AppRunner) -> None:
    """Have the runner's server send proxied requests straight to the proxy handler (dispatch.py's `direct`), once
    `runner.setup()` has made it and before its site starts."""
    server, app = runner.server, runner.app
    assert server is not None, "runner.setup() first"
    # the app's request factory makes every request a web.Request, which is what both handlers take
    server.request_handler = direct(server.request_handler, app[PROXY],  # type: ignore[assignment]
                                    app[SETTINGS].server.prefix)


class _Lasting:
    """The parts a generation is built on that live as long as the process."""

    def __init__(self, app: web.Application, clock: Callable[[], float], unknown_ids: Budget | None,
                 stop: Stop) -> None:
        self.app, self.clock, self.unknown_ids, self.stop = app, clock, unknown_ids, stop

    def generation(self, settings: Settings, number: int) -> Generation:
        """A configuration's route table, pools, forwarders and enforcers (its pools not started yet)."""
        app = self.app
        pools = UpstreamPools(settings.routes.routes, settings.proxy)
        http = Forwarder(pools, settings.server, app[METRICS], self.stop)
        ws = WebSocketForwarder(pools, settings.server, settings.proxy, leaving=app[LEAVING])
        enforcers: dict[str, Enforcer] = {}
        if VALIDATOR in app and self.unknown_ids is not None:
            enforcers = _enforcers(settings, app[VALIDATOR], http, ws, pools, app[SOCKETS], app[BUS], app[METRICS],
                                   self.clock, self.unknown_ids)
        return Generation(number, settings.routes, settings.server, pools, http, ws, enforcers, app[METRICS])


async def reconfigure(app: web.Application, lasting: _Lasting, new: Settings) -> None:
    """Put a validated configuration in place (reload.py's `changes` has refused what cannot change here)."""
    generations = app[GENERATIONS]
    generation = lasting.generation(new, generations.current.number + 1)
    for name, enforcer in generation.enforcers.items():
        if (previous := generations.current.enforcers.get(name)) is not None:
            enforcer.take_over(previous)
    await generation.pools.start()
    # from here on no await: every part takes the new configuration in the same step of the event loop
    routes = new.routes.routes
    if VALIDATOR in app and new.okta is not None:
        app[VALIDATOR].cache.policy = new.okta.cache
    app[POLICIES].follow(routes, generation.enforcers)
    if ADMIN in app:  # [admin] removed: the token stays until a restart, the routes and enforcers follow
        app[ADMIN].follow(new.admin_token, routes, generation.enforcers, new.server.trusted_proxies)
    if HOOKS in app and new.okta is not None and new.okta.event_hook is not None:
        app[HOOKS].rekey(new.okta.event_hook.secret, new.okta.event_hook.header)
    app[CHECKS].update(routes, generation.pools)
    logs.follow(new.server.log_level, new.log.format)
    generations.swap(generation)


async def _reloader_ctx(app: web.Application) -> AsyncIterator[None]:
    reloader = app[RELOADER]
    reloader.watch(reloader.settings.server.watch_config)
    yield
    await reloader.close()


async def _leaving(app: web.Application) -> None:
    """The gateway stops (the listener is closed): open WebSockets close with 1001 before requests are awaited."""
    app[LEAVING].set()
    timeout = app[SETTINGS].server.shutdown_timeout
    loop = asyncio.get_running_loop()
    # just after aiohttp's own wait has ended (at most at the whole second after the timeout): a handler that ends
    # in the very step its wait times out makes aiohttp log an InvalidStateError traceback
    loop.call_at(math.ceil(loop.time() + timeout) + 0.1, _cut_short, app[GENERATIONS], timeout)


def _cut_short(generations: Generations, timeout: float) -> None:
    """shutdown_timeout ran out: what is still in flight is cancelled now, and counted, or a stop that cut
    answers reads in the log as a clean one (the exit status is 0 either way: the stop was asked for). aiohttp
    would wait as long again first: its cancellation at the timeout reaches only a handler reading the body."""
    open_now = generations.running()
    if open_now:
        log.warning("stopping: shutdown_timeout (%gs) ran out with %d proxied request(s) or WebSocket(s) still "
                    "open: they are cut", timeout, len(open_now))
    for task in open_now:
        task.cancel()


JWKS_HTTP = web.AppKey("jwks_http", aiohttp.ClientSession)


def _universal_logout(app: web.Application, okta: OktaSettings, clock: Callable[[], float],
                      replays: SeenOnce) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The Universal Logout endpoint: Okta's JWT checked against the org's keys, then the user revoked."""
    assert okta.universal_logout is not None
    issuer = str(okta.org_url)
    jwks_url = str(okta.org_url.with_path("/oauth2/v1/keys"))

    async def fetch() -> dict[str, Any]:
        return await jwks_fetcher(app[JWKS_HTTP], jwks_url, okta.timeout)()

    ul = okta.universal_logout
    verifier = TokenVerifier(issuer=issuer, audience=ul.endpoint_url, keys=KeySet(fetch, clock=clock), clock=clock,
                             leeway=ul.leeway, replays=replays)
    revoke = user_revoker(app[VALIDATOR].client, app[BUS])
    app.cleanup_ctx.append(_jwks_http_ctx)

    async def universal_logout(request: web.Request) -> web.StreamResponse:
        return await handle(request, verifier, issuer, revoke)

    return universal_logout


async def _jwks_http_ctx(app: web.Application) -> AsyncIterator[None]:
    app[JWKS_HTTP] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    yield
    await app[JWKS_HTTP].close()


def _enforcers(settings: Settings, validator: SessionValidator, http: Forwarder, ws: WebSocketForwarder,
               pools: UpstreamPools, sockets: OpenSockets, bus: RevocationBus, metrics: Metrics,
               clock: Callable[[], float], unknown_ids: Budget) -> dict[str, Enforcer]:
    """One Enforcer per route that binds sessions (its policy may be switched to off and back while running).
    `unknown_ids`: one budget for the gateway, kept across reloads: Okta's rate limit is the org's."""
    routes = [r for r in settings.routes.routes if r.sessions is not None]
    if not routes or settings.okta is None:
        return {}
    codec = BindingCodec(settings.binding_keys)
    return {
        r.name: Enforcer(r, r.sessions, validator=validator, storage=BindingStorage(codec, r.sessions.cookie, r.name),
                         http=http, websocket=ws, pools=pools, sockets=sockets, bus=bus,
                         okta_url=settings.okta.org_url if settings.okta else URL(), metrics=metrics,
                         unknown_ids=unknown_ids, trusted_proxies=settings.server.trusted_proxies, clock=clock)
        for r in routes if r.sessions is not None
    }


async def _pools_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[POOLS].start()
    yield
    await app[GENERATIONS].close()  # every generation's pools (their enforcers closed with the validator)


async def _checks_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[CHECKS].start()
    yield
    await app[CHECKS].close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Redis before the app serves: the link (away is not fatal), then the fleet's state into the mirror."""
    link, fanout = app[STORE_LINK], app.get(FANOUT)
    await link.start()
    if fanout is not None:
        await fanout.start()
    yield
    if fanout is not None:
        await fanout.close()
    await link.close()


def _validator(okta: OktaSettings, metrics: Metrics, clock: Callable[[], float],
               link: RedisLink | None) -> SessionValidator:
    client = OktaClient(okta.org_url, okta.api_token, timeout=okta.timeout, retries=okta.retries, metrics=metrics,
                        clock=clock)
    shared = RedisSessions(link, okta.timeout) if link is not None else None
    return SessionValidator(client, ValidationCache(okta.cache), metrics, clock=clock, low_headroom=okta.low_headroom,
                            stretch=okta.stretch, max_background=okta.max_background_refreshes, shared=shared)


async def _policies_ctx(app: web.Application) -> AsyncIterator[None]:
    """The fleet's policy switches adopted before the first request (after the store's link is up)."""
    await app[POLICIES].start()
    yield
    if HOOKS in app:
        await app[HOOKS].close()  # deliveries being acted on finish first
    await app[POLICIES].close()


async def _okta_ctx(app: web.Application) -> AsyncIterator[None]:
    validator = app[VALIDATOR]
    await validator.client.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(watch_credentials(validator.client)), loop.create_task(app[SWEEP].run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for enforcer in app[GENERATIONS].enforcers():
        await enforcer.close()
    await validator.close()
    await validator.client.close()


