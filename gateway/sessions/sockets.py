"""The WebSockets open per Okta session, so that ending a session closes them too.

An open socket makes no further requests, so nothing else would notice its session end: whoever learns that a
session ended (enforcement, a sweep, later the revocation bus) calls `end()`, and every socket of that session
closes with 1008. No I/O here; server.py runs the periodic sweep that revalidates the sessions listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class OpenSockets:
    def __init__(self) -> None:
        self._by_session: dict[str, set[asyncio.Event]] = {}
        self._users: dict[str, set[str]] = {}  # user id or lower-cased login -> session ids with open sockets
        self._keys: dict[str, set[str]] = {}  # session id -> its user keys, to unlink it when its last socket goes

    def opened(self, session_id: str, user_keys: tuple[str, ...] = ()) -> asyncio.Event:
        stop = asyncio.Event()
        self._by_session.setdefault(session_id, set()).add(stop)
        for key in user_keys:
            self._users.setdefault(key, set()).add(session_id)
            self._keys.setdefault(session_id, set()).add(key)
        return stop

    def end_user(self, user_keys: Iterable[str]) -> int:
        """Close every socket of every session of the user; how many there were."""
        sessions = set().union(*(self._users.get(k, set()) for k in user_keys))
        return sum(self.end(s) for s in sessions)

    def closed(self, session_id: str, stop: asyncio.Event) -> None:
        open_ones = self._by_session.get(session_id)
        if open_ones is not None:
            open_ones.discard(stop)
            if not open_ones:
                del self._by_session[session_id]
                self._unlink(session_id)

    def end(self, session_id: str) -> int:
        """Close every socket of the session; how many there were."""
        open_ones = self._by_session.pop(session_id, set())
        self._unlink(session_id)
        for stop in open_ones:
            stop.set()
        return len(open_ones)

    def sessions(self) -> list[str]:
        return list(self._by_session)

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_session.values())

    def _unlink(self, session_id: str) -> None:
        """Drop the session from its users' index (no socket of it is open any more)."""
        for key in self._keys.pop(session_id, ()):
            sessions = self._users.get(key)
            if sessions is not None:
                sessions.discard(session_id)
                if not sessions:
                    del self._users[key]
