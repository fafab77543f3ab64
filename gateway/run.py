"""Serve the gateway: one process, or several sharing one port through SO_REUSEPORT; its signals.

The listening socket options, uvloop and the access log are set here once; everything per request lives in
server.py and below.

Signals, in every process of the gateway from its start (SIGHUP's default action would kill it):
- SIGHUP reloads the configuration (reload.py); with `workers > 1` the parent passes it to every worker. One that
  comes while a process is still starting is held and acted on once its reloader (or the parent's passing on) is in
  place: a worker that was still building its app when the operator sent it would otherwise serve the old file.
- SIGTERM stops gracefully: readyz answers 503 at once, the listener keeps accepting for `[server] stop_delay`
  seconds (the load balancer, or Kubernetes, stops sending meanwhile), then closes; the requests in flight finish
  within `shutdown_timeout`, open WebSockets close with 1001, and the process exits 0.
- SIGINT (Ctrl-C) does the same without the stop delay. A second SIGTERM or SIGINT cuts the delay short.
The parent of several workers passes SIGTERM and SIGINT on and exits 0 once they all did.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

from aiohttp import web
from yarl import URL

from . import __version__, metrics_listener
from .config import Settings
from .logs import AccessLogger
from .reload import remove_pid_file, write_pid_file
from .server import HEALTH, METRICS, RELOADER, build_app, serve_directly
from .settings import ServerSettings

log = logging.getLogger("gateway")


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; with `workers > 1`, fork that many processes on one port."""
    server = settings.server
    workers = server.workers
    signal.signal(signal.SIGHUP, EARLY_SIGHUP.hold)  # until this process's own handler is in place
    if workers == 1:
        _serve_one(settings, listening_socket(server.host, server.port, reuse_port=False), *metrics_sockets(settings))
        return
    sockets = [listening_socket(server.host, server.port, reuse_port=True) for _ in range(workers)]
    scrapes = metrics_sockets(settings)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_serve_one, args=(settings, sock, scrape), daemon=True)
                for sock, scrape in zip(sockets, scrapes, strict=True)]
    held = EARLY_SIGHUP.take()  # the children start with none held: they get this one passed on, as any other
    for child in children:
        child.start()
    for sock in [*sockets, *(s for s in scrapes if s is not None)]:
        sock.close()

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid:
                os.kill(child.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    if EARLY_SIGHUP.take() or held:
        forward(signal.SIGHUP, None)
    if server.pid_file:
        write_pid_file(server.pid_file)
    try:
        for child in children:
            child.join()
    finally:
        if server.pid_file:
            remove_pid_file(server.pid_file)
    codes = [child.exitcode for child in children]
    if any(code != 0 for code in codes):
        sys.exit(1)


def _serve_one(settings: Settings, sock: socket.socket, scrape: socket.socket | None = None) -> None:
    _install_uvloop()
    asyncio.run(_serve(settings, sock, scrape,
                       pid_file=settings.server.pid_file if settings.server.workers == 1 else None))


async def _serve(settings: Settings, sock: socket.socket, scrape: socket.socket | None, pid_file: str | None) -> None:
    server = settings.server
    app = build_app(settings)
    if scrape is not None:
        app.cleanup_ctx.append(metrics_listener.serving(scrape, app[METRICS], header_timeout=server.header_timeout))

    async def started(app: web.Application) -> None:
        log.info("%s", start_line(settings), extra=start_fields(settings))

    async def stopped(app: web.Application) -> None:
        log.info("session-gateway stopped (pid %d)", os.getpid(), extra={"event": "stop", "pid": os.getpid()})

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=server.shutdown_timeout,
                           access_log=logging.getLogger("gateway.access") if server.access_log else None,
                           access_log_class=AccessLogger,
                           **handler_options(server))
    await runner.setup()
    serve_directly(runner)
    settle_heap()
    stop = _Stop(app, server.shutdown_timeout)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.request, "SIGTERM", True)
    loop.add_signal_handler(signal.SIGINT, stop.request, "SIGINT", False)
    loop.add_signal_handler(signal.SIGHUP, app[RELOADER].request, "SIGHUP")
    if EARLY_SIGHUP.take():
        app[RELOADER].request("SIGHUP during start")
    try:
        await web.SockSite(runner, sock).start()
        if pid_file:
            write_pid_file(pid_file)
        await stop.wait()
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP while stopping: no reload")
    finally:
        if pid_file:
            remove_pid_file(pid_file)
        await runner.cleanup()
        # the loop's close would put back SIGHUP's default action (the end of the process) for what remains of it
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class EarlySighup:
    """Whether a SIGHUP came before this process's reloader (or, in the parent of several workers, its passing on)
    was in place. A forked worker inherits the handler, and the flag as it stood at the fork."""

    def __init__(self) -> None:
        self._held = False

    def hold(self, signum: int, frame: object) -> None:
        self._held = True

    def take(self) -> bool:
        held, self._held = self._held, False
        return held


EARLY_SIGHUP = EarlySighup()


# The cyclic collector's first generation runs after this many more container objects were made than freed: above
# what a busy worker holds in flight (64 connections: under 5,000), so that it runs when garbage has piled up and
# not every few requests. Python's default, 700, collected every 80 requests or so.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once the app is built, before the first request: move every object made so far (modules, routes, the app)
    out of the collector's sight, and collect the young generation less often. Under wrk at 64 connections this
    took the longest pause from 29 ms (a full collection walking 63,000 start-up objects, the requests' p99) to
    under 1 ms, and the collector's share of the CPU from 2 % to nothing measurable."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


class _Stop:
    """A stop asked for by a signal: readyz turns 503 at once, then the stop delay (SIGTERM only) runs out."""

    def __init__(self, app: web.Application, shutdown_timeout: float) -> None:
        self._app, self._shutdown_timeout = app, shutdown_timeout
        self._asked = asyncio.Event()
        self._hurry = asyncio.Event()
        self._delay = 0.0

    def request(self, name: str, delay: bool) -> None:
        if self._asked.is_set():
            self._hurry.set()  # a second signal: stop accepting now
            return
        self._app[HEALTH].stopping = True
        self._delay = self._app[RELOADER].settings.server.stop_delay if delay else 0.0  # as last reloaded
        log.info("stopping (%s): readyz answers 503; accepting for %gs more, then finishing the requests in flight "
                 "(up to %gs)", name, self._delay, self._shutdown_timeout)
        self._asked.set()

    async def wait(self) -> None:
        await self._asked.wait()
        if self._delay > 0:
            try:
                await asyncio.wait_for(self._hurry.wait(), self._delay)
            except TimeoutError:
                pass


def start_line(settings: Settings) -> str:
    """What an operator reads when the gateway starts: version, address, routes and store (no secret: the store by
    its kind and host only)."""
    server = settings.server
    routes = ", ".join(f"{r.name} ({r.sessions.mode.value if r.sessions else 'off'})" for r in settings.routes.routes)
    return (f"session-gateway {__version__} listening on {server.host}:{server.port} (pid {os.getpid()}); "
            f"routes: {routes}; store: {_store_where(settings)}")


def _store_where(settings: Settings) -> str:
    redis = settings.store.redis
    if redis is None:
        return "memory (this process)"
    if redis.url:
        return f"redis at {URL(redis.url).host or URL(redis.url).path}"
    return f"redis through Sentinel, service {redis.service_name}"


def start_fields(settings: Settings) -> dict[str, Any]:
    """The start line's facts as fields of their own (in a JSON line)."""
    server = settings.server
    routes = [{"name": r.name, "host": r.host, "path": r.path, "policy": r.sessions.mode.value if r.sessions else "off"}
              for r in settings.routes.routes]
    return {"event": "start", "version": __version__, "listen": f"{server.host}:{server.port}", "pid": os.getpid(),
            "routes": routes, "store": _store_where(settings)}


def handler_options(server: ServerSettings) -> dict[str, Any]:
    """How aiohttp serves the gateway's app, here and in the sandbox stack."""
    return {
        # aiohttp closes a connection that has no complete request head this long after it opened or after its
        # last answer: the head's time limit (slowloris), which is also the idle keep-alive limit
        "keepalive_timeout": server.header_timeout,
        "handler_cancellation": True,
        "auto_decompress": False,
    }


def metrics_sockets(settings: Settings) -> list[socket.socket | None]:
    """One listening socket of [metrics] a worker (worker i on the port + i), or None each without the table."""
    scrape = settings.metrics
    return [listening_socket(scrape.host, scrape.port + i, reuse_port=False) if scrape is not None else None
            for i in range(settings.server.workers)]


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening socket; binding happens before any fork so that a busy port fails once, plainly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using the standard asyncio loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
