"""gateway/store/memory.py: tombstones and per-user watermarks in this process, bounded and forgotten in time."""

from __future__ import annotations

from gateway.store import RevocationStore
from gateway.store.memory import MemoryStore

T = 1_700_000_000.0
S1, S2, S3 = "idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB", "idxCCCCCCCCCCCCCCCCCCCCCC"
ALICE, BOB, CAROL = "00u1a2b3c4d5e6f7g8h9", "00uBOBbobBOBbobBOBbo", "00uCAROLcarolCAROLca"


def test_it_is_a_revocation_store():
    store: RevocationStore = MemoryStore()
    assert store.generation == 0


# --- tombstones ---------------------------------------------------------------------------------------------------


def test_a_tombstone_says_when_the_session_ended():
    store = MemoryStore()
    assert store.session_ended(S1) is None
    store.end_session(S1, T)
    assert store.session_ended(S1) == T
    assert store.session_ended(S2) is None
    assert len(store) == 1


def test_a_second_tombstone_of_a_session_keeps_the_first_time():
    store = MemoryStore()
    store.end_session(S1, T)
    store.end_session(S1, T + 50)
    store.end_session(S1, T - 50)
    assert store.session_ended(S1) == T and len(store) == 1


# --- watermarks -------------------------------------------------------------------------------------------------


def test_a_user_without_a_watermark_has_zero():
    assert MemoryStore().user_ended_before(ALICE) == 0.0


def test_a_watermark_is_kept_per_user_key():
    store = MemoryStore()
    store.end_user(ALICE, T)
    store.end_user("alice@example.com", T + 1)
    assert (store.user_ended_before(ALICE), store.user_ended_before("alice@example.com")) == (T, T + 1)
    assert store.user_ended_before(BOB) == 0.0


def test_a_watermark_only_moves_forward_whatever_order_events_come_in():
    store = MemoryStore()
    store.end_user(ALICE, T + 10)  # the later event arrives first
    store.end_user(ALICE, T)
    assert store.user_ended_before(ALICE) == T + 10
    store.end_user(ALICE, T + 20)
    assert store.user_ended_before(ALICE) == T + 20
    assert len(store) == 1


def test_tombstones_and_watermarks_do_not_mix():
    store = MemoryStore()
    store.end_session(ALICE, T)  # the same string as both kinds of key
    assert store.user_ended_before(ALICE) == 0.0
    store.end_user(S1, T)
    assert store.session_ended(S1) is None


# --- generation ---------------------------------------------------------------------------------------------------


def test_the_generation_changes_on_every_change():
    store = MemoryStore()
    seen = [store.generation]
    store.end_session(S1, T)
    seen.append(store.generation)
    store.end_session(S2, T)
    seen.append(store.generation)
    store.end_user(ALICE, T)
    seen.append(store.generation)
    store.end_user(ALICE, T + 1)  # a watermark moved forward
    seen.append(store.generation)
    assert len(set(seen)) == len(seen)


def test_the_generation_does_not_change_on_no_ops():
    store = MemoryStore()
    store.end_session(S1, T)
    store.end_user(ALICE, T + 10)
    before = store.generation
    store.end_session(S1, T + 5)  # already a tombstone
    store.end_user(ALICE, T)  # older than the watermark
    store.end_user(ALICE, T + 10)  # the same
    store.end_user(BOB, 0.0)  # nothing before the epoch to revoke
    assert store.generation == before


# --- bounds and retention -----------------------------------------------------------------------------------------


def test_at_most_max_entries_tombstones_oldest_out():
    store = MemoryStore(max_entries=2)
    store.end_session(S1, T)
    store.end_session(S2, T + 1)
    store.end_session(S3, T + 2)
    assert store.session_ended(S1) is None
    assert (store.session_ended(S2), store.session_ended(S3)) == (T + 1, T + 2)
    assert len(store) == 2


def test_at_most_max_entries_watermarks_oldest_written_out():
    store = MemoryStore(max_entries=2)
    store.end_user(ALICE, T)
    store.end_user(BOB, T + 1)
    store.end_user(ALICE, T + 2)  # moved forward: written last now
    store.end_user(CAROL, T + 3)
    assert store.user_ended_before(BOB) == 0.0
    assert (store.user_ended_before(ALICE), store.user_ended_before(CAROL)) == (T + 2, T + 3)


def test_each_table_has_its_own_bound():
    store = MemoryStore(max_entries=1)
    store.end_session(S1, T)
    store.end_user(ALICE, T)
    assert store.session_ended(S1) == T and store.user_ended_before(ALICE) == T
    assert len(store) == 2


def test_what_is_past_retention_is_forgotten_and_the_rest_kept():
    store = MemoryStore(retention=100.0)
    store.end_session(S1, T)
    store.end_session(S2, T + 50)
    store.end_user(ALICE, T)
    store.end_user(BOB, T + 50)
    store.forget_older_than(T + 120)
    assert store.session_ended(S1) is None and store.session_ended(S2) == T + 50
    assert store.user_ended_before(ALICE) == 0.0 and store.user_ended_before(BOB) == T + 50
    assert len(store) == 2


def test_an_entry_exactly_at_the_retention_limit_is_kept():
    store = MemoryStore(retention=100.0)
    store.end_session(S1, T)
    store.forget_older_than(T + 100)
    assert store.session_ended(S1) == T
    store.forget_older_than(T + 100.001)
    assert store.session_ended(S1) is None


def test_a_forgotten_session_can_be_tombstoned_again():
    store = MemoryStore(retention=10.0)
    store.end_session(S1, T)
    store.forget_older_than(T + 20)
    before = store.generation
    store.end_session(S1, T + 30)
    assert store.session_ended(S1) == T + 30 and store.generation != before


# --- when Okta ended every session of the user ---------------------------------------------------------------------


def test_okta_ended_before_is_set_only_when_the_revocation_says_okta_ended_the_sessions():
    store = MemoryStore()
    store.end_user(ALICE, T)
    assert store.user_ended_before(ALICE) == T and store.okta_ended_before(ALICE) == 0.0
    store.end_user(ALICE, T + 10, in_okta=True)
    assert store.user_ended_before(ALICE) == T + 10 == store.okta_ended_before(ALICE)
    store.end_user(ALICE, T + 5, in_okta=True)  # only forward
    assert store.okta_ended_before(ALICE) == T + 10
    assert store.okta_ended_before(BOB) == 0.0


def test_okta_ended_before_is_bounded_and_forgotten_like_the_watermarks():
    store = MemoryStore(retention=100, max_entries=1)
    store.end_user(ALICE, T, in_okta=True)
    store.end_user(BOB, T + 1, in_okta=True)
    assert store.okta_ended_before(ALICE) == 0.0 and store.okta_ended_before(BOB) == T + 1
    store.forget_older_than(T + 200)
    assert store.okta_ended_before(BOB) == 0.0 and len(store) == 0
