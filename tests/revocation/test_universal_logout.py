"""The Universal Logout endpoint: the body formats, the answers of `handle` (with a real verifier of tokens signed
here), and one run over loopback HTTP against the sandbox org."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from okta_sandbox_support import ALICE, BOB
from revocation.jwt_support import AUDIENCE, ISSUER, Clock, Org, token
from store.links import linked

from gateway.revocation.jwks import KeySet, jwks_fetcher
from gateway.revocation.refusal import Refused
from gateway.revocation.tokens import TokenVerifier
from gateway.revocation.universal_logout import LogoutSubject, handle, subject_from_body
from gateway.sandbox.stack import free_port
from gateway.store import redis as redis_link
from gateway.store.redis import RedisLink
from gateway.store.redis_seen import RedisSeen

USER_ID = "00u1a2b3c4d5e6f7g8h9"


# --- the body ----------------------------------------------------------------------------------------------------

def test_the_email_format_names_the_login_lower_cased():
    body = json.dumps({"sub_id": {"format": "email", "email": "Alice@Example.COM"}}).encode()
    assert subject_from_body(body, ISSUER) == LogoutSubject(user_id=None, login="alice@example.com")


def test_the_iss_sub_format_names_the_user_id():
    body = json.dumps({"sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": USER_ID}}).encode()
    assert subject_from_body(body, ISSUER + "/") == LogoutSubject(user_id=USER_ID, login=None)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"sub_id"', b"\xff\xfe", b"[" * 20_000 + b"]" * 20_000,
    b'{"sub_id": "alice@example.com"}', b'{"subject": {"format": "email", "email": "a@example.com"}}',
    b'{"sub_id": {"format": "opaque", "id": "x"}}', b'{"sub_id": {"email": "a@example.com"}}',
    b'{"sub_id": {"format": "email"}}', b'{"sub_id": {"format": "email", "email": "no-at-sign"}}',
    b'{"sub_id": {"format": "email", "email": " a@example.com"}}', b'{"sub_id": {"format": "email", "email": 5}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://example.okta.com"}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://evil.okta.com", "sub": "00u1a2b3c4d5e6f7g8h9"}}',
    b'{"sub_id": {"format": "iss_sub", "iss": "https://example.okta.com", "sub": "../sessions/me"}}',
    json.dumps({"sub_id": {"format": "email", "email": "a@example.com"}, "pad": "x" * 16_384}).encode(),
    b'{"sub_id": {"format": "email", "email": "\\ud800@example.com"}}',  # a lone surrogate: no store encodes it
    b'{"sub_id": {"format": "email", "email": "a\\u0000b@example.com"}}',
])
def test_a_malformed_body_is_400(body):
    with pytest.raises(Refused) as caught:
        subject_from_body(body, ISSUER)
    assert caught.value.status == 400


# --- the endpoint ------------------------------------------------------------------------------------------------

class Revocations:
    def __init__(self, *, known: bool = True, error: Exception | None = None) -> None:
        self.known, self.error = known, error
        self.calls: list[LogoutSubject] = []

    async def revoke(self, subject: LogoutSubject, claims: dict[str, Any]) -> bool:
        self.calls.append(subject)
        if self.error is not None:
            raise self.error
        return self.known


async def endpoint_client(aiohttp_client: Any, verifier: TokenVerifier, revocations: Revocations) -> Any:
    async def route(request: web.Request) -> web.Response:
        return await handle(request, verifier, ISSUER, revocations.revoke)

    app = web.Application()
    app.router.add_post("/okta/universal-logout", route)
    return await aiohttp_client(app)


EMAIL_BODY = json.dumps({"sub_id": {"format": "email", "email": "alice@example.com"}}).encode()


async def post(client: Any, authorization: str | None, body: bytes = EMAIL_BODY) -> tuple[int, str, str | None]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    async with client.post("/okta/universal-logout", data=body, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers.get("Cache-Control")


@pytest.mark.parametrize(("revocations", "status"), [(Revocations(), 204), (Revocations(known=False), 404),
                                                      (Revocations(error=Refused(422, "user locked")), 422),
                                                      (Revocations(error=RuntimeError("db password=hunter2")), 422)])
async def test_the_answer_follows_revoke(aiohttp_client, verifier, clock, revocations, status):
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    answered, text, cache = await post(client, f"Bearer {token(clock.now)}")
    assert (answered, cache) == (status, "no-store")
    assert revocations.calls == [LogoutSubject(None, "alice@example.com")]
    assert len(text) < 40 and "hunter2" not in text and "Traceback" not in text


async def test_a_bad_token_is_401_and_nothing_is_revoked(aiohttp_client, verifier, clock):
    revocations = Revocations()
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    assert (await post(client, None))[::2] == (401, "no-store")
    assert (await post(client, f"Bearer {token(clock.now, aud='https://other/')}"))[:2] == (401, "wrong audience\n")
    assert revocations.calls == []


async def test_the_token_is_checked_before_the_body(aiohttp_client, verifier):
    client = await endpoint_client(aiohttp_client, verifier, Revocations())
    assert (await post(client, None, b"not json"))[0] == 401


async def test_a_bad_or_oversized_body_is_400(aiohttp_client, verifier, clock):
    revocations = Revocations()
    client = await endpoint_client(aiohttp_client, verifier, revocations)
    assert (await post(client, f"Bearer {token(clock.now)}", b"{}"))[::2] == (400, "no-store")
    assert (await post(client, f"Bearer {token(clock.now)}", b"x" * 100_000))[:2] == (400, "body too large\n")
    assert revocations.calls == []


# --- the jti set shared by the fleet (one real redis-server) --------------------------------------------------------

@pytest.fixture
async def links(redis_server, monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_EVERY", 0.05)
    async with linked(redis_server.url, timeout=0.2) as made:
        yield made


def fleet_verifier(link: RedisLink, org: Org, clock: Clock) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=KeySet(org.fetch_jwks, clock=clock), clock=clock,
                         replays=RedisSeen(link, "jti"))


async def test_a_token_replayed_to_another_replica_is_401(aiohttp_client, links, org, clock):
    one, other = [await endpoint_client(aiohttp_client, fleet_verifier(link, org, clock), Revocations())
                  for link in links]
    presented = f"Bearer {token(clock.now)}"
    assert (await post(one, presented))[0] == 204
    assert (await post(other, presented))[:2] == (401, "token replayed\n")


@pytest.mark.parametrize("fault", ["kill", "hang"])
async def test_redis_away_is_never_a_5xx_nor_a_wait_past_the_store_timeout(aiohttp_client, links, org, clock,
                                                                          redis_server, fault):
    revocations = Revocations()
    client = await endpoint_client(aiohttp_client, fleet_verifier(links[0], org, clock), revocations)
    getattr(redis_server, fault)()
    try:
        presented = f"Bearer {token(clock.now)}"
        began = time.monotonic()
        assert (await post(client, presented))[0] == 204  # logged out, by this replica's set alone
        assert time.monotonic() - began < 0.2 + 0.3  # the store timeout, and the answer's own time
        assert (await post(client, presented))[:2] == (401, "token replayed\n")  # a replay here is still caught
        assert len(revocations.calls) == 1
    finally:
        if fault == "hang":
            redis_server.resume()


# --- over loopback, against the sandbox org ----------------------------------------------------------------------

async def test_a_universal_logout_from_the_sandbox_org_over_loopback(aiohttp_server, okta_sandbox):
    port = free_port("127.0.0.1")
    endpoint = f"http://127.0.0.1:{port}/okta/universal-logout"
    known_logins = {ALICE[0]}
    revoked: list[LogoutSubject] = []
    async with aiohttp.ClientSession() as http:
        org = okta_sandbox.org
        carol = org.add_user("carol@example.com", "Carol-pw-3")
        bob = org.user(BOB[0])
        known_ids = {bob.id}
        fetches: list[float] = []
        fetch = jwks_fetcher(http, f"{org.issuer}/oauth2/v1/keys")

        async def counted_fetch() -> dict[str, Any]:
            fetches.append(org.clock.timestamp())
            return await fetch()

        on_org_clock = org.clock.timestamp
        verifier = TokenVerifier(issuer=org.issuer, audience=endpoint, keys=KeySet(counted_fetch, clock=on_org_clock),
                                 clock=on_org_clock)

        async def revoke(subject: LogoutSubject, claims: dict[str, Any]) -> bool:
            revoked.append(subject)
            return subject.login in known_logins or subject.user_id in known_ids

        await aiohttp_server(_endpoint_app(verifier, org.issuer, revoke), host="127.0.0.1", port=port)

        assert await org.send_universal_logout(endpoint, ALICE[0]) == 204
        assert await org.send_universal_logout(endpoint, BOB[0], fmt="iss_sub") == 204
        assert revoked == [LogoutSubject(None, ALICE[0]), LogoutSubject(bob.id, None)]
        assert await org.send_universal_logout(endpoint, carol) == 404

        org.rotate_logout_key()
        org.clock.advance(30)
        assert await org.send_universal_logout(endpoint, ALICE[0]) == 204
        assert len(fetches) == 2

        foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert await _post(http, endpoint, *org.universal_logout_request(endpoint, ALICE[0], key=foreign)) == 401
        assert await _post(http, endpoint, *org.universal_logout_request(endpoint, ALICE[0], key=foreign,
                                                                         kid="foreign-kid")) == 401
        assert len(fetches) == 2  # the unknown kid came within min_refetch of the last fetch

        replayed = org.universal_logout_request(endpoint, ALICE[0])
        assert await _post(http, endpoint, *replayed) == 204
        assert await _post(http, endpoint, *replayed) == 401
        assert [e["outcome"]["result"] for e in org.system_log
                if e["eventType"] == "user.authentication.universal_logout"] == ["SUCCESS", "SUCCESS", "FAILURE",
                                                                                   "SUCCESS"]


def _endpoint_app(verifier: TokenVerifier, issuer: str,
                  revoke: Callable[[LogoutSubject, dict[str, Any]], Any]) -> web.Application:
    async def route(request: web.Request) -> web.Response:
        return await handle(request, verifier, issuer, revoke)

    app = web.Application()
    app.router.add_post("/okta/universal-logout", route)
    return app


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes) -> int:
    async with http.post(url, data=body, headers=headers) as answer:
        return answer.status
