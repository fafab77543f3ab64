"""The jti replay store: the memory store on its own, and the verifier asking the store it is given."""

from __future__ import annotations

import asyncio

import pytest
from revocation.jwt_support import AUDIENCE, ISSUER, Clock, Org, token

from gateway.revocation.jwks import KeySet
from gateway.revocation.refusal import Refused
from gateway.revocation.replays import MemoryReplayStore
from gateway.revocation.tokens import TokenVerifier


async def test_remembered_jtis_are_bounded_expired_ones_first_then_the_soonest_to_expire():
    seen = MemoryReplayStore(3)
    assert (not await seen.seen("a", until=100, now=0) and not await seen.seen("b", until=50, now=0)
            and not await seen.seen("c", until=200, now=0))
    assert await seen.seen("a", until=100, now=10)
    assert not await seen.seen("d", until=300, now=60)  # b has expired: dropped, nothing live is lost
    assert len(seen) == 3 and await seen.seen("a", until=100, now=61)
    assert not await seen.seen("e", until=400, now=61)  # full of live jtis: a, the soonest to expire, goes
    assert len(seen) == 3 and not await seen.seen("a", until=100, now=62) and await seen.seen("e", until=400, now=62)


async def test_a_jti_is_a_replay_until_its_time_and_not_at_it():
    seen = MemoryReplayStore()
    assert not await seen.seen("a", until=100, now=0)
    assert await seen.seen("a", until=500, now=99.5)  # a replay does not move the first until
    assert not await seen.seen("a", until=200, now=100)
    assert await seen.seen("a", until=200, now=150)


async def test_of_two_callers_with_one_jti_one_hears_it_is_new():
    seen = MemoryReplayStore()
    answers = await asyncio.gather(*(seen.seen("a", until=100, now=0) for _ in range(10)))
    assert answers.count(False) == 1


class Recorded:
    """A replay store that keeps nothing and says what it was asked."""

    def __init__(self, replay: bool) -> None:
        self.replay = replay
        self.asked: list[tuple[str, float, float]] = []

    async def seen(self, jti: str, until: float, now: float) -> bool:
        self.asked.append((jti, until, now))
        return self.replay


def verifier_over(store: Recorded, org: Org, clock: Clock) -> TokenVerifier:
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
