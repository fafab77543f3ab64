"""The metrics listener: Prometheus scrapes `GET /metrics` here, on an address of its own (`[metrics] listen`),
with no token, as oauth2-proxy's `--metrics-address`.

It serves the metrics and nothing else: any other path or method is a 404, so nothing of the operator's (status,
admin) nor of the apps can be reached through it without the token; the operator's `/.gateway/metrics` stays
behind the token. The answer is prometheus_client's exposition of the registry in the format the scraper's Accept
asks for (the Prometheus text format, or OpenMetrics).

run.py binds the sockets before any fork (a busy port fails once, plainly) and this module serves one for an
app's lifetime. With `workers > 1` each worker has its own registry and its own listener, on the port plus its
index (from 0): a scrape of one worker sees that worker's counts, and Prometheus scrapes each (a sum over them is
the pod's). prometheus_client's multiprocess mode is no way round it: it does not collect custom collectors such
as the hot path's lockless `Counts` and `Timings`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from .dispatch import ClientFaultsAtDebug
from .metrics import Metrics

PATH = "/metrics"
_NOT_FOUND = b"Not found: this listener serves GET /metrics only.\n"
_NOT_SERVED = b"Only HTTP/1.0 and HTTP/1.1 requests are served.\n"

Lifetime = Callable[[web.Application], AsyncIterator[None]]


def scrape_handler(metrics: Metrics) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    """GET (or HEAD) /metrics over HTTP/1.0 or 1.1, a query string allowed (Prometheus sends none, a browser
    may); nothing else."""

    async def scrape(request: web.BaseRequest) -> web.Response:
        if request.version[0] != 1 or request.version[1] > 1:  # HTTP/0.9, "HTTP/2.0" as text: as dispatch.py
            refused = web.Response(status=400, body=_NOT_SERVED, content_type="text/plain")
            refused.force_close()
            return refused
        if request.method not in ("GET", "HEAD") or request.raw_path.partition("?")[0] != PATH:
            return web.Response(status=404, body=_NOT_FOUND, content_type="text/plain")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(metrics.registry),
                            headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return scrape


def serving(sock: socket.socket, metrics: Metrics, *, header_timeout: float) -> Lifetime:
    """An app's cleanup context that serves `metrics` on the listening socket `sock` while the app lives.
    `header_timeout`, as the gateway's: the time limit of a request head and of an idle keep-alive connection."""
    handler = scrape_handler(metrics)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        server = web.Server(handler, access_log=None, keepalive_timeout=header_timeout, handler_cancellation=True,
                            logger=ClientFaultsAtDebug(logging.getLogger("aiohttp.server")))
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield
        finally:
            await runner.cleanup()

    return lifetime
