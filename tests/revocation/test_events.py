"""gateway/revocation/events.py: Okta event hook deliveries in, `Revocation`s out (plain values, no I/O).

Events are built in Okta's shape with the sandbox's `make_event`, then bent into every malformed shape a hostile
or broken sender could post: none of them may raise, and no id that fails Okta's patterns may come out.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.revocation.bus import Revocation
from gateway.revocation.events import events_of, revocation_of
from gateway.sandbox.okta.events import Actor, make_event

ALICE = Actor("00u1a2b3c4d5e6f7g8h9", "Alice@Example.com", "Alice")
ADMIN = Actor("00uADMINadmin0000000", "admin@example.com", "Admin")
APP = Actor("0oa1a2b3c4d5e6f7g8h9", "HR portal", "HR portal", type="AppInstance")
API_CLIENT = Actor("0oaSERVICEservice000", "okta-api-client", "API client", type="PublicClientApp")

ALICE_SESSION = "idxALICEaliceALICE-alice_"
ADMIN_SESSION = "idxADMINadminADMIN-admin_"
CLASSIC_SESSION = "102zS5WxhaCQ0C2ywWz-Y7Y3w"

PUBLISHED = datetime(2023, 3, 28, 17, 3, 37, 93_000, tzinfo=UTC)
PUBLISHED_AT = PUBLISHED.timestamp()  # 1680023017.093


def event(kind: str, *, actor: Actor = ALICE, targets: list[Actor] | None = None,
          external: str = ALICE_SESSION, ended: str | None = None) -> dict[str, Any]:
    return make_event(kind, published=PUBLISHED, actor=actor, targets=targets or [], external_session_id=external,
                      transaction_id="txn-1", ended_session_id=ended)


def delivery(*events: Any) -> dict[str, Any]:
    return {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
            "source": "https://example.okta.com/api/v1/eventHooks/who7", "eventId": "85b60edb",
            "eventTime": "2023-03-28T17:03:37.093Z", "contentType": "application/json",
            "data": {"events": list(events)}}


# --- user.session.end -----------------------------------------------------------------------------------------


def test_a_user_signing_out_names_the_ended_session_with_ended_session_id():
    revocation = revocation_of(event("user.session.end", ended=ALICE_SESSION))
    assert revocation == Revocation("event_hook", "okta_session_ended", ALICE_SESSION, ALICE.id,
                                    "Alice@Example.com", PUBLISHED_AT)


def test_an_admin_ending_a_session_with_ended_session_id_ends_that_session_of_the_target():
    revocation = revocation_of(event("user.session.end", actor=ADMIN, targets=[ALICE], external=ADMIN_SESSION,
                                     ended=ALICE_SESSION))
    assert revocation is not None
    assert revocation.session_id == ALICE_SESSION  # not the admin's own session
    assert (revocation.user_id, revocation.login) == (ALICE.id, "Alice@Example.com")  # whose it was: the target


def test_ended_session_id_wins_over_external_session_id():
    revocation = revocation_of(event("user.session.end", external=ALICE_SESSION, ended=CLASSIC_SESSION))
    assert revocation is not None and revocation.session_id == CLASSIC_SESSION


def test_one_session_ending_is_not_the_end_of_every_session_of_the_user():
    revocation = revocation_of(event("user.session.end", ended=ALICE_SESSION))
    assert revocation is not None and not revocation.user_wide and revocation.user_keys() == []


def test_without_ended_session_id_an_own_sign_out_uses_external_session_id():
    revocation = revocation_of(event("user.session.end", external=ALICE_SESSION))
    assert revocation is not None
    assert (revocation.session_id, revocation.user_id, revocation.reason) == (ALICE_SESSION, ALICE.id,
                                                                              "okta_session_ended")


def test_an_own_sign_out_with_the_user_also_among_the_targets_uses_external_session_id():
    revocation = revocation_of(event("user.session.end", targets=[ALICE, APP], external=ALICE_SESSION))
    assert revocation is not None and revocation.session_id == ALICE_SESSION


def test_without_ended_session_id_an_admin_end_is_not_guessed_from_the_admins_session():
    assert revocation_of(event("user.session.end", actor=ADMIN, targets=[ALICE], external=ADMIN_SESSION)) is None


def test_without_ended_session_id_an_api_client_end_yields_nothing():
    assert revocation_of(event("user.session.end", actor=API_CLIENT, external=ADMIN_SESSION)) is None


def test_a_session_end_without_a_usable_user_still_ends_the_session():
    ended = event("user.session.end", actor=API_CLIENT, ended=ALICE_SESSION)
    revocation = revocation_of(ended)
    assert revocation is not None and revocation.session_id == ALICE_SESSION
    assert (revocation.user_id, revocation.login) == (None, None)


HOSTILE_IDS = [
    "../users/me", "idx/../../users/me", "%2e%2e", "idx" + "a" * 10_000, "102" + "A" * 10 * 1024,
    "idx" + "é" * 22, "idxffK-esRDSrC5m0ly-Kma9A\n", "idxffK-esRDSrC5m0ly-Kma9A?x=1", "idxffK-esRDSrC5m0ly-Kma9A/x",
    "", "me", "abcffK-esRDSrC5m0ly-Kma9A", None, 102, 1.5, True, ["idxffK-esRDSrC5m0ly-Kma9A"],
    {"id": "idxffK-esRDSrC5m0ly-Kma9A"},
]


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_an_ended_session_id_off_the_pattern_is_never_returned(bad):
    hostile = event("user.session.end", actor=ADMIN, targets=[ALICE], external=ADMIN_SESSION)
    hostile["debugContext"]["debugData"]["EndedSessionId"] = bad
    assert revocation_of(hostile) is None  # and the admin's session is not taken instead


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_an_external_session_id_off_the_pattern_is_never_returned(bad):
    hostile = event("user.session.end")
    hostile["authenticationContext"]["externalSessionId"] = bad
    assert revocation_of(hostile) is None


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_a_bad_ended_session_id_falls_back_to_external_only_for_an_own_sign_out(bad):
    own = event("user.session.end", external=ALICE_SESSION)
    own["debugContext"]["debugData"]["EndedSessionId"] = bad
    revocation = revocation_of(own)
    assert revocation is not None and revocation.session_id == ALICE_SESSION


@pytest.mark.parametrize("bad", ["../users/me", "00u" + "a" * 10_000, "00u1a2b3c4d5e6f7g8h/", "00uéééééééééééééééé",
                                 "00u1a2b3c4d5e6f7g8h9 ", None, 7, ["00u1a2b3c4d5e6f7g8h9"]])
def test_a_user_id_off_the_pattern_is_never_returned(bad):
    ended = event("user.session.end", ended=ALICE_SESSION)
    ended["actor"]["id"] = bad
    revocation = revocation_of(ended)
    assert revocation is not None and revocation.user_id is None and revocation.login is None
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["target"][0]["id"] = bad
    assert revocation_of(cleared) is None  # the admin is not cleared instead


# --- user-wide: clear, suspend, deactivate -----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "reason"), [("user.session.clear", "user_sessions_cleared"),
                                              ("user.lifecycle.suspend", "user_suspended"),
                                              ("user.lifecycle.deactivate", "user_deactivated")])
def test_user_wide_events_revoke_the_target_user_at_the_published_time(kind, reason):
    revocation = revocation_of(event(kind, actor=ADMIN, targets=[ALICE], external=ADMIN_SESSION))
    assert revocation == Revocation("event_hook", reason, None, ALICE.id, "Alice@Example.com", PUBLISHED_AT)
    assert revocation.user_wide and revocation.user_keys() == [ALICE.id, "alice@example.com"]


def test_published_is_parsed_to_epoch_seconds():
    revocation = revocation_of(event("user.session.clear", actor=ADMIN, targets=[ALICE]))
    assert revocation is not None and revocation.happened_at == pytest.approx(1680023017.093)


@pytest.mark.parametrize("published", ["2023-03-28T19:03:37.093+02:00", "2023-03-28T17:03:37.093Z",
                                       "2023-03-28T17:03:37.093+00:00"])
def test_published_with_an_offset_is_the_same_moment(published):
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["published"] = published
    revocation = revocation_of(cleared)
    assert revocation is not None and revocation.happened_at == pytest.approx(PUBLISHED_AT)


@pytest.fixture
def far_from_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local reading would be 14 hours off
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_published_without_a_zone_is_read_as_utc_not_local_time(far_from_utc):
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["published"] = "2023-03-28T17:03:37.093"
    revocation = revocation_of(cleared)
    assert revocation is not None and revocation.happened_at == pytest.approx(PUBLISHED_AT)


@pytest.mark.parametrize("published", [None, "", "yesterday", "2023-13-45T00:00:00Z", 1680023017, ["x"], {}])
def test_a_bad_published_time_still_revokes_without_a_time(published):
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["published"] = published
    revocation = revocation_of(cleared)
    assert revocation is not None and revocation.user_id == ALICE.id and revocation.happened_at is None


def test_the_user_target_is_chosen_among_other_targets():
    revocation = revocation_of(event("user.lifecycle.suspend", actor=ADMIN, targets=[APP, ALICE]))
    assert revocation is not None and revocation.user_id == ALICE.id


def test_without_a_target_a_user_actor_is_the_user():
    revocation = revocation_of(event("user.session.clear", actor=ALICE, targets=[]))
    assert revocation is not None and (revocation.user_id, revocation.login) == (ALICE.id, "Alice@Example.com")


def test_without_a_user_target_a_non_user_actor_yields_nothing():
    assert revocation_of(event("user.lifecycle.deactivate", actor=API_CLIENT, targets=[])) is None
    assert revocation_of(event("user.lifecycle.deactivate", actor=API_CLIENT, targets=[APP])) is None


def test_a_login_that_is_not_an_email_is_left_out():
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["target"][0]["alternateId"] = "alice"
    revocation = revocation_of(cleared)
    assert revocation is not None and (revocation.user_id, revocation.login) == (ALICE.id, None)
    assert revocation.user_keys() == [ALICE.id]


@pytest.mark.parametrize("login", [None, 5, ["alice@example.com"], {"x": 1}])
def test_a_login_of_the_wrong_type_is_left_out(login):
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["target"][0]["alternateId"] = login
    revocation = revocation_of(cleared)
    assert revocation is not None and revocation.login is None


# --- everything else is ignored -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["user.session.start", "user.authentication.sso", "user.session.expire",
                                  "user.authentication.universal_logout", "user.lifecycle.activate",
                                  "USER.SESSION.END", "user.session.end ", "", None, 5, ["user.session.end"],
                                  {"type": "user.session.clear"}])
def test_other_event_types_are_ignored(kind):
    ignored = event("user.session.end", ended=ALICE_SESSION)
    ignored["eventType"] = kind
    assert revocation_of(ignored) is None


# --- malformed shapes never raise ------------------------------------------------------------------------------

WRONG = [None, 0, 1.5, True, "x", [], ["x"], [{"id": ALICE.id}], {}, {"a": "b"}]


def bent(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    at = out
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = value
    return out


def removed(base: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    at = out
    for key in path[:-1]:
        at = at[key]
    at.pop(path[-1], None)
    return out


BASES = {
    "own_end": event("user.session.end", ended=ALICE_SESSION),
    "own_end_no_ended": event("user.session.end"),
    "admin_end": event("user.session.end", actor=ADMIN, targets=[ALICE], ended=ALICE_SESSION),
    "clear": event("user.session.clear", actor=ADMIN, targets=[ALICE]),
    "suspend_by_self": event("user.lifecycle.suspend"),
}
PATHS = [("actor",), ("actor", "id"), ("actor", "type"), ("actor", "alternateId"), ("target",),
         ("authenticationContext",), ("authenticationContext", "externalSessionId"), ("debugContext",),
         ("debugContext", "debugData"), ("debugContext", "debugData", "EndedSessionId"), ("published",),
         ("eventType",)]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", PATHS, ids="/".join)
def test_a_field_of_the_wrong_shape_never_raises(base, path):
    for value in WRONG:
        revocation = revocation_of(bent(BASES[base], path, value))
        assert revocation is None or isinstance(revocation, Revocation)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", PATHS, ids="/".join)
def test_a_missing_field_never_raises(base, path):
    revocation = revocation_of(removed(BASES[base], path))
    assert revocation is None or isinstance(revocation, Revocation)


@pytest.mark.parametrize("targets", [None, 0, "00u1a2b3c4d5e6f7g8h9", {"id": ALICE.id, "type": "User"},
                                     [None, 5, "x", [ALICE.id]], [{"type": "User"}], [{"id": ALICE.id}],
                                     [{"type": "User", "id": None}], [{"type": ["User"], "id": ALICE.id}]])
def test_targets_of_the_wrong_shape_never_raise_nor_name_a_user(targets):
    cleared = event("user.session.clear", actor=API_CLIENT)
    cleared["target"] = targets
    assert revocation_of(cleared) is None


def test_an_empty_event_yields_nothing():
    assert revocation_of({}) is None


def test_a_malformed_user_target_does_not_hide_a_good_one_after_it():
    cleared = event("user.session.clear", actor=ADMIN, targets=[ALICE])
    cleared["target"].insert(0, {"type": "User", "id": "../admin"})
    revocation = revocation_of(cleared)
    assert revocation is not None and revocation.user_id == ALICE.id


# --- events_of: the events of a delivery -------------------------------------------------------------------------


def test_events_of_a_delivery_in_order():
    first, second = event("user.session.end", ended=ALICE_SESSION), event("user.session.clear", targets=[ALICE])
    assert events_of(delivery(first, second)) == [first, second]


def test_events_of_skips_the_entries_that_are_not_objects():
    good = event("user.session.end", ended=ALICE_SESSION)
    assert events_of(delivery(None, 5, "x", [good], good)) == [good]


@pytest.mark.parametrize("malformed", [None, 0, "x", [], [{"data": {"events": []}}], {}, {"data": None},
                                       {"data": []}, {"data": "x"}, {"data": {}}, {"data": {"events": None}},
                                       {"data": {"events": {"0": {"eventType": "user.session.end"}}}},
                                       {"data": {"events": "user.session.end"}}, {"data": {"events": []}},
                                       {"events": [{"eventType": "user.session.end"}]}])
def test_events_of_a_malformed_delivery_is_empty(malformed):
    assert events_of(malformed) == []


def test_one_bad_event_does_not_lose_the_others_of_its_delivery():
    good = event("user.session.end", ended=ALICE_SESSION)
    bad = bent(good, ("debugContext",), ["x"])
    bad["actor"] = None
    revocations = [revocation_of(e) for e in events_of(delivery(bad, {}, good))]
    assert revocations == [None, None, revocation_of(good)]
