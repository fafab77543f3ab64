"""The Okta sandbox's state without HTTP: clock, ids, lifetimes, tokens, faults, rate windows, redirects, events."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from okta_sandbox_support import ALICE, BOB, OKTA_HOST, sandbox_org

from gateway.sandbox.okta.faults import Faults, RateLimiter
from gateway.sandbox.okta.org import Clock, OktaOrg

START = datetime(2026, 3, 1, 12, 0, 17, 500_000, tzinfo=UTC)  # not on a minute boundary, on purpose
URL_SAFE_22 = r"[A-Za-z0-9_-]{22}"


def make_org(**options: object) -> OktaOrg:
    return sandbox_org(8999, clock=Clock(START, frozen=True), **options)


def test_the_clock_is_utc_and_moves_only_forward():
    clock = Clock(START, frozen=True)
    assert clock.now() == START and clock.now().tzinfo is not None
    clock.advance(90.5)
    assert clock.now() == START + timedelta(seconds=90.5)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        Clock(datetime(2026, 1, 1))  # naive


def test_a_running_clock_follows_the_wall_clock_plus_what_was_added():
    before = datetime.now(UTC)
    clock = Clock()
    clock.advance(3600)
    assert clock.now() - before >= timedelta(seconds=3600)
    assert clock.now() - before < timedelta(seconds=3605)


def test_ids_follow_okta_formats_per_engine():
    identity, classic = make_org(engine="identity"), make_org(engine="classic")
    alice = identity.user(ALICE[0])
    assert alice is not None and re.fullmatch(r"00u[A-Za-z0-9]{17}", alice.id)
    ie, ce = identity.sign_in(ALICE[0]), classic.sign_in(ALICE[0])
    assert re.fullmatch("idx" + URL_SAFE_22, ie.id) and re.fullmatch("102" + URL_SAFE_22, ce.id)
    assert classic.cookie_for(ce) == ("sid", ce.id)  # Classic: the sid cookie's value is the session id
    name, value = identity.cookie_for(ie)
    assert name == "idx" and value != ie.id and not value.startswith("idx")  # Identity Engine: an opaque token
    with pytest.raises(ValueError):
        OktaOrg(issuer="http://x", engine="hybrid")  # type: ignore[arg-type]


def test_expires_at_is_the_idle_end_capped_by_the_lifetime():
    org = make_org(idle_minutes=10, lifetime_minutes=25)
    session = org.sign_in(ALICE[0])
    assert session.expires_at == START + timedelta(minutes=10)
    org.clock.advance(9 * 60)
    org.touch(session)
    assert session.expires_at == START + timedelta(minutes=19)
    org.clock.advance(9 * 60)
    org.refresh(session)
    assert session.expires_at == START + timedelta(minutes=25)  # capped by createdAt + lifetime
    org.clock.advance(7 * 60 - 1)
    assert org.session(session.id) is session
    org.clock.advance(1)
    assert org.session(session.id) is None  # expired is gone, for good
    assert org.sessions_of(session.user_id) == []


def test_lifetime_zero_means_no_absolute_limit():
    org = make_org(idle_minutes=10, lifetime_minutes=0)
    session = org.sign_in(ALICE[0])
    for _ in range(100):  # 15 hours of activity every 9 minutes
        org.clock.advance(9 * 60)
        org.touch(session)
    assert org.session(session.id) is session


def test_session_tokens_are_single_use_and_short_lived():
    org = make_org()
    alice = org.user(ALICE[0])
    assert alice is not None
    token, expires = org.issue_session_token(alice)
    assert expires == START + timedelta(minutes=5)
    assert org.redeem_session_token(token) is alice
    assert org.redeem_session_token(token) is None
    late, _ = org.issue_session_token(alice)
    org.clock.advance(5 * 60)
    assert org.redeem_session_token(late) is None
    assert org.redeem_session_token("20111nonsense") is None


def test_authenticate_checks_password_and_status():
    org = make_org()
    assert org.authenticate(ALICE[0].upper(), ALICE[1]) is org.user(ALICE[0])
    assert org.authenticate(ALICE[0], BOB[1]) is None
    assert org.authenticate("nobody@example.com", ALICE[1]) is None
    with pytest.raises(ValueError):
        org.add_user(ALICE[0], "again")
    alice = org.user(ALICE[0])
    assert alice is not None
    org.suspend_user(alice.id)
    assert org.authenticate(ALICE[0], ALICE[1]) is None
    org.unsuspend_user(alice.id)
    assert org.authenticate(ALICE[0], ALICE[1]) is alice


def test_faults_fail_for_a_count_or_for_ever_and_reset():
    faults = Faults(fail_status=503, fail_count=2)
    assert [faults.take_failure() for _ in range(4)] == [503, 503, None, None]
    faults.fail_status = 500
    assert [faults.take_failure() for _ in range(3)] == [500, 500, 500]
    faults.latency, faults.rate_limited, faults.hang = 1.0, True, True
    faults.reset()
    assert faults == Faults()


def test_rate_windows_start_at_the_first_call_and_last_sixty_seconds():
    limiter = RateLimiter(3)
    t0 = START.timestamp()
    decisions = [limiter.take("sessions", t0 + i) for i in range(4)]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert {d.reset for d in decisions} == {int(t0 + 60) + 1}  # 12:01:17.5 rounded up, not 12:01:00
    assert limiter.take("authn", t0 + 5).remaining == 2  # another bucket, another budget
    assert not limiter.take("sessions", t0 + 59.9).allowed
    fresh = limiter.take("sessions", t0 + 61)
    assert (fresh.allowed, fresh.remaining, fresh.reset) == (True, 2, int(t0 + 121) + 1)
    forced = limiter.take("sessions", t0 + 62, force_limited=True)
    assert (forced.allowed, forced.remaining, forced.reset) == (False, 0, fresh.reset)
    assert limiter.take("sessions", t0 + 63).remaining == 1  # a forced 429 used nothing up


def test_redirect_targets_must_be_the_org_or_a_trusted_origin():
    org = make_org()
    org.add_trusted_origin("http://127.0.0.1:8080")
    org.add_trusted_origin("https://cors-only.example", redirect=False)
    assert org.safe_redirect("http://127.0.0.1:8080/app?x=1") == "http://127.0.0.1:8080/app?x=1"
    assert org.safe_redirect("/app/legacy/sso/saml") == "/app/legacy/sso/saml"
    assert org.safe_redirect(f"http://{OKTA_HOST}:8999/") == f"http://{OKTA_HOST}:8999/"
    for bad in ["http://127.0.0.1:8081/", "https://127.0.0.1:8080/", "//evil.example/", "https://cors-only.example/",
                "javascript:alert(1)", "/\\evil.example", "", None]:
        assert org.safe_redirect(bad) is None, bad
    assert org.is_cors_origin("https://cors-only.example") and not org.is_cors_origin("https://evil.example")
    with pytest.raises(ValueError):
        org.add_trusted_origin("not a url")


def test_saml_apps_accept_only_known_expressions():
    org = make_org()
    app = org.add_saml_app("legacy", "http://127.0.0.1:8080/acs", "urn:legacy",
                           attributes={"okta_session_id": "session.id", "mail": "user.email"})
    assert re.fullmatch(r"0oa[A-Za-z0-9]{17}", app.id) and app.issuer.startswith("http://www.okta.com/exk")
    session = org.sign_in(ALICE[0])
    assert org.attribute_values(app, session) == {"okta_session_id": session.id, "mail": ALICE[0]}
    with pytest.raises(ValueError):
        org.add_saml_app("other", "http://127.0.0.1:8080/acs", "urn:x", attributes={"x": "user.password"})
    with pytest.raises(ValueError):
        org.add_saml_app("../admin", "http://127.0.0.1:8080/acs", "urn:x")


def test_the_system_log_records_who_ended_which_session():
    org = make_org()
    alice = org.user(ALICE[0])
    assert alice is not None
    own, by_admin = org.sign_in(ALICE[0]), org.sign_in(ALICE[0])
    org.sign_out(own)
    org.end_session(by_admin)
    ends = [e for e in org.system_log if e["eventType"] == "user.session.end"]
    assert ends[0]["actor"]["id"] == alice.id and ends[0]["target"] == []
    assert ends[0]["authenticationContext"]["externalSessionId"] == own.id
    assert ends[0]["debugContext"]["debugData"]["EndedSessionId"] == own.id
    assert ends[1]["actor"]["id"] == org.admin.id and ends[1]["target"][0]["id"] == alice.id
    assert ends[1]["authenticationContext"]["externalSessionId"].startswith("trs")  # the admin's, not alice's
    assert ends[1]["debugContext"]["debugData"]["EndedSessionId"] == by_admin.id


def test_suspend_and_deactivate_end_every_session_of_the_user():
    org = make_org()
    alice, bob = org.user(ALICE[0]), org.user(BOB[0])
    assert alice is not None and bob is not None
    a1, a2, b = org.sign_in(alice.login), org.sign_in(alice.login), org.sign_in(bob.login)
    org.suspend_user(alice.id)
    assert org.session(a1.id) is None and org.session(a2.id) is None and org.session(b.id) is b
    types = [e["eventType"] for e in org.system_log[-3:]]
    assert types == ["user.lifecycle.suspend", "user.session.end", "user.session.end"]
    assert len({e["transaction"]["id"] for e in org.system_log[-3:]}) == 1
    org.deactivate_user(bob.id)
    assert bob.status == "DEPROVISIONED" and org.session(b.id) is None
    assert org.system_log[-2]["eventType"] == "user.lifecycle.deactivate"
    with pytest.raises(KeyError):
        org.suspend_user("00u" + "Z" * 17)
