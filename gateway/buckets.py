"""Token buckets: how much of something a client, or everyone together, may spend, and when it may spend again.

Rules of this module:
- Pure: no aiohttp, no I/O, no clock of its own. Every call that needs the time takes `now` (seconds, from any
  clock that does not jump backwards; a clock that does is read as no time passing).
- A bucket holds at most `burst` tokens and refills at `per_second`; `take` spends one token when there is a
  whole one, else spends nothing and says no. `give_back` returns one token (never above `burst`): what was
  reserved for a call that turned out to cost nothing.
- A client is its address, an IPv6 one by its /64 (one site holds a whole /64, so any smaller unit gives a single
  client billions of buckets); an IPv4 address mapped into IPv6 is that IPv4 address.
- `Budget` is a shared bucket and one per client: a token is spent from both or from neither. The table of
  clients is bounded: past `max_clients` the one least recently seen is forgotten (it starts again with a full
  bucket, which is why the shared bucket is there: it bounds what forgotten clients can spend).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

MAX_CLIENTS = 10_000


class TokenBucket:
    __slots__ = ("burst", "per_second", "_tokens", "_at")

    def __init__(self, burst: float, per_second: float, now: float) -> None:
        if burst < 1 or per_second <= 0:
            raise ValueError("a bucket needs a burst of at least 1 and a positive rate")
        self.burst, self.per_second = burst, per_second
        self._tokens, self._at = float(burst), now

    def level(self, now: float) -> float:
        """The tokens in the bucket at `now`, a fraction of one included."""
        return min(self.burst, self._tokens + max(now - self._at, 0.0) * self.per_second)

    def take(self, now: float) -> bool:
        """Spend one token if there is a whole one; whether it was spent."""
        level = self.level(now)
        self._at = max(now, self._at)
        self._tokens = level
        if level < 1:
            return False
        self._tokens = level - 1
        return True

    def give_back(self) -> None:
        self._tokens = min(self.burst, self._tokens + 1)

    def wait(self, now: float) -> float:
        """Seconds until `take` would succeed; 0 for now."""
        level = self.level(now)
        return 0.0 if level >= 1 else (1 - level) / self.per_second


def client_key(address: str) -> str:
    """The key a client's bucket is kept under: its address, an IPv6 one as its /64 network."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a name a proxy wrote, "-"): taken as it is
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class Budget:
    """A shared bucket and a bucket per client (`client_key`); a token is spent from both or from neither."""

    def __init__(self, *, burst: float, per_second: float, shared_burst: float, shared_per_second: float,
                 now: float, max_clients: int = MAX_CLIENTS) -> None:
        self.shared = TokenBucket(shared_burst, shared_per_second, now)
        self._burst, self._per_second, self._max = burst, per_second, max_clients
        TokenBucket(burst, per_second, now)  # the same checks of the per-client values, once, now
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def take(self, client: str, now: float) -> bool:
        """Spend a token of the shared bucket and one of the client's; False (and nothing spent) unless both had
        one."""
        bucket = self._bucket(client_key(client), now)
        if bucket.wait(now) > 0 or not self.shared.take(now):
            return False
        return bucket.take(now)

    def give_back(self, client: str) -> None:
        """Return what one `take` spent (to the client's bucket only if it is still remembered)."""
        self.shared.give_back()
        bucket = self._clients.get(client_key(client))
        if bucket is not None:
            bucket.give_back()

    def wait(self, client: str, now: float) -> float:
        """Seconds until `take` would succeed for this client; 0 for now."""
        bucket = self._clients.get(client_key(client))
        return max(self.shared.wait(now), bucket.wait(now) if bucket is not None else 0.0)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._clients.get(key)
        if bucket is not None:
            self._clients.move_to_end(key)
            return bucket
        if len(self._clients) >= self._max:
            self._clients.popitem(last=False)
        bucket = self._clients[key] = TokenBucket(self._burst, self._per_second, now)
        return bucket
