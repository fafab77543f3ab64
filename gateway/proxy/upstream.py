"""The connections the gateway holds to its upstreams.

HTTP goes through one keep-alive pool per upstream origin (client.py), shared by every route that names that
origin. WebSocket upgrades go through one aiohttp ClientSession set up as a proxy's client must be
(../shared/aiohttp-notes.md): no cookie jar (a shared jar would hand one user's upstream cookies to the next), no
decompression, no redirects, no headers added on our own.
"""

from __future__ import annotations

import aiohttp

from ..routing import Route
from ..settings import ProxySettings
from .client import OriginPool

SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


class UpstreamPools:
    def __init__(self, routes: tuple[Route, ...], settings: ProxySettings) -> None:
        self._routes = routes
        self._settings = settings
        self._http: dict[str, OriginPool] = {}  # by origin
        self._by_route: dict[str, OriginPool] = {}  # by route name: a route's origin is a yarl call to spell
        self._websocket: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        for route in self._routes:
            origin = route.upstream_origin
            if origin not in self._http:
                url = route.upstream
                self._http[origin] = OriginPool(
                    url.host or "", url.port or (443 if url.scheme == "https" else 80),
                    tls=url.scheme == "https",
                    size=self._settings.pool_size,
                    keepalive_timeout=self._settings.keepalive_timeout,
                )
            self._by_route[route.name] = self._http[origin]
        self._websocket = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        pools, self._http, self._by_route = list(self._http.values()), {}, {}
        for pool in pools:
            await pool.close()
        if self._websocket is not None:
            await self._websocket.close()

    @property
    def ready(self) -> bool:
        return (
            self._websocket is not None
            and not self._websocket.closed
            and all(route.upstream_origin in self._http for route in self._routes)
        )

    def http(self, route: Route) -> OriginPool:
        """The pool of the route's origin; `route` is one of this generation's (its routes have unique names)."""
        return self._by_route[route.name]

    def websocket(self, route: Route) -> aiohttp.ClientSession:
        assert self._websocket is not None
        return self._websocket
