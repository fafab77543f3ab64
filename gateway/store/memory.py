"""The embedded revocation store: three bounded dicts in this process.

Rules: a tombstone or watermark is kept for `retention` seconds (long enough for every cache entry and binding made
before it to have been checked against Okta again, which would find the session gone anyway), and at most
`max_entries` of each (oldest first out). A user has two watermarks: bindings made before the first are void, and
Okta sessions created before the second were ended by Okta (it is set only when the revocation says so). Both
only ever move forward, so events that arrive out of
order cannot bring a revoked binding back. No I/O, no clock of its own: times come in as arguments.
"""

from __future__ import annotations

from collections import OrderedDict


class MemoryStore:
    def __init__(self, *, retention: float = 86_400.0, max_entries: int = 1_000_000) -> None:
        self.generation = 0
        self._retention = retention
        self._max = max_entries
        self._sessions: OrderedDict[str, float] = OrderedDict()
        self._users: OrderedDict[str, float] = OrderedDict()
        self._in_okta: OrderedDict[str, float] = OrderedDict()

    def end_session(self, session_id: str, at: float) -> None:
        if session_id not in self._sessions:
            self._put(self._sessions, session_id, at)

    def end_user(self, user_key: str, before: float, *, in_okta: bool = False) -> None:
        if before > self._users.get(user_key, 0.0):
            self._put(self._users, user_key, before)
        if in_okta and before > self._in_okta.get(user_key, 0.0):
            self._put(self._in_okta, user_key, before)

    def session_ended(self, session_id: str) -> float | None:
        return self._sessions.get(session_id)

    def user_ended_before(self, user_key: str) -> float:
        return self._users.get(user_key, 0.0)

    def okta_ended_before(self, user_key: str) -> float:
        return self._in_okta.get(user_key, 0.0)

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """Copies of the tombstones, the user watermarks and the Okta watermarks (to write them back elsewhere)."""
        return dict(self._sessions), dict(self._users), dict(self._in_okta)

    def forget_older_than(self, now: float) -> None:
        """Drop what is past its retention (called now and then, not per request)."""
        for table in (self._sessions, self._users, self._in_okta):
            for key in [k for k, at in table.items() if at < now - self._retention]:
                del table[key]

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users) + len(self._in_okta)

    def _put(self, table: OrderedDict[str, float], key: str, value: float) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)
        self.generation += 1
