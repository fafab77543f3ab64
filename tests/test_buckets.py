"""gateway/buckets.py with plain values: the one token bucket of the tree, and the budget of a shared bucket and one
per client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.buckets import Budget, TokenBucket, client_key


def test_a_bucket_spends_its_burst_then_refills_at_its_rate():
    bucket = TokenBucket(3, 2.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(100.0) == pytest.approx(0.5)
    assert not bucket.take(100.4)
    assert bucket.take(100.5)  # one token after half a second at 2 a second
    assert bucket.level(200.0) == 3  # never above the burst


def test_a_refused_take_spends_nothing():
    bucket = TokenBucket(1, 1.0, now=0.0)
    assert bucket.take(0.0)
    for _ in range(100):
        assert not bucket.take(0.5)
    assert bucket.take(1.0)  # the refused takes did not push the refill back


def test_give_back_returns_one_token_never_above_the_burst():
    bucket = TokenBucket(2, 1.0, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    bucket.give_back()
    assert bucket.take(0.0) and not bucket.take(0.0)
    full = TokenBucket(2, 1.0, now=0.0)
    for _ in range(5):
        full.give_back()
    assert full.level(0.0) == 2


def test_a_clock_that_goes_back_refills_nothing():
    bucket = TokenBucket(1, 1.0, now=50.0)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)
    assert bucket.wait(10.0) == 1.0
    assert bucket.take(51.0)


@pytest.mark.parametrize(("burst", "rate"), [(0.5, 1.0), (1, 0.0), (1, -1.0)])
def test_a_bucket_that_could_never_give_a_token_is_refused(burst, rate):
    with pytest.raises(ValueError):
        TokenBucket(burst, rate, now=0.0)


@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=60))
def test_a_bucket_gives_at_most_its_burst_plus_its_rate_over_time(steps):
    bucket, now, taken, given_back = TokenBucket(2, 1.5, now=0.0), 0.0, 0, 0
    for elapsed, refund in steps:
        now += elapsed
        if bucket.take(now):
            taken += 1
            if refund:
                bucket.give_back()
                given_back += 1
        assert 0 <= bucket.level(now) <= 2
    assert taken - given_back <= 2 + 1.5 * now + 1e-9


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.9", "198.51.100.9"),
    ("-", "-"),
    ("proxy.example", "proxy.example"),
])
def test_a_client_is_its_address_an_ipv6_one_by_its_64(address, key):
    assert client_key(address) == key


def budget(**overrides: float) -> Budget:
    values = {"burst": 2, "per_second": 1.0, "shared_burst": 5, "shared_per_second": 2.0, "now": 0.0,
              "max_clients": 3, **overrides}
    return Budget(**values)  # type: ignore[arg-type]


def test_one_client_spends_its_own_bucket_and_not_the_others():
    b = budget()
    assert [b.take("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert b.wait("10.0.0.1", 0.0) == pytest.approx(1.0)
    assert b.take("10.0.0.2", 0.0) and b.wait("10.0.0.2", 0.0) == 0


def test_every_client_together_spend_at_most_the_shared_bucket():
    b = budget(max_clients=100)
    spent = [b.take(f"10.0.0.{i}", 0.0) for i in range(20)]
    assert spent.count(True) == 5
    assert b.wait("10.0.0.99", 0.0) == pytest.approx(0.5)  # a new client waits on the shared bucket


def test_a_token_comes_from_both_buckets_or_from_neither():
    b = budget(shared_burst=1)
    assert b.take("10.0.0.1", 0.0)
    assert not b.take("10.0.0.2", 0.0)  # the shared bucket is empty: the client's is not spent
    assert b.take("10.0.0.2", 0.5) and b.take("10.0.0.2", 1.0)  # both of its own tokens are still there
    c = budget()
    assert c.take("10.0.0.1", 0.0) and c.take("10.0.0.1", 0.0) and not c.take("10.0.0.1", 0.0)
    assert c.shared.level(0.0) == 3  # the client's empty bucket spent nothing of the shared one


def test_give_back_returns_to_both():
    b = budget()
    for _ in range(50):
        assert b.take("10.0.0.1", 0.0)
        b.give_back("10.0.0.1")
    assert b.shared.level(0.0) == 5 and b.wait("10.0.0.1", 0.0) == 0


def test_the_addresses_of_one_ipv6_64_share_one_bucket():
    b = budget()
    assert b.take("2001:db8::1", 0.0) and b.take("2001:db8::2:3", 0.0)
    assert not b.take("2001:db8:0:0:ffff::9", 0.0)
    assert b.take("2001:db8:0:1::1", 0.0)  # another /64
    assert len(b) == 2


def test_the_table_of_clients_is_bounded_and_forgets_the_least_recently_seen():
    b = budget(shared_burst=100)
    for client in ("a", "b", "c"):
        assert b.take(client, 0.0)
    assert b.take("a", 0.0)  # seen again: "b" is now the oldest
    assert b.take("d", 0.0)
    assert len(b) == 3
    assert not b.take("a", 0.0)  # still remembered, empty
    assert b.take("b", 0.0) and b.take("b", 0.0)  # forgotten: it starts again with a full bucket
