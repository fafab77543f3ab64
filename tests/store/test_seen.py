"""gateway/store/seen.py: the memory "seen once" set on its own (bounded, in time, one step), and the digest that
keeps a hostile key small."""

from __future__ import annotations

import asyncio

from gateway.store.seen import MemorySeen, SeenOnce, digest


async def test_remembered_keys_are_bounded_expired_ones_first_then_the_soonest_to_expire():
    seen = MemorySeen(3)
    assert (not await seen.seen("a", until=100, now=0) and not await seen.seen("b", until=50, now=0)
            and not await seen.seen("c", until=200, now=0))
    assert await seen.seen("a", until=100, now=10)
    assert not await seen.seen("d", until=300, now=60)  # b has expired: dropped, nothing live is lost
    assert len(seen) == 3 and await seen.seen("a", until=100, now=61)
    assert not await seen.seen("e", until=400, now=61)  # full of live keys: a, the soonest to expire, goes
    assert len(seen) == 3 and not await seen.seen("a", until=100, now=62) and await seen.seen("e", until=400, now=62)


async def test_a_key_is_a_replay_until_its_time_and_not_at_it():
    seen: SeenOnce = MemorySeen()
    assert not await seen.seen("a", until=100, now=0)
    assert await seen.seen("a", until=500, now=99.5)  # a replay does not move the first until
    assert not await seen.seen("a", until=200, now=100)
    assert await seen.seen("a", until=200, now=150)


async def test_a_key_past_its_time_is_not_kept():
    seen = MemorySeen()
    assert not await seen.seen("a", until=100, now=100)
    assert len(seen) == 0 and not await seen.seen("a", until=200, now=101)


async def test_of_two_callers_with_one_key_one_hears_it_is_new():
    seen = MemorySeen()
    answers = await asyncio.gather(*(seen.seen("a", until=100, now=0) for _ in range(10)))
    assert answers.count(False) == 1


def test_a_hostile_key_is_kept_as_64_hex_characters_whatever_its_bytes():
    hostile = "\udcff\x00\r\n" * 2560 + "é"  # 10 KB, a lone surrogate (an odd byte as aiohttp hands it), NUL, CRLF
    assert len(digest(hostile)) == 64 and set(digest(hostile)) <= set("0123456789abcdef")
    assert digest(hostile) != digest(hostile[:-1]) and digest("a") == digest("a")


async def test_the_memory_set_keeps_the_digest_not_the_key():
    seen = MemorySeen()
    hostile = "x" * 10_240
    assert not await seen.seen(hostile, until=100, now=0) and await seen.seen(hostile, until=100, now=1)
    assert list(seen._until) == [digest(hostile)]
