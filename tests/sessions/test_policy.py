"""decide(): every rule of gateway/sessions/policy.py, case by case, with plain values and a clock that is a number."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.sessions.binding import Binding
from gateway.sessions.policy import (
    Action,
    Decision,
    Facts,
    OktaState,
    OktaView,
    SignInFacts,
    decide,
    holds_until,
    revoked_before,
    session_to_validate,
    sign_in_outcome,
    socket_decision,
)
from gateway.settings import Mode, SessionRules, Unbound

T0 = 1_000_000.0
SID = "102abcDEFghiJKLmnoPQRst"
OTHER_SID = "102zyxWVUtsrQPOnmlKJIhg"
USER = "00u0abcdefGHIJKLMNOP"
BOUND = Binding(SID, USER, "alice@example.com", "fp", bound_at=T0 - 100, last_activity=T0 - 10)
ACTIVE = OktaView(OktaState.SIGNED_IN, USER, "alice@example.com", expires_at=T0 + 3600)
RULES = SessionRules()


def bound(okta: OktaView | None = ACTIVE, *, binding: Binding = BOUND, claimed_session_id: str | None = None,
          last_extended: float | None = None) -> Facts:
    return Facts(has_app_session=True, binding=binding, claimed_session_id=claimed_session_id, okta=okta,
                 last_extended=last_extended)


def unbound(claimed: str | None = SID, okta: OktaView | None = ACTIVE) -> Facts:
    return Facts(has_app_session=True, binding=None, claimed_session_id=claimed, okta=okta)


def enforce(facts: Facts, rules: SessionRules = RULES, now: float = T0) -> Decision:
    return decide(facts, rules, Mode.ENFORCE, now)


def ended(reason: str) -> Decision:
    return Decision(Action.END, reason, Action.END)


# --- nothing to protect -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binding", [None, BOUND])
@pytest.mark.parametrize("okta", [None, ACTIVE, OktaView(OktaState.GONE), OktaView(OktaState.UNAVAILABLE)])
def test_a_request_without_an_app_session_is_forwarded_whatever_else_is_known(binding, okta):
    facts = Facts(has_app_session=False, binding=binding, claimed_session_id=OTHER_SID, okta=okta)
    decision = enforce(facts)
    assert decision == Decision(Action.FORWARD, "no_app_session", Action.FORWARD)
    assert not (decision.touch or decision.extend_okta)


# --- a bound app session lives as long as its Okta session ---------------------------------------------------------


def test_bound_and_signed_in_before_expires_at_is_forwarded():
    assert enforce(bound()) == Decision(Action.FORWARD, "ok", Action.FORWARD)


def test_bound_and_signed_in_one_instant_before_expires_at_is_forwarded():
    assert enforce(bound(), now=ACTIVE.expires_at - 0.001).action is Action.FORWARD


def test_bound_with_the_same_claimed_session_is_forwarded():
    assert enforce(bound(claimed_session_id=SID)).action is Action.FORWARD


@pytest.mark.parametrize(
    ("okta", "reason"),
    [
        (OktaView(OktaState.GONE), "okta_session_ended"),
        (OktaView(OktaState.NOT_SIGNED_IN, USER, "alice@example.com", T0 + 3600), "okta_not_signed_in"),
        (replace(ACTIVE, expires_at=T0), "okta_session_expired"),  # now == expiresAt: over
        (replace(ACTIVE, expires_at=T0 - 1), "okta_session_expired"),
        (replace(ACTIVE, user_id="00u9otherUSERxxxxxxx"), "okta_user_changed"),
    ],
    ids=["gone", "mfa_required", "expired_exactly_at_expires_at", "expired_before", "user_changed"],
)
def test_a_bound_session_ends_with_its_okta_session(okta, reason):
    assert enforce(bound(okta)) == ended(reason)


def test_a_signed_in_view_without_a_user_id_does_not_count_as_another_user():
    assert enforce(bound(replace(ACTIVE, user_id=""))).action is Action.FORWARD


def test_another_claimed_session_than_the_binding_names_ends_it():
    assert enforce(bound(claimed_session_id=OTHER_SID)) == ended("okta_session_changed")


def test_another_claimed_session_ends_it_even_while_okta_cannot_say():
    # no Okta answer is needed to see that the browser now presents another session
    decision = enforce(bound(OktaView(OktaState.UNAVAILABLE), claimed_session_id=OTHER_SID))
    assert decision == ended("okta_session_changed")


def test_a_bound_session_without_an_okta_answer_is_ended():
    assert enforce(bound(None)) == ended("okta_session_ended")


# --- Okta cannot say: never an end ----------------------------------------------------------------------------------


def test_a_bound_session_while_okta_is_unavailable_is_unavailable_not_ended():
    decision = enforce(bound(OktaView(OktaState.UNAVAILABLE)))
    assert decision == Decision(Action.UNAVAILABLE, "okta_unavailable", Action.UNAVAILABLE)


def test_okta_unavailable_is_not_an_end_even_when_idle_time_is_over():
    rules = SessionRules(idle_timeout=5)
    decision = enforce(bound(OktaView(OktaState.UNAVAILABLE)), rules)
    assert decision.action is Action.UNAVAILABLE and decision.would is Action.UNAVAILABLE


@pytest.mark.parametrize(("rule", "expected"), [
    (Unbound.RELOGIN, Decision(Action.END, "unbound", Action.END)),
    (Unbound.ALLOW, Decision(Action.FORWARD, "unbound_allowed", Action.FORWARD)),
])
def test_an_unbound_session_follows_its_rule_while_okta_is_unavailable(rule, expected):
    # Okta's answer about a claimed id has no say over an unbound session: nothing it says would bind it
    assert enforce(unbound(okta=OktaView(OktaState.UNAVAILABLE)), SessionRules(unbound=rule)) == expected


# --- the gateway's own idle timeout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("idle_for", "action"), [(299.999, Action.FORWARD), (300, Action.END), (301, Action.END)])
def test_the_idle_timeout_ends_at_exactly_its_length(idle_for, action):
    rules = SessionRules(idle_timeout=300)
    facts = bound(binding=replace(BOUND, last_activity=T0 - idle_for))
    decision = enforce(facts, rules)
    assert decision.action is action
    if action is Action.END:
        assert decision.reason == "idle_timeout"


def test_without_an_idle_timeout_a_long_idle_session_lives_on():
    facts = bound(binding=replace(BOUND, last_activity=T0 - 30 * 86400))
    assert enforce(facts).action is Action.FORWARD


def test_okta_refusal_is_reported_before_the_idle_timeout():
    facts = bound(OktaView(OktaState.GONE), binding=replace(BOUND, last_activity=T0 - 1000))
    assert enforce(facts, SessionRules(idle_timeout=300)).reason == "okta_session_ended"


# --- unbound app sessions -------------------------------------------------------------------------------------------


UNBOUND_RULES = [
    (Unbound.RELOGIN, Decision(Action.END, "unbound", Action.END)),
    (Unbound.ALLOW, Decision(Action.FORWARD, "unbound_allowed", Action.FORWARD)),
]
ALICE_ACTIVE = OktaView(OktaState.SIGNED_IN, "00u0alice00000000000", "alice@example.com", expires_at=T0 + 3600)
BOB_ACTIVE = OktaView(OktaState.SIGNED_IN, "00u0bob0000000000000", "bob@example.com", expires_at=T0 + 3600)


@pytest.mark.parametrize(("rule", "expected"), UNBOUND_RULES)
def test_a_claimed_signed_in_session_does_not_bind_an_unbound_app_session(rule, expected):
    # finding 6: Bob's app cookie with Alice's id in X-Okta-Session-Id was served as Bob, bound to Alice's session.
    # The gateway knows an app session's user only from its binding: with none, a claim binds nothing.
    assert enforce(unbound(okta=ALICE_ACTIVE), SessionRules(unbound=rule)) == expected


@pytest.mark.parametrize(("rule", "expected"), UNBOUND_RULES)
@pytest.mark.parametrize("okta", [ALICE_ACTIVE, BOB_ACTIVE], ids=["another_users", "perhaps_the_same_user"])
def test_no_okta_answer_about_a_claim_binds_an_unbound_app_session(okta, rule, expected):
    # whether the claimed session is the app user's own cannot be known without a binding: both are refused alike
    assert enforce(unbound(OTHER_SID, okta), SessionRules(unbound=rule)) == expected


@pytest.mark.parametrize("claimed", [OTHER_SID, SID.lower(), SID + " ", ""])
@pytest.mark.parametrize("okta", [ACTIVE, ALICE_ACTIVE, BOB_ACTIVE, OktaView(OktaState.UNAVAILABLE)])
def test_a_claim_other_than_the_bound_session_ends_it_and_never_switches_the_binding(claimed, okta):
    decision = enforce(bound(okta, claimed_session_id=claimed))
    assert decision == ended("okta_session_changed")
    assert not decision.touch  # nothing is re-sealed: the binding is dropped with the app session


def test_a_claim_of_the_bound_session_changes_nothing():
    assert enforce(bound(claimed_session_id=SID)) == enforce(bound())


@pytest.mark.parametrize(
    "okta",
    [None, OktaView(OktaState.GONE), OktaView(OktaState.NOT_SIGNED_IN, USER, "a", T0 + 60),
     replace(ACTIVE, expires_at=T0)],
    ids=["no_answer", "gone", "mfa_required", "expired"],
)
@pytest.mark.parametrize(("rule", "expected"), [
    (Unbound.RELOGIN, Decision(Action.END, "unbound", Action.END)),
    (Unbound.ALLOW, Decision(Action.FORWARD, "unbound_allowed", Action.FORWARD)),
])
def test_an_unbound_session_whose_claimed_id_is_not_signed_in_follows_the_unbound_rule(okta, rule, expected):
    assert enforce(unbound(okta=okta), SessionRules(unbound=rule)) == expected


@pytest.mark.parametrize(("rule", "expected"), [
    (Unbound.RELOGIN, Decision(Action.END, "unbound", Action.END)),
    (Unbound.ALLOW, Decision(Action.FORWARD, "unbound_allowed", Action.FORWARD)),
])
def test_an_unbound_session_with_nothing_claimed_follows_the_unbound_rule(rule, expected):
    assert enforce(unbound(claimed=None, okta=None), SessionRules(unbound=rule)) == expected


def test_an_okta_answer_without_a_claimed_id_does_not_bind():
    assert enforce(unbound(claimed=None, okta=ACTIVE)) == ended("unbound")


def test_an_unbound_session_is_never_touched_nor_extended():
    rules = SessionRules(extend_okta_every=1, touch_every=0, unbound=Unbound.ALLOW)
    decision = enforce(unbound(), rules)
    assert decision.action is Action.FORWARD and not decision.touch and not decision.extend_okta


# --- observe and off -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "rules", "reason"),
    [
        (bound(OktaView(OktaState.GONE)), RULES, "okta_session_ended"),
        (bound(claimed_session_id=OTHER_SID), RULES, "okta_session_changed"),
        (bound(binding=replace(BOUND, last_activity=T0 - 600)), SessionRules(idle_timeout=300), "idle_timeout"),
        (unbound(claimed=None, okta=None), RULES, "unbound"),
    ],
    ids=["gone", "changed", "idle", "unbound"],
)
def test_observe_forwards_and_says_enforce_would_end_and_why(facts, rules, reason):
    assert decide(facts, rules, Mode.ENFORCE, T0) == ended(reason)
    assert decide(facts, rules, Mode.OBSERVE, T0) == Decision(Action.FORWARD, reason, Action.END)


def test_observe_forwards_when_okta_is_unavailable_and_says_so():
    decision = decide(bound(OktaView(OktaState.UNAVAILABLE)), RULES, Mode.OBSERVE, T0)
    assert decision == Decision(Action.FORWARD, "okta_unavailable", Action.UNAVAILABLE)


def test_observe_of_a_forward_is_the_same_decision_as_enforce():
    facts = bound(binding=replace(BOUND, last_activity=T0 - 120))
    rules = SessionRules(extend_okta_every=600)
    assert decide(facts, rules, Mode.OBSERVE, T0) == decide(facts, rules, Mode.ENFORCE, T0)
    allow = replace(rules, unbound=Unbound.ALLOW)
    assert decide(unbound(), allow, Mode.OBSERVE, T0) == decide(unbound(), allow, Mode.ENFORCE, T0)


@pytest.mark.parametrize("facts", [bound(OktaView(OktaState.GONE)), bound(OktaView(OktaState.UNAVAILABLE)),
                                   unbound(claimed=None, okta=None), unbound(), bound(None)])
def test_off_forwards_without_deciding_anything(facts):
    decision = decide(facts, SessionRules(idle_timeout=1, extend_okta_every=1, touch_every=0), Mode.OFF, T0)
    assert decision == Decision(Action.FORWARD, "policy_off", Action.FORWARD)


# --- touch and extend: only now and then ------------------------------------------------------------------------------


@pytest.mark.parametrize(("idle_for", "touch"), [(0, False), (59.999, False), (60, True), (3000, True)])
def test_a_binding_is_touched_only_when_its_last_activity_is_touch_every_old(idle_for, touch):
    facts = bound(binding=replace(BOUND, last_activity=T0 - idle_for))
    decision = enforce(facts, SessionRules(touch_every=60))
    assert decision.action is Action.FORWARD and decision.reason == "ok"
    assert decision.touch is touch and not decision.extend_okta


def test_touch_follows_a_shorter_touch_every():
    facts = bound(binding=replace(BOUND, last_activity=T0 - 10))
    assert enforce(facts, SessionRules(touch_every=10)).touch
    assert not enforce(facts, SessionRules(touch_every=10.5)).touch


@pytest.mark.parametrize(
    ("every", "last_extended", "extend"),
    [(None, None, False), (None, T0 - 10**6, False), (300, None, True), (300, T0 - 299.9, False),
     (300, T0 - 300, True), (300, T0 - 4000, True), (300, T0, False)],
)
def test_okta_is_extended_only_when_set_and_not_extended_for_extend_okta_every(every, last_extended, extend):
    facts = bound(last_extended=last_extended)
    decision = enforce(facts, SessionRules(extend_okta_every=every))
    assert decision.action is Action.FORWARD and decision.extend_okta is extend and not decision.touch


def test_touch_and_extend_together():
    facts = bound(binding=replace(BOUND, last_activity=T0 - 60), last_extended=None)
    decision = enforce(facts, SessionRules(extend_okta_every=30))
    assert decision == Decision(Action.FORWARD, "ok", Action.FORWARD, touch=True, extend_okta=True)


def test_an_ended_session_is_neither_touched_nor_extended():
    facts = bound(OktaView(OktaState.GONE), binding=replace(BOUND, last_activity=T0 - 600), last_extended=None)
    decision = enforce(facts, SessionRules(extend_okta_every=1))
    assert decision.action is Action.END and not (decision.touch or decision.extend_okta)


# --- purity ---------------------------------------------------------------------------------------------------------


def test_decide_is_a_function_of_its_arguments():
    facts = bound(binding=replace(BOUND, last_activity=T0 - 61), last_extended=None)
    rules = SessionRules(extend_okta_every=30)
    assert {decide(facts, rules, Mode.ENFORCE, T0) for _ in range(3)} == {decide(facts, rules, Mode.ENFORCE, T0)}
    assert facts.binding == replace(BOUND, last_activity=T0 - 61)  # nothing it is given changes


# --- how long a forward holds -------------------------------------------------------------------------------------


def test_a_forward_holds_until_the_next_touch_when_nothing_else_comes_first():
    assert holds_until(bound(), RULES) == BOUND.last_activity + RULES.touch_every


def test_a_forward_holds_at_most_until_expires_at_and_the_idle_timeout():
    soon = replace(ACTIVE, expires_at=T0 + 5)
    assert holds_until(bound(soon), RULES) == T0 + 5
    rules = SessionRules(idle_timeout=30, touch_every=3600)
    assert holds_until(bound(), rules) == BOUND.last_activity + 30


def test_a_forward_holds_until_the_next_okta_refresh_and_not_at_all_before_the_first():
    rules = SessionRules(extend_okta_every=20, touch_every=3600)
    assert holds_until(bound(last_extended=T0 - 5), rules) == T0 + 15
    assert holds_until(bound(last_extended=None), rules) == float("-inf")


@pytest.mark.parametrize("facts", [unbound(), bound(claimed_session_id=SID), bound(None),
                                   bound(OktaView(OktaState.GONE)), bound(OktaView(OktaState.NOT_SIGNED_IN))])
def test_nothing_but_a_bound_signed_in_session_holds(facts):
    assert holds_until(facts, RULES) == float("-inf")


@pytest.mark.parametrize("offset", [0.0, 1.0, 29.0, 49.9])
def test_decide_forwards_plainly_everywhere_before_the_hold_ends(offset):
    rules = SessionRules(idle_timeout=100, extend_okta_every=60, touch_every=50)
    facts = bound(binding=replace(BOUND, last_activity=T0), last_extended=T0)
    until = holds_until(facts, rules)
    assert until == T0 + 50
    assert enforce(facts, rules, T0 + offset).action is Action.FORWARD
    assert not enforce(facts, rules, T0 + offset).touch
    assert enforce(facts, rules, until).touch  # at the end of the hold a rule turns


# --- revoked_before: a user-wide revocation at T voids a binding made, or an Okta session Okta ended, before T ------


def test_a_binding_made_before_the_users_watermark_is_revoked_and_one_made_after_is_not():
    assert revoked_before(T0, T0 - 1)
    assert not revoked_before(T0, T0)
    assert not revoked_before(0.0, T0)  # no watermark


def test_a_sign_in_with_an_okta_session_created_before_okta_ended_the_users_sessions_is_revoked():
    """An assertion held back from before a suspension, posted after it: bound now, but its session is older."""
    assert revoked_before(T0, T0 - 60)
    assert not revoked_before(T0, T0 + 1)  # a session from a sign-in after it lives
    assert not revoked_before(T0, None)  # Okta did not say: the cache eviction and Okta's answer decide


# --- revocations: a tombstone or a watermark voids the binding, with no word from Okta ----------------------------


def test_a_tombstone_of_the_bound_session_ends_it_whatever_okta_says():
    facts = replace(bound(), session_ended_at=T0 - 5)
    assert enforce(facts) == ended("revoked")
    assert session_to_validate(facts) is None  # Okta is not asked about a session the store says ended


def test_a_watermark_later_than_the_binding_ends_it_and_one_earlier_does_not():
    later = replace(bound(), user_revoked_before=BOUND.bound_at + 1)
    assert enforce(later) == ended("revoked")
    assert session_to_validate(later) is None
    earlier = replace(bound(), user_revoked_before=BOUND.bound_at)  # a sign-in at the watermark itself lives
    assert enforce(earlier).action is Action.FORWARD
    assert session_to_validate(earlier) == SID


def test_a_revoked_binding_never_holds_a_forward():
    assert holds_until(replace(bound(), session_ended_at=T0 - 5), RULES) == float("-inf")
    assert holds_until(replace(bound(), user_revoked_before=T0), RULES) == float("-inf")


# --- which session Okta is asked about ------------------------------------------------------------------------------


def test_okta_is_asked_about_the_bound_session_only():
    assert session_to_validate(bound(None)) == SID
    assert session_to_validate(bound(None, claimed_session_id=SID)) == SID  # the claim agrees
    assert session_to_validate(bound(None, claimed_session_id=OTHER_SID)) is None  # ended without asking
    assert session_to_validate(unbound(claimed=SID, okta=None)) is None  # a claim alone is never looked up
    no_app = Facts(has_app_session=False, binding=BOUND)
    assert session_to_validate(no_app) is None


# --- re-sealing after a key rotation --------------------------------------------------------------------------------


def test_a_binding_opened_with_an_old_key_is_resealed_on_its_first_forward():
    facts = replace(bound(), stale_key=True)
    decision = enforce(facts)
    assert (decision.action, decision.rekey, decision.touch) == (Action.FORWARD, True, False)
    assert holds_until(facts, RULES) == float("-inf")  # re-sealed on each request until the browser has it
    assert not enforce(bound()).rekey


def test_an_old_key_does_not_save_a_session_that_ends():
    decision = enforce(replace(bound(OktaView(OktaState.GONE)), stale_key=True))
    assert decision == ended("okta_session_ended")
    assert not decision.rekey


# --- what a sign-in binds -------------------------------------------------------------------------------------------


def sign_in(okta: OktaView = ACTIVE, name_id: str = "alice@example.com", created_at: float | None = T0 - 10,
            okta_ended_before: float = 0.0) -> str:
    return sign_in_outcome(SignInFacts(name_id=name_id, okta=okta, created_at=created_at,
                                       okta_ended_before=okta_ended_before))


def test_a_sign_in_binds_a_signed_in_session_of_the_assertions_user():
    assert sign_in() == "bound"
    assert sign_in(name_id=" Alice@Example.COM ") == "bound"  # NameID compared case-insensitively, stripped


@pytest.mark.parametrize(("okta", "outcome"), [
    (OktaView(OktaState.UNAVAILABLE), "okta_unavailable"),
    (OktaView(OktaState.GONE), "okta_session_not_signed_in"),
    (replace(ACTIVE, state=OktaState.NOT_SIGNED_IN), "okta_session_not_signed_in"),
    (replace(ACTIVE, login="bob@example.com"), "login_mismatch"),
])
def test_a_sign_in_binds_nothing_okta_does_not_vouch_for(okta, outcome):
    assert sign_in(okta) == outcome


def test_a_sign_in_with_a_session_created_before_okta_ended_the_users_sessions_binds_nothing():
    assert sign_in(created_at=T0 - 60, okta_ended_before=T0 - 30) == "revoked"
    assert sign_in(created_at=T0 - 10, okta_ended_before=T0 - 30) == "bound"
    assert sign_in(created_at=None, okta_ended_before=T0 - 30) == "bound"  # Okta did not say: the eviction decides


# --- open WebSockets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("okta", "closes"), [
    (ACTIVE, False),
    (OktaView(OktaState.UNAVAILABLE), False),  # an outage closes nothing
    (OktaView(OktaState.GONE), True),
    (replace(ACTIVE, state=OktaState.NOT_SIGNED_IN), True),
    (replace(ACTIVE, expires_at=T0), True),
])
def test_an_open_websocket_closes_for_the_okta_answers_that_end_a_request(okta, closes):
    assert (socket_decision(okta, T0).action is Action.END) is closes
