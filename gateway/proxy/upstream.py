"""Keep-alive connection pools, one per upstream origin, shared by every route that names that origin.

Each pool is an aiohttp ClientSession set up as a proxy's client must be (../shared/aiohttp-notes.md): no cookie
jar (a shared jar would hand one user's upstream cookies to the next), no decompression, no redirects followed,
no headers added on our own.
"""

from __future__ import annotations

import aiohttp

from ..config import ProxySettings
from ..routing import Route

SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


class UpstreamPools:
    def __init__(self, routes: tuple[Route, ...], settings: ProxySettings) -> None:
        self._origins = sorted({route.upstream_origin for route in routes})
        self._settings = settings
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        for origin in self._origins:
            connector = aiohttp.TCPConnector(
                limit=self._settings.pool_size,
                keepalive_timeout=self._settings.keepalive_timeout,
                enable_cleanup_closed=False,
                ttl_dns_cache=60,
            )
            self._sessions[origin] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=None),
                read_bufsize=2**16,
                max_line_size=16384,
                max_field_size=16384,
            )

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    @property
    def ready(self) -> bool:
        return len(self._sessions) == len(self._origins) and not any(s.closed for s in self._sessions.values())

    def session(self, route: Route) -> aiohttp.ClientSession:
        return self._sessions[route.upstream_origin]
