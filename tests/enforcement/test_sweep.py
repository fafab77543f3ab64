"""The sweep of open WebSockets over real HTTP to the Okta sandbox: ended sessions close their sockets, nothing else."""

from __future__ import annotations

import pytest
from okta_sandbox_support import ALICE, API_TOKEN, Okta
from yarl import URL

from gateway.enforcement.sweep import SocketSweep
from gateway.metrics import Metrics
from gateway.okta.client import OktaClient
from gateway.sessions.cache import ValidationCache
from gateway.sessions.sockets import OpenSockets
from gateway.sessions.validation import SessionValidator
from gateway.settings import CachePolicy


@pytest.fixture
async def sweep(okta_sandbox: Okta):
    sandbox = okta_sandbox
    metrics = Metrics()
    client = OktaClient(URL(sandbox.issuer), API_TOKEN, clock=sandbox.clock, metrics=metrics, timeout=1, retries=0)
    await client.start()
    validator = SessionValidator(client, ValidationCache(CachePolicy(ttl=0.0, negative_ttl=0.0, revalidate=0.0)),
                                 metrics, clock=sandbox.clock)
    sockets = OpenSockets()
    yield sandbox, sockets, SocketSweep(validator, sockets, metrics, clock=sandbox.clock), metrics
    await validator.close()
    await client.close()


async def test_the_sockets_of_a_session_okta_ended_close_and_the_others_stay_open(sweep):
    sandbox, sockets, sweeper, metrics = sweep
    ending, staying = sandbox.org.sign_in(ALICE[0]), sandbox.org.sign_in(ALICE[0])
    first, second = sockets.opened(ending.id), sockets.opened(ending.id)
    other = sockets.opened(staying.id)
    assert await sweeper.once() == 0
    sandbox.org.end_session(ending)
    assert await sweeper.once() == 2
    assert first.is_set() and second.is_set() and not other.is_set()
    assert sockets.sessions() == [staying.id]
    assert metrics.value("session_gateway_websockets_closed_total") == 2


async def test_an_okta_outage_closes_no_socket(sweep):
    sandbox, sockets, sweeper, _ = sweep
    session = sandbox.org.sign_in(ALICE[0])
    stop = sockets.opened(session.id)
    sandbox.org.faults.fail_status = 503
    assert await sweeper.once() == 0
    assert not stop.is_set()


async def test_a_session_whose_expiry_passed_closes_its_sockets(sweep):
    sandbox, sockets, sweeper, _ = sweep
    session = sandbox.org.sign_in(ALICE[0])
    stop = sockets.opened(session.id)
    sandbox.org.clock.advance((session.expires_at - sandbox.org.clock.now()).total_seconds() + 1)
    assert await sweeper.once() == 1
    assert stop.is_set()
