"""The jti replay store as the verifier uses it: it asks the store it is given, and with the fleet's store (Redis) a
token accepted by one replica is a replay at another. The store on its own: tests/store/test_seen.py and
tests/store/test_redis_seen.py."""

from __future__ import annotations

import pytest
from revocation.jwt_support import AUDIENCE, ISSUER, Clock, Org, token
from store.links import started

from gateway.revocation.jwks import KeySet
from gateway.revocation.refusal import Refused
from gateway.revocation.tokens import TokenVerifier
from gateway.store.redis_seen import RedisSeen
from gateway.store.seen import SeenOnce


class Recorded:
    """A replay store that keeps nothing and says what it was asked."""

    def __init__(self, replay: bool) -> None:
        self.replay = replay
        self.asked: list[tuple[str, float, float]] = []

    async def seen(self, key: str, until: float, now: float) -> bool:
        self.asked.append((key, until, now))
        return self.replay


def verifier_over(store: SeenOnce, org: Org, clock: Clock) -> TokenVerifier:
    keys = KeySet(org.fetch_jwks, clock=clock)
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, clock=clock, leeway=30, replays=store)


async def test_the_verifier_asks_its_store_until_exp_plus_the_leeway(org: Org, clock: Clock):
    store = Recorded(replay=False)
    verifier = verifier_over(store, org, clock)
    once = f"Bearer {token(clock.now, jti='j-1')}"
    assert (await verifier.verify(once))["jti"] == "j-1"
    assert (await verifier.verify(once))["jti"] == "j-1"  # the store said "new" again: it is the one that decides
    assert store.asked == [("j-1", int(clock.now) + 300 + 30, clock.now)] * 2


async def test_a_jti_the_store_has_seen_is_refused(org: Org, clock: Clock):
    with pytest.raises(Refused) as caught:
        await verifier_over(Recorded(replay=True), org, clock).verify(f"Bearer {token(clock.now)}")
    assert (caught.value.status, caught.value.message) == (401, "token replayed")


async def test_a_token_accepted_by_one_replica_is_a_replay_at_another(org: Org, clock: Clock, redis_server):
    links = [await started(redis_server.url), await started(redis_server.url)]
    try:
        one, other = (verifier_over(RedisSeen(link, "jti"), org, clock) for link in links)
        presented = f"Bearer {token(clock.now, jti='j-fleet')}"
        assert (await one.verify(presented))["jti"] == "j-fleet"
        with pytest.raises(Refused) as caught:
            await other.verify(presented)
        assert caught.value.message == "token replayed"
        assert (await other.verify(f"Bearer {token(clock.now, jti='j-other')}"))["jti"] == "j-other"
    finally:
        for link in links:
            await link.close()
