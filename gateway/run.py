"""Serve the gateway: one process, or several sharing one port through SO_REUSEPORT.

The listening socket options, uvloop and the access log are set here once; everything per request lives in
server.py and below.
"""

from __future__ import annotations

import asyncio
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
from .server import METRICS, build_app
from .settings import ServerSettings

log = logging.getLogger("gateway")


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; with `workers > 1`, fork that many processes on one port."""
    server = settings.server
    workers = server.workers
    if workers == 1:
        _serve_one(settings, listening_socket(server.host, server.port, reuse_port=False), *metrics_sockets(settings))
        return
    sockets = [listening_socket(server.host, server.port, reuse_port=True) for _ in range(workers)]
    scrapes = metrics_sockets(settings)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_serve_one, args=(settings, sock, scrape), daemon=True)
                for sock, scrape in zip(sockets, scrapes, strict=True)]
    for child in children:
        child.start()
    for sock in [*sockets, *(s for s in scrapes if s is not None)]:
        sock.close()

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()
    codes = [child.exitcode for child in children]
    if any(code not in (0, -signal.SIGTERM) for code in codes):
        sys.exit(1)


def _serve_one(settings: Settings, sock: socket.socket, scrape: socket.socket | None = None) -> None:
    _install_uvloop()
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
    web.run_app(
        app,
        sock=sock,
        access_log=logging.getLogger("gateway.access") if server.access_log else None,
        access_log_class=AccessLogger,
        shutdown_timeout=server.shutdown_timeout,
        print=None,
        handle_signals=True,
        **handler_options(server),
    )


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
