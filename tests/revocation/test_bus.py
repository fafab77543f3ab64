"""gateway/revocation/bus.py: one revocation in, every part of the gateway told (store, cache, sockets, metrics,
audit, listeners). Real parts throughout; the Okta client is built but never started nor called."""

from __future__ import annotations

import logging
import re

import pytest
from yarl import URL

from gateway.logs import shorten
from gateway.metrics import Metrics
from gateway.okta.client import OktaClient
from gateway.okta.model import OktaSession
from gateway.revocation.bus import SOURCES, Acted, Revocation, RevocationBus
from gateway.sessions.cache import Freshness, ValidationCache
from gateway.sessions.sockets import OpenSockets
from gateway.sessions.validation import SessionValidator
from gateway.settings import CachePolicy
from gateway.store.memory import MemoryStore

NOW = 1_700_000_000.0
TOKEN = "00-api-token-that-must-never-be-logged"
ALICE_ID, ALICE_LOGIN = "00u1a2b3c4d5e6f7g8h9", "Alice@Example.com"
BOB_ID, BOB_LOGIN = "00uBOBbobBOBbobBOBbo", "bob@example.com"
S1, S2, S3 = "idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB", "idxCCCCCCCCCCCCCCCCCCCCCC"
ALICE_KEYS = (ALICE_ID, ALICE_LOGIN.lower())


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Parts:
    def __init__(self, *, remember: int = 50, validator: bool = True) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.store = MemoryStore()
        self.sockets = OpenSockets()
        client = OktaClient(URL("http://127.0.0.1:9"), TOKEN, metrics=self.metrics, clock=self.clock)
        self.cache = ValidationCache(CachePolicy())
        self.validator = SessionValidator(client, self.cache, self.metrics, clock=self.clock) if validator else None
        self.bus = RevocationBus(self.store, self.validator, self.sockets, self.metrics, clock=self.clock,
                                 remember=remember)

    def cached(self, session_id: str, user_id: str = ALICE_ID, login: str = ALICE_LOGIN) -> None:
        session = OktaSession(session_id, user_id, login, "ACTIVE", NOW + 3600, NOW - 60, ("pwd",), "OKTA")
        self.cache.store_alive(session, self.clock())

    def is_cached(self, session_id: str) -> bool:
        return self.cache.lookup(session_id, self.clock())[0] is not Freshness.MISSING

    def closed(self) -> float:
        return self.metrics.value("session_gateway_websockets_closed_total")


@pytest.fixture
def parts() -> Parts:
    return Parts()


# --- one session ------------------------------------------------------------------------------------------------


def test_a_session_revocation_tombstones_the_session(parts):
    parts.bus.publish(Revocation("event_hook", "okta_session_ended", S1, happened_at=NOW - 5))
    assert parts.store.session_ended(S1) == NOW - 5
    assert parts.store.session_ended(S2) is None


def test_a_session_revocation_evicts_its_cache_entry_only(parts):
    parts.cached(S1)
    parts.cached(S2)
    parts.bus.publish(Revocation("event_hook", "okta_session_ended", S1))
    assert not parts.is_cached(S1)
    assert parts.is_cached(S2)


def test_a_session_revocation_closes_that_sessions_sockets_and_no_others(parts):
    mine = [parts.sockets.opened(S1, ALICE_KEYS), parts.sockets.opened(S1, ALICE_KEYS)]
    other_session = parts.sockets.opened(S2, ALICE_KEYS)
    other_user = parts.sockets.opened(S3, (BOB_ID,))
    parts.bus.publish(Revocation("app_logout", "app_logout", S1))
    assert all(stop.is_set() for stop in mine)
    assert not other_session.is_set() and not other_user.is_set()
    assert parts.sockets.sessions() == [S2, S3]
    assert parts.closed() == 2


def test_the_user_named_with_one_session_is_whose_it_was_not_every_session_of_theirs(parts):
    """A lookup that found one session ended, or Okta's user.session.end, names the user for the audit line: the
    user's other sessions (other browsers, other devices) live on."""
    other = parts.sockets.opened(S2, ALICE_KEYS)
    parts.cached(S2)
    parts.bus.publish(Revocation("lookup", "okta_session_ended", S1, ALICE_ID, ALICE_LOGIN))
    assert parts.store.session_ended(S1) == NOW
    assert parts.store.user_ended_before(ALICE_ID) == 0.0
    assert parts.store.user_ended_before(ALICE_LOGIN.lower()) == 0.0
    assert not other.is_set() and parts.is_cached(S2)


def test_without_a_validator_a_session_is_still_tombstoned_and_its_sockets_closed():
    parts = Parts(validator=False)
    stop = parts.sockets.opened(S1)
    parts.bus.publish(Revocation("operator", "operator", S1))
    assert parts.store.session_ended(S1) == NOW and stop.is_set()


# --- every session of a user ------------------------------------------------------------------------------------


def test_a_user_revocation_sets_watermarks_for_the_user_id_and_the_lower_cased_login(parts):
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, ALICE_ID, ALICE_LOGIN, NOW - 30))
    assert parts.store.user_ended_before(ALICE_ID) == NOW - 30
    assert parts.store.user_ended_before("alice@example.com") == NOW - 30
    assert parts.store.user_ended_before(ALICE_LOGIN) == 0.0  # only the lower-cased key is stored
    assert parts.store.user_ended_before(BOB_ID) == 0.0


def test_a_user_revocation_by_login_alone(parts):
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, None, "BOB@example.com"))
    assert parts.store.user_ended_before(BOB_LOGIN) == NOW


def test_a_user_revocation_closes_every_socket_of_the_user_and_no_others(parts):
    by_id = parts.sockets.opened(S1, (ALICE_ID,))
    by_login = parts.sockets.opened(S2, ("alice@example.com",))
    bobs = parts.sockets.opened(S3, (BOB_ID, BOB_LOGIN))
    parts.bus.publish(Revocation("event_hook", "user_suspended", None, ALICE_ID, ALICE_LOGIN))
    assert by_id.is_set() and by_login.is_set() and not bobs.is_set()
    assert parts.sockets.sessions() == [S3]
    assert parts.closed() == 2


def test_a_user_revocation_evicts_every_cached_session_of_the_user_and_no_others(parts):
    """A suspended or cleared user's sessions must not look alive to the next sign-in (which binds what the cache
    vouches for): every entry of theirs goes, found by user id or by login, whatever the event named."""
    parts.cached(S1)
    parts.cached(S2, "00uOTHERidOfAliceXXX", "ALICE@example.com")  # the same login, another spelling
    parts.cached(S3, BOB_ID, BOB_LOGIN)
    parts.bus.publish(Revocation("event_hook", "user_suspended", None, ALICE_ID, ALICE_LOGIN))
    assert not parts.is_cached(S1) and not parts.is_cached(S2)
    assert parts.is_cached(S3)


def test_a_user_revocation_by_login_alone_evicts_the_users_sessions(parts):
    parts.cached(S1)
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, None, "alice@EXAMPLE.com"))
    assert not parts.is_cached(S1)


def test_a_user_revocation_records_that_okta_ended_the_users_sessions_unless_it_says_otherwise(parts):
    """Okta's suspend and clear end every session of the user in Okta; a Universal Logout does not say so."""
    parts.bus.publish(Revocation("event_hook", "user_suspended", None, ALICE_ID, ALICE_LOGIN, NOW - 5))
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, BOB_ID, BOB_LOGIN, in_okta=False))
    assert parts.store.okta_ended_before(ALICE_ID) == NOW - 5 == parts.store.okta_ended_before("alice@example.com")
    assert parts.store.user_ended_before(BOB_ID) == NOW and parts.store.okta_ended_before(BOB_ID) == 0.0


def test_a_session_and_all_the_users_other_sessions(parts):
    """The app's logout with logout_scope = "user": this session, and every session of the user."""
    this = parts.sockets.opened(S1, ALICE_KEYS)
    other = parts.sockets.opened(S2, ALICE_KEYS)
    parts.cached(S1)
    parts.bus.publish(Revocation("app_logout", "app_logout", S1, ALICE_ID, ALICE_LOGIN, all_sessions=True))
    assert parts.store.session_ended(S1) == NOW and not parts.is_cached(S1)
    assert parts.store.user_ended_before(ALICE_ID) == NOW
    assert parts.store.user_ended_before("alice@example.com") == NOW
    assert this.is_set() and other.is_set()
    assert parts.closed() == 2  # each socket counted once


def test_a_revocation_of_nothing_changes_nothing_but_is_still_recorded(parts):
    stop = parts.sockets.opened(S1, ALICE_KEYS)
    acted = parts.bus.publish(Revocation("operator", "test"))
    assert len(parts.store) == 0 and parts.store.generation == 0 and not stop.is_set()
    assert list(parts.bus.recent) == [acted]


# --- time -----------------------------------------------------------------------------------------------------------


def test_a_time_in_the_future_is_capped_at_now(parts):
    parts.bus.publish(Revocation("event_hook", "okta_session_ended", S1, happened_at=NOW + 3600))
    parts.bus.publish(Revocation("event_hook", "user_sessions_cleared", None, ALICE_ID, ALICE_LOGIN, NOW + 3600))
    assert parts.store.session_ended(S1) == NOW
    assert parts.store.user_ended_before(ALICE_ID) == NOW  # a binding made after now would otherwise die too


def test_without_a_source_time_now_is_used(parts):
    acted = parts.bus.publish(Revocation("lookup", "okta_session_ended", S1))
    assert parts.store.session_ended(S1) == NOW
    assert acted.acted_at == NOW and acted.latency is None


def test_latency_is_from_the_source_time_to_the_action_and_never_negative(parts):
    assert parts.bus.publish(Revocation("event_hook", "r", S1, happened_at=NOW - 2.5)).latency == 2.5
    assert parts.bus.publish(Revocation("event_hook", "r", S2, happened_at=NOW + 9)).latency == 0.0


def test_the_latency_histogram_is_observed_per_source(parts):
    parts.bus.publish(Revocation("event_hook", "okta_session_ended", S1, happened_at=NOW - 0.2))
    parts.bus.publish(Revocation("event_hook", "user_suspended", None, ALICE_ID, happened_at=NOW - 40))
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, BOB_ID, happened_at=NOW - 1))
    parts.bus.publish(Revocation("lookup", "okta_session_ended", S2))  # no source time: no latency
    value = parts.metrics.value
    assert value("session_gateway_revocation_latency_seconds_count", source="event_hook") == 2
    assert value("session_gateway_revocation_latency_seconds_sum", source="event_hook") == pytest.approx(40.2)
    assert value("session_gateway_revocation_latency_seconds_bucket", source="event_hook", le="0.25") == 1
    assert value("session_gateway_revocation_latency_seconds_count", source="universal_logout") == 1
    assert value("session_gateway_revocation_latency_seconds_count", source="lookup") == 0
    assert value("session_gateway_revocations_total", source="lookup") == 1
    assert value("session_gateway_revocations_total", source="event_hook") == 2


# --- recent, listeners ------------------------------------------------------------------------------------------


def test_recent_keeps_the_newest_first_and_is_bounded():
    parts = Parts(remember=3)
    published = [Revocation("operator", f"r{i}", None, ALICE_ID) for i in range(5)]
    for r in published:
        parts.clock.now += 1
        parts.bus.publish(r)
    assert [a.revocation.reason for a in parts.bus.recent] == ["r4", "r3", "r2"]
    assert [a.acted_at for a in parts.bus.recent] == [NOW + 5, NOW + 4, NOW + 3]


def test_every_listener_receives_each_revocation_in_order_with_when_it_was_acted_on(parts):
    first: list[Acted] = []
    second: list[Acted] = []
    parts.bus.listeners.extend([first.append, second.append])
    published = [Revocation("event_hook", "okta_session_ended", S1), Revocation("operator", "x", None, BOB_ID)]
    for r in published:
        parts.clock.now += 1
        parts.bus.publish(r)
    assert first == second == [Acted(published[0], NOW + 1), Acted(published[1], NOW + 2)]


def test_a_listener_sees_the_revocation_after_it_was_acted_on(parts):
    seen: list[tuple[float | None, bool]] = []
    parts.bus.listeners.append(lambda r: seen.append((parts.store.session_ended(S1), parts.is_cached(S1))))
    parts.cached(S1)
    parts.bus.publish(Revocation("event_hook", "okta_session_ended", S1))
    assert seen == [(NOW, False)]


# --- taken elsewhere: apply_remote(), learn() -----------------------------------------------------------------


def test_a_revocation_from_another_replica_acts_here_with_its_times_and_reaches_no_listener(parts):
    """Its times are capped at when the other replica acted, as they were there (a cutoff capped at this replica's
    later now would void bindings made since); and no listener hears of it, so the fan-out never echoes it."""
    heard: list[Acted] = []
    parts.bus.listeners.append(heard.append)
    parts.cached(S1)
    parts.cached(S3, BOB_ID, BOB_LOGIN)
    stop = parts.sockets.opened(S3, (BOB_ID, BOB_LOGIN))
    parts.clock.now = NOW + 300
    parts.bus.apply_remote(Revocation("event_hook", "okta_session_ended", S1), NOW, "other")
    acted = parts.bus.apply_remote(Revocation("universal_logout", "ul", None, BOB_ID, BOB_LOGIN, in_okta=False),
                                   NOW + 1, "other")
    assert parts.store.session_ended(S1) == NOW and not parts.is_cached(S1)
    assert parts.store.user_ended_before(BOB_LOGIN) == NOW + 1 and parts.store.okta_ended_before(BOB_ID) == 0.0
    assert stop.is_set() and not parts.is_cached(S3)
    assert heard == [] and acted == Acted(acted.revocation, NOW + 300, "other")
    assert parts.metrics.value("session_gateway_revocations_total", source="event_hook") == 0  # counted where taken


def test_the_audit_line_of_a_fanned_in_revocation_says_from_where(parts, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    parts.bus.apply_remote(Revocation("event_hook", "okta_session_ended", S1, happened_at=NOW - 2), NOW - 1, "pod-b")
    [line] = audit_lines(caplog)
    assert line["fanned_in"] == "pod-b" and line["session"] == shorten(S1) and line["acted_at"] == f"{NOW:.3f}"


def test_learn_records_only_what_is_new_and_acts_only_on_that(parts):
    """A reload is a merge: a known tombstone keeps its first time, a watermark only moves forward, and only what is
    new evicts cache entries and closes sockets (a user's sockets stay open for an old watermark)."""
    parts.bus.publish(Revocation("lookup", "okta_session_ended", S1, happened_at=NOW - 10))
    parts.bus.publish(Revocation("operator", "x", None, ALICE_ID, happened_at=NOW - 5))
    alices = parts.sockets.opened(S2, (ALICE_ID,))
    bobs = parts.sockets.opened(S3, (BOB_ID,))
    parts.cached(S2)
    new = parts.bus.learn({S1: NOW - 1, S3: NOW - 2}, {ALICE_ID: NOW - 50, BOB_ID: NOW - 3}, {BOB_ID: NOW - 3})
    assert new == 3
    assert parts.store.session_ended(S1) == NOW - 10 and parts.store.session_ended(S3) == NOW - 2
    assert parts.store.user_ended_before(ALICE_ID) == NOW - 5 and parts.store.user_ended_before(BOB_ID) == NOW - 3
    assert parts.store.okta_ended_before(BOB_ID) == NOW - 3
    assert bobs.is_set() and not alices.is_set() and parts.is_cached(S2)
    assert parts.bus.learn({S1: NOW}, {BOB_ID: NOW - 3}, {BOB_ID: NOW - 4}) == 0


def test_learn_with_equal_user_and_okta_watermarks_still_evicts_the_users_sessions(parts):
    parts.cached(S1)
    stop = parts.sockets.opened(S1, ALICE_KEYS)
    parts.bus.learn({}, {ALICE_ID: NOW - 1}, {ALICE_ID: NOW - 1})
    assert stop.is_set() and not parts.is_cached(S1)
    assert parts.store.okta_ended_before(ALICE_ID) == NOW - 1


# --- audit --------------------------------------------------------------------------------------------------------

FIELDS = {"source", "reason", "scope", "session", "user", "login", "happened_at", "acted_at"}


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    lines = []
    for record in caplog.records:
        if record.name == "gateway.audit":
            assert record.levelno == logging.INFO
            message = record.getMessage()
            assert message.startswith("revocation ")
            lines.append(dict(re.findall(r"(\w+)=(\S+)", message)))
    return lines


@pytest.mark.parametrize("source", SOURCES)
def test_the_audit_line_names_source_reason_session_and_user(parts, caplog, source):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    parts.bus.publish(Revocation(source, "okta_session_ended", S1, ALICE_ID, ALICE_LOGIN, NOW - 1.5))
    [line] = audit_lines(caplog)
    assert set(line) == FIELDS
    assert line == {"source": source, "reason": "okta_session_ended", "scope": "session", "session": shorten(S1),
                    "user": ALICE_ID, "login": ALICE_LOGIN, "happened_at": f"{NOW - 1.5:.3f}",
                    "acted_at": f"{NOW:.3f}"}
    [record] = [r for r in caplog.records if r.name == "gateway.audit"]
    fields = {k: getattr(record, k) for k in ("event", "source", "reason", "scope", "session", "user_id", "login",
                                               "happened_at", "acted_at", "fanned_in")}
    assert fields == {"event": "revocation", "source": source, "reason": "okta_session_ended", "scope": "session",
                      "session": shorten(S1), "user_id": ALICE_ID, "login": ALICE_LOGIN, "happened_at": NOW - 1.5,
                      "acted_at": NOW, "fanned_in": None}  # the same facts as fields of a JSON line


def test_the_audit_line_of_a_user_revocation_without_a_session(parts, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    parts.bus.publish(Revocation("universal_logout", "universal_logout", None, ALICE_ID))
    [line] = audit_lines(caplog)
    assert (line["scope"], line["session"], line["user"], line["login"], line["happened_at"]) == (
        "user", "-", ALICE_ID, "-", "-")


def test_the_audit_line_carries_nothing_secret(parts, caplog):
    caplog.set_level(logging.DEBUG)
    parts.cached(S1)
    parts.sockets.opened(S1, ALICE_KEYS)
    parts.bus.publish(Revocation("app_logout", "app_logout", S1, ALICE_ID, ALICE_LOGIN, all_sessions=True))
    assert TOKEN not in caplog.text and S1 not in caplog.text
    for record in caplog.records:
        assert TOKEN not in repr(record.args) and S1 not in repr(record.__dict__)
    [line] = audit_lines(caplog)
    assert set(line) == FIELDS  # what is named, and nothing else
