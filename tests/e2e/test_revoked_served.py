"""session_gateway_revoked_session_served_seconds, through the whole stack: from the time a revocation's source
gives to the first request of the revoked session the gateway refused, once per session (a client that keeps
sending the expired cookies is not counted again), for a session's end and a user-wide one alike."""

from __future__ import annotations

import asyncio

from okta_sandbox_support import ALICE, BOB
from stack_support import signed_in

from gateway.revocation.bus import Revocation
from gateway.sandbox.stack import AppRoute
from gateway.server import BUS, METRICS

SERVED = "session_gateway_revoked_session_served_seconds"


def refused(page) -> bool:
    return page.status == 302 and page.location == "/login"


async def test_the_revoked_served_window_is_observed_once_per_session_from_its_source_time(start, browsers):
    stack, alice = await signed_in(start, browsers, AppRoute("hr"))
    value = stack.gateway[METRICS].value
    kept = {name: alice.cookie(name) or "" for name in ("JSESSIONID", "gateway_binding_hr")}
    session = next(iter(stack.org.sessions_of(stack.org.user(ALICE[0]).id)))  # type: ignore[union-attr]
    stack.gateway[BUS].publish(Revocation("event_hook", "user_session_end", session.id,
                                          happened_at=stack.org.clock.timestamp() - 30))  # by the gateway's clock
    assert refused(await alice.get("/page/1"))
    assert value(SERVED + "_count") == 1
    assert 30 <= value(SERVED + "_sum") < 40
    assert value(SERVED + "_bucket", le="10.0") == 0 and value(SERVED + "_bucket", le="60.0") == 1

    for _ in range(3):  # a client that ignores the expired cookies comes back with them
        for name, cookie in kept.items():
            alice.set_cookie(name, cookie)
        assert refused(await alice.get("/page/1"))
    assert value(SERVED + "_count") == 1

    bob = browsers(stack)
    assert (await bob.sign_in(BOB)).status == 200
    await asyncio.sleep(0.05)  # the user's watermark lies clearly after the binding was made
    user = stack.org.user(BOB[0])
    assert user is not None
    stack.gateway[BUS].publish(Revocation("event_hook", "user_suspended", None, user.id, user.login))
    assert refused(await bob.get("/page/1"))
    assert value(SERVED + "_count") == 2  # from the user's watermark
    assert 30 <= value(SERVED + "_sum") < 40 + 5
