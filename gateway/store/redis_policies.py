"""Runtime policy overrides shared by the fleet on Redis (store/policies.py states the interface).

Data: one hash, `link.key("policy")`: field = route name, value = the override as JSON
`{"mode", "by", "at", "from"}`, and the field `*` (never a route name) that says the hash was ever written, so that
a Redis that came back empty is told from a fleet whose overrides were all cleared. Changes are published on the
channel `link.key("policy:changes")` as `{"route", "override"}` (the override's JSON, or "" when cleared).

Rules of this module:
- Every write is one Lua script: read the route's field, write it unless the stored one is newer (by `at`), mark
  the hash, publish. So a switch is stored and announced in one step, and a switch kept while Redis was away and
  written later never overwrites a newer one (the last switch by the operators' clocks wins; a clear leaves no
  record, so a switch older than a later clear that was kept while Redis was away comes back: rare, and visible).
- A replica follows the channel on a connection of its own, and re-reads the whole hash after every (re)connect
  (redis-py's own reconnects included) before it takes the next message: pub/sub plus a way to catch up. `start()`
  subscribes and adopts the hash before the gateway serves, within the store timeouts; when Redis does not answer
  then, the replica serves its configured policies and adopts the fleet's when Redis answers.
- Redis away: a switch or a clear applies on this replica at once and is kept (the newest per route) to be written
  when Redis is back (RedisLink's `on_up`, or the next catch-up); a log line says it reached this replica only.
  Redis back empty (restarted, no `*` field): each replica writes back the overrides it holds.
- Overrides do not expire: they matter until cleared.
"""

from __future__ import annotations

import asyncio
import json
import logging

from redis.exceptions import RedisError

from .policies import OnChange, Override, apply
from .redis import RedisLink, StoreUnavailable

__all__ = ["MARKER", "RedisPolicies"]

log = logging.getLogger("gateway.store")

MARKER = "*"
MAX_ROUTE = 256
RETRY_EVERY = 1.0  # seconds between tries to follow the channel again while Redis does not answer
BLOCK = 1.0  # seconds a read of the channel waits for a message before it looks again

WRITE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['at']) and tonumber(stored['at']) > tonumber(ARGV[3]) then
    return current
  end
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[1], '*', '1')
redis.call('PUBLISH', ARGV[4], cjson.encode({route = ARGV[1], override = ARGV[2]}))
return 1
"""


class RedisPolicies:
    def __init__(self, link: RedisLink) -> None:
        self.overrides: dict[str, Override] = {}
        self.on_change: list[OnChange] = []
        self._link = link
        self._hash, self._channel = link.key("policy"), link.key("policy:changes")
        self._client = link.blocking_client(BLOCK)
        self._pending: dict[str, tuple[Override | None, float]] = {}  # route -> the newest change Redis lacks
        self._behind = True  # the hash must be read again before the next message is taken
        self._tried = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._odd: set[str] = set()
        link.on_up.append(self.write_pending)

    # --- the interface ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())
        await self._tried.wait()  # one try: subscribed and adopted, or Redis did not answer within its timeouts
        if self._behind:
            log.warning("policy overrides: redis did not answer at start-up; serving the configured policies until "
                        "it does, then the fleet's overrides")
        else:
            log.info("policy overrides: adopted %d from the fleet", len(self.overrides))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    async def put(self, route: str, override: Override) -> bool:
        apply(self, route, override)
        return await self._send(route, override, override.at)

    async def clear(self, route: str, at: float) -> bool:
        apply(self, route, None)
        return await self._send(route, None, at)

    async def write_pending(self) -> None:
        """Write the changes kept while Redis was away (StoreUnavailable if it is away again: the rest are kept)."""
        for route, change in list(self._pending.items()):
            await self._write(route, *change)
            if self._pending.get(route) == change:
                del self._pending[route]

    # --- writing ---------------------------------------------------------------------------------------------

    async def _send(self, route: str, override: Override | None, at: float) -> bool:
        try:
            await self._write(route, override, at)
        except StoreUnavailable:
            self._pending[route] = (override, at)
            log.warning("policy overrides: route %s changed on this replica only; redis is away, the change is "
                        "written (and reaches every replica) when it is back", route)
            return False
        self._pending.pop(route, None)
        return True

    async def _write(self, route: str, override: Override | None, at: float) -> None:
        text = "" if override is None else override.text()
        stored = await self._link.run(lambda r: r.eval(WRITE, 1, self._hash, route, text, repr(at), self._channel))
        if stored != 1:  # the fleet holds a newer switch: that one is the route's policy
            newer = Override.read(stored)
            if newer is not None and self.overrides.get(route) != newer:
                apply(self, route, newer)

    # --- following the fleet ---------------------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError, TimeoutError, StoreUnavailable):
                self._behind = True
            except Exception:  # a bug must not stop the following, nor hold start() up
                self._behind = True
                log.exception("policy overrides: following the fleet's changes failed; trying again")
            self._tried.set()
            await asyncio.sleep(RETRY_EVERY)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            limit = self._link.settings.connect_timeout + self._link.settings.timeout
            await asyncio.wait_for(pubsub.subscribe(self._channel), limit)
            self._behind = True
            assert pubsub.connection is not None
            pubsub.connection.register_connect_callback(self._reconnected)
            while True:
                if self._behind:
                    await self._catch_up()
                    self._tried.set()
                message = await pubsub.get_message(timeout=BLOCK)
                if message is not None:
                    self._take(message.get("data"))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _reconnected(self, connection: object) -> None:
        self._behind = True  # redis-py reconnected and subscribed again: what was published meanwhile is missed

    async def _catch_up(self) -> None:
        await self.write_pending()
        stored = await self._link.run(lambda r: r.hgetall(self._hash))
        snapshot = {str(field): str(value) for field, value in stored.items()}  # decode_responses: already str
        if MARKER not in snapshot and self.overrides:
            log.warning("policy overrides: redis holds none (restarted empty?); writing back the %d this replica "
                        "holds", len(self.overrides))
            for route, override in list(self.overrides.items()):
                await self._write(route, override, override.at)
        else:
            self._adopt(snapshot)
        self._behind = False

    def _adopt(self, snapshot: dict[str, str]) -> None:
        fleet: dict[str, Override] = {}
        for route, text in snapshot.items():
            override = Override.read(text)
            if override is not None:
                fleet[route] = override
            elif route != MARKER:
                self._odd_once(route)
        for route in [r for r in self.overrides if r not in fleet]:
            apply(self, route, None)
        for route, override in fleet.items():
            if self.overrides.get(route) != override:
                apply(self, route, override)

    def _take(self, data: object) -> None:
        """One published change: `{"route": ..., "override": <JSON text or "">}`."""
        try:
            change = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            change = None
        route = change.get("route") if isinstance(change, dict) else None
        if not isinstance(route, str) or not 0 < len(route) <= MAX_ROUTE or not isinstance(change, dict):
            return self._odd_once("")
        text = change.get("override")
        override = None if text == "" else Override.read(text)
        if override is None and text != "":
            return self._odd_once(route)
        if self.overrides.get(route) != override:
            apply(self, route, override)
        return None

    def _odd_once(self, route: str) -> None:
        """One log line per route (or "" for messages that name none) whose override cannot be read."""
        if route not in self._odd and len(self._odd) < 100:
            self._odd.add(route)
            if route:
                log.warning("policy overrides: ignoring an unreadable override for route %r", route[:64])
            else:
                log.warning("policy overrides: ignoring an unreadable change message")
