"""The Okta client against the Okta sandbox over loopback: answers, errors, retries, rate limits."""

from __future__ import annotations

import asyncio
import logging

import pytest
from okta_sandbox_support import ALICE, API_TOKEN, BOB, Okta
from yarl import URL

from gateway.metrics import Metrics
from gateway.okta.client import (
    CredentialsRejected,
    Family,
    InvalidId,
    OktaClient,
    OktaUnavailable,
    RateLimited,
    SessionGone,
    UserUnknown,
)

UNKNOWN = "idx" + "Q" * 22


@pytest.fixture
async def okta(okta_sandbox: Okta):
    sandbox = okta_sandbox
    clients: list[OktaClient] = []

    async def client(token: str = API_TOKEN, **options) -> OktaClient:
        c = OktaClient(URL(sandbox.issuer), token, clock=sandbox.clock, metrics=Metrics(), **options)
        await c.start()
        clients.append(c)
        return c

    yield sandbox, client
    for c in clients:
        await c.close()


async def test_get_session_returns_a_typed_session(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    got = await (await client()).get_session(session.id)
    assert (got.id, got.login, got.status, got.active) == (session.id, ALICE[0], "ACTIVE", True)
    assert got.expires_at > sandbox.clock()


async def test_an_unknown_session_is_gone(okta):
    sandbox, client = okta
    with pytest.raises(SessionGone):
        await (await client()).get_session(UNKNOWN)


async def test_a_wrong_token_is_our_problem_not_the_users(okta, caplog):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client(token="not-the-token-1234")
    with pytest.raises(CredentialsRejected):
        await c.get_session(session.id)
    assert c.credentials_ok is False
    assert await c.check_credentials() is False
    assert "API token" in caplog.text and "not-the-token-1234" not in caplog.text
    assert sandbox.org.session(session.id) is not None  # nobody was logged out


async def test_check_credentials_with_a_good_token(okta):
    sandbox, client = okta
    assert await (await client()).check_credentials() is True


async def test_hostile_ids_never_reach_okta(okta):
    sandbox, client = okta
    c = await client()
    for hostile in ["../users/me", "%2e%2e", "102" + "a" * 10_000, "idx" + "é" * 22, "me", ""]:
        with pytest.raises(InvalidId):
            await c.get_session(hostile)
        with pytest.raises(InvalidId):
            await c.close_session(hostile)
    with pytest.raises(InvalidId):
        await c.end_user_sessions("../../me")
    assert sandbox.org.api_calls == []


async def test_5xx_on_a_get_is_retried_within_bounds(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.fail_status, sandbox.org.faults.fail_count = 503, 1
    assert (await (await client(retries=2)).get_session(session.id)).id == session.id
    assert sandbox.calls("GET", "/api/v1/sessions/") == 2


async def test_5xx_that_persists_is_unavailable_after_the_retries(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.fail_status, sandbox.org.faults.fail_count = 500, None
    with pytest.raises(OktaUnavailable):
        await (await client(retries=2)).get_session(session.id)
    assert sandbox.calls("GET", "/api/v1/sessions/") == 3


async def test_a_refresh_is_not_retried(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.fail_status, sandbox.org.faults.fail_count = 502, 1
    with pytest.raises(OktaUnavailable):
        await (await client(retries=2)).refresh_session(session.id)
    assert sandbox.calls("POST", "/api/v1/sessions/") == 1


async def test_a_hung_call_ends_within_the_timeout(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    sandbox.org.faults.hang = True
    c = await client(timeout=0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(OktaUnavailable):
        await c.get_session(session.id)
    assert asyncio.get_running_loop().time() - started < 2
    sandbox.org.faults.reset()


async def test_after_a_429_no_call_goes_out_until_the_reset(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client()
    sandbox.org.faults.rate_limited = True
    with pytest.raises(RateLimited):
        await c.get_session(session.id)
    sandbox.org.faults.rate_limited = False
    before = len(sandbox.org.api_calls)
    for _ in range(20):
        with pytest.raises(RateLimited):
            await c.get_session(session.id)
    assert len(sandbox.org.api_calls) == before
    sandbox.org.clock.advance(61)
    assert (await c.get_session(session.id)).id == session.id


async def test_a_429_on_session_reads_holds_back_only_session_reads(okta):
    """Okta counts rate limits per endpoint family: a flood of reads must not stop a logout's DELETE, a refresh or
    a Universal Logout's user calls."""
    sandbox, client = okta
    alice, bob = sandbox.org.sign_in(ALICE[0]), sandbox.org.sign_in(BOB[0])
    c = await client()
    sandbox.org.faults.rate_limited = True
    with pytest.raises(RateLimited):
        await c.get_session(alice.id)
    sandbox.org.faults.rate_limited = False
    assert c.blocked_until(Family.SESSION_READS) > sandbox.clock()
    assert c.blocked_until(Family.SESSION_WRITES) == c.blocked_until(Family.USERS) == 0.0
    before = sandbox.calls("GET", "/api/v1/sessions/")
    with pytest.raises(RateLimited):
        await c.get_session(alice.id)
    assert sandbox.calls("GET", "/api/v1/sessions/") == before  # held back, not sent
    await c.refresh_session(alice.id)
    assert await c.close_session(alice.id) is True
    user_id, login = await c.get_user(BOB[0])
    assert (user_id, login) == (sandbox.org.user(BOB[0]).id, BOB[0])
    await c.end_user_sessions(user_id)
    assert sandbox.org.session(bob.id) is None


async def test_a_429_on_user_calls_holds_back_only_user_calls(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client()
    sandbox.org.faults.rate_limited = True
    with pytest.raises(RateLimited):
        await c.get_user(ALICE[0])
    sandbox.org.faults.rate_limited = False
    with pytest.raises(RateLimited):
        await c.end_user_sessions(sandbox.org.user(ALICE[0]).id)
    assert (await c.get_session(session.id)).id == session.id
    assert c.blocked_until(Family.SESSION_READS) == 0.0


async def test_each_429_is_told_with_its_family_and_reset_and_a_hold_from_elsewhere_is_taken(okta, caplog):
    """A fleet shares its holds: the validator writes what `on_rate_limited` hears and hands what another replica
    saw to `hold_back`; a hold only ever moves later."""
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    seeing, held = await client(), await client()
    heard: list[tuple[Family, float]] = []
    seeing.on_rate_limited.append(lambda family, reset: heard.append((family, reset)))
    sandbox.org.faults.rate_limited = True
    with pytest.raises(RateLimited):
        await seeing.close_session(session.id)
    with pytest.raises(RateLimited):
        await seeing.close_session(session.id)  # held back here: not a 429, nothing told
    sandbox.org.faults.rate_limited = False
    assert heard == [(Family.SESSION_WRITES, seeing.blocked_until(Family.SESSION_WRITES))]
    reset = heard[0][1]
    held.hold_back(Family.SESSION_WRITES, reset)
    held.hold_back(Family.SESSION_WRITES, reset - 30)  # an older one, told late
    held.hold_back(Family.USERS, sandbox.clock() - 1)  # already over
    assert (held.blocked_until(Family.SESSION_WRITES), held.blocked_until(Family.USERS)) == (reset, 0.0)
    before = len(sandbox.org.api_calls)
    with pytest.raises(RateLimited):
        await held.close_session(session.id)
    assert len(sandbox.org.api_calls) == before
    assert (await held.get_session(session.id)).id == session.id  # other families go on
    assert sum("seen by another replica" in r.message for r in caplog.records) == 1


async def test_rate_limit_headers_are_kept(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client()
    await c.get_session(session.id)
    assert c.rate_limit is not None and c.rate_limit.limit > 0
    remaining = c.rate_limit.remaining
    await c.get_session(session.id)
    assert c.rate_limit.remaining == remaining - 1


async def test_refresh_moves_expires_at(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client()
    before = (await c.get_session(session.id)).expires_at
    sandbox.org.clock.advance(600)
    await c.refresh_session(session.id)
    assert (await c.get_session(session.id)).expires_at >= before + 600


async def test_close_session_then_it_is_gone(okta):
    sandbox, client = okta
    session = sandbox.org.sign_in(ALICE[0])
    c = await client()
    assert await c.close_session(session.id) is True
    assert await c.close_session(session.id) is False
    with pytest.raises(SessionGone):
        await c.get_session(session.id)


async def test_end_user_sessions_ends_every_session_of_that_user_only(okta):
    sandbox, client = okta
    a1, a2 = sandbox.org.sign_in(ALICE[0]), sandbox.org.sign_in(ALICE[0])
    b = sandbox.org.sign_in(BOB[0])
    c = await client()
    alice = await c.get_session(a1.id)
    await c.end_user_sessions(alice.user_id, oauth_tokens=True)
    assert sandbox.org.session(a1.id) is None and sandbox.org.session(a2.id) is None
    assert sandbox.org.session(b.id) is not None
    with pytest.raises(UserUnknown):
        await c.end_user_sessions("00u" + "Z" * 17)


async def test_the_token_is_not_in_the_clients_repr(okta, caplog):
    sandbox, client = okta
    caplog.set_level(logging.DEBUG)
    c = await client()
    assert API_TOKEN not in repr(c)
    await c.check_credentials()
    assert API_TOKEN not in caplog.text
