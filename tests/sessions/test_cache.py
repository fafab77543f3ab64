"""The validation cache's rules, case by case, with plain values and a clock that is just a number."""

from __future__ import annotations

from dataclasses import replace

from gateway.okta.model import OktaSession
from gateway.sessions.cache import Entry, Freshness, ValidationCache
from gateway.settings import CachePolicy

T0 = 1_000_000.0
SESSION = OktaSession("idxffK-esRDSrC5m0ly-Kma9A", "00u0abcdefGHIJKLMNOP", "a@example.com", "ACTIVE",
                      expires_at=T0 + 3600, created_at=T0, amr=("pwd",), idp_type="OKTA")


def cache(**policy: float) -> ValidationCache:
    return ValidationCache(CachePolicy(**{"ttl": 60, "negative_ttl": 30, "revalidate": 15, **policy}))


def test_a_live_entry_is_fresh_then_wants_refresh_then_is_missing():
    c = cache()
    c.store_alive(SESSION, T0)
    assert c.lookup(SESSION.id, T0 + 59.9)[0] is Freshness.FRESH
    assert c.lookup(SESSION.id, T0 + 60)[0] is Freshness.REFRESH  # the TTL is over: served while revalidated
    assert c.lookup(SESSION.id, T0 + 75) == (Freshness.MISSING, None)


def test_the_revalidation_window_never_passes_expires_at():
    c = cache()
    c.store_alive(replace(SESSION, expires_at=T0 + 65), T0)
    assert c.lookup(SESSION.id, T0 + 64)[0] is Freshness.REFRESH
    assert c.lookup(SESSION.id, T0 + 65)[0] is Freshness.MISSING


def test_an_entry_dies_at_expires_at_even_inside_its_ttl():
    c = cache()
    c.store_alive(replace(SESSION, expires_at=T0 + 10), T0)
    assert c.lookup(SESSION.id, T0 + 9.9)[0] is not Freshness.MISSING
    assert c.lookup(SESSION.id, T0 + 10)[0] is Freshness.MISSING


def test_a_gone_session_is_cached_negatively_for_its_own_ttl_and_never_refreshed():
    c = cache()
    c.store_gone(SESSION.id, T0)
    freshness, entry = c.lookup(SESSION.id, T0 + 29)
    assert freshness is Freshness.FRESH and entry is not None and entry.session is None
    assert c.lookup(SESSION.id, T0 + 30)[0] is Freshness.MISSING


def test_stretch_lengthens_the_ttl_but_not_past_expires_at():
    c = cache()
    c.store_alive(SESSION, T0, stretch=4)
    assert c.lookup(SESSION.id, T0 + 239)[0] is Freshness.FRESH
    assert c.lookup(SESSION.id, T0 + 240)[0] is Freshness.REFRESH
    c.store_alive(replace(SESSION, expires_at=T0 + 100), T0, stretch=4)
    assert c.lookup(SESSION.id, T0 + 100)[0] is Freshness.MISSING


def test_the_last_alive_entry_outlives_its_ttl_for_grace_but_not_expires_at():
    c = cache()
    c.store_alive(SESSION, T0)
    assert c.last_alive(SESSION.id, T0 + 600) is not None
    assert c.last_alive(SESSION.id, T0 + 3600) is None
    c.store_gone(SESSION.id, T0 + 1)
    assert c.last_alive(SESSION.id, T0 + 2) is None


def test_least_recently_used_entries_go_first():
    c = cache(max_entries=2)
    a, b, d = (replace(SESSION, id=SESSION.id[:-1] + ch) for ch in "ABD")
    c.store_alive(a, T0)
    c.store_alive(b, T0)
    c.lookup(a.id, T0)  # a is used again: b is now the oldest
    c.store_alive(d, T0)
    assert len(c) == 2
    assert c.lookup(b.id, T0)[0] is Freshness.MISSING
    assert c.lookup(a.id, T0)[0] is Freshness.FRESH


def test_evict():
    c = cache()
    c.store_alive(SESSION, T0)
    c.evict(SESSION.id)
    assert c.lookup(SESSION.id, T0) == (Freshness.MISSING, None)
    assert c.last_alive(SESSION.id, T0) is None


# --- the user index: a user-wide revocation evicts every session of the user -------------------------------------

BOBS = replace(SESSION, id="idxBOBbobBOBbobBOBbobBOBb", user_id="00uBOBbobBOBbobBOBbo", login="bob@example.com")


def test_evict_user_drops_every_entry_of_the_user_by_id_or_by_lower_cased_login():
    c = cache()
    second = replace(SESSION, id="idxSECONDsecondSECONDsecon")
    c.store_alive(SESSION, T0)
    c.store_alive(second, T0)
    c.store_alive(BOBS, T0)
    assert c.evict_user([SESSION.user_id]) == 2
    assert c.lookup(SESSION.id, T0)[0] is Freshness.MISSING and c.lookup(second.id, T0)[0] is Freshness.MISSING
    assert c.lookup(BOBS.id, T0)[0] is Freshness.FRESH
    assert c.evict_user(["bob@example.com"]) == 1 and len(c) == 0


def test_evict_user_of_a_user_with_nothing_cached_drops_nothing():
    c = cache()
    c.store_alive(SESSION, T0)
    assert c.evict_user(["00uNOBODYnobodyNOBOD", "nobody@example.com"]) == 0
    assert c.lookup(SESSION.id, T0)[0] is Freshness.FRESH


def test_the_index_follows_replacement_eviction_and_lru_so_it_stays_bounded():
    c = cache(max_entries=2)
    c.store_alive(SESSION, T0)
    c.store_gone(SESSION.id, T0)  # replaced by a negative entry: no longer the user's live session
    assert c.evict_user([SESSION.user_id]) == 0 and c.lookup(SESSION.id, T0)[0] is Freshness.FRESH
    c.store_alive(SESSION, T0)
    c.evict(SESSION.id)
    assert c._by_user == {}
    for n in range(50):  # far more sessions than the cache holds: the index holds only what the cache holds
        c.store_alive(replace(SESSION, id=f"idx{n:022d}", user_id=f"00u{n:017d}", login=f"u{n}@example.com"), T0)
    assert len(c) == 2 and sum(len(ids) for ids in c._by_user.values()) == 4 and len(c._by_user) == 4


def test_an_adopted_answer_keeps_its_fetch_time_so_the_fleet_revalidates_once_per_ttl():
    c = cache()
    entry = c.adopt(SESSION.id, SESSION, fetched_at=T0, fresh_until=T0 + 60, now=T0 + 20)
    assert entry is not None and (entry.fetched_at, entry.fresh_until, entry.good_until) == (T0, T0 + 60, T0 + 75)
    assert c.lookup(SESSION.id, T0 + 60)[0] is Freshness.REFRESH
    assert c.sessions_of([SESSION.user_id]) == {SESSION.id}  # indexed under its user, as a stored one


def test_an_adopted_answer_is_held_to_this_caches_own_ttl_and_to_expires_at():
    c = cache()
    entry = c.adopt(SESSION.id, SESSION, fetched_at=T0, fresh_until=T0 + 10 * 86_400, now=T0)
    assert entry is not None and entry.fresh_until == T0 + 60  # what the writer says is not the last word
    stretched = c.adopt(SESSION.id, SESSION, fetched_at=T0, fresh_until=T0 + 10 * 86_400, now=T0, stretch=4)
    assert stretched is not None and stretched.fresh_until == T0 + 240
    ending = c.adopt(SESSION.id, replace(SESSION, expires_at=T0 + 30), fetched_at=T0, fresh_until=T0 + 60, now=T0)
    assert ending is not None and ending.fresh_until == ending.good_until == T0 + 30
    ahead = c.adopt(SESSION.id, SESSION, fetched_at=T0 + 500, fresh_until=T0 + 560, now=T0)  # a clock ahead
    assert ahead is not None and (ahead.fetched_at, ahead.fresh_until) == (T0, T0 + 60)


def test_an_adopted_answer_that_is_no_longer_fresh_is_a_miss_and_kept_nowhere():
    c = cache()
    assert c.adopt(SESSION.id, SESSION, fetched_at=T0, fresh_until=T0 + 60, now=T0 + 60) is None
    assert c.adopt(SESSION.id, None, fetched_at=T0, fresh_until=T0 + 300, now=T0 + 30) is None  # negative_ttl 30
    assert len(c) == 0


def test_an_adopted_gone_answer_is_a_negative_entry_for_at_most_negative_ttl():
    c = cache()
    entry = c.adopt(SESSION.id, None, fetched_at=T0, fresh_until=T0 + 300, now=T0 + 10)
    assert entry is not None and entry.session is None and entry.fresh_until == entry.good_until == T0 + 30


def test_a_kept_entry_is_held_until_it_is_replaced_evicted_or_no_longer_served_stale():
    """What the enforcer's warm hit relies on: an entry is never changed in place, so the one it kept is still
    the held one exactly while `entries` gives that same object."""
    c = cache()

    def holds(entry: Entry | None) -> bool:
        return entry is not None and entry.session is not None and c.entries.get(entry.session.id) is entry

    kept = c.store_alive(SESSION, T0)
    assert holds(kept)
    c.stop_serving_stale(SESSION.id)  # a failed revalidation: the held entry is another one now
    assert not holds(kept)
    kept = c.store_alive(SESSION, T0 + 1)
    assert holds(kept) and not holds(c.store_gone("other", T0))  # a gone session's entry vouches for none
    c.store_alive(SESSION, T0 + 2)
    assert not holds(kept)
    kept = c.lookup(SESSION.id, T0 + 2)[1]
    assert holds(kept)
    c.evict_user([SESSION.user_id])
    assert not holds(kept)
