"""The JWKS cache and fetcher: keys made here behind a plain async `fetch_jwks`, and the fetcher over loopback HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from revocation.jwt_support import KEY, OTHER_KEY, jwk

from gateway.revocation.jwks import JwksUnavailable, KeySet, jwks_fetcher, parse_jwks
from gateway.revocation.refusal import Refused


async def test_keys_are_fetched_once_and_kept(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock)
    first = await keys.key("k1")
    clock.now += 3599
    assert await keys.key("k1") is first and org.calls == 1


async def test_an_unknown_kid_refetches_so_a_rotated_key_is_found(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock)
    await keys.key("k1")
    clock.now += 30
    org.keys = [jwk(OTHER_KEY, "k2")]
    assert (await keys.key("k2")).public_numbers() == OTHER_KEY.public_key().public_numbers()
    assert org.calls == 2
    with pytest.raises(Refused):
        await keys.key("k1")  # gone from the JWKS, gone from the cache


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_min_refetch(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock, min_refetch=30)
    await keys.key("k1")
    clock.now += 30
    results = await asyncio.gather(*(keys.key(f"bad-{i}") for i in range(50)), return_exceptions=True)
    assert all(isinstance(r, Refused) and r.status == 401 for r in results)
    assert org.calls == 2
    clock.now += 29
    for i in range(20):
        with pytest.raises(Refused):
            await keys.key(f"worse-{i}")
    assert org.calls == 2 and await keys.key("k1")
    clock.now += 1
    with pytest.raises(Refused):
        await keys.key("bad-again")
    assert org.calls == 3


async def test_keys_past_their_ttl_are_fetched_again(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock, ttl=3600)
    await keys.key("k1")
    clock.now += 3600
    await keys.key("k1")
    assert org.calls == 2


async def test_a_failed_fetch_is_401_and_keeps_the_keys_still_fresh(org, clock):
    keys = KeySet(org.fetch_jwks, clock=clock, ttl=3600)
    org.fail = True
    with pytest.raises(Refused) as caught:
        await keys.key("k1")
    assert caught.value.status == 401
    org.fail = False
    clock.now += 30
    await keys.key("k1")
    org.fail = True
    clock.now += 30
    with pytest.raises(Refused):
        await keys.key("k2")
    assert await keys.key("k1")
    clock.now += 3600
    with pytest.raises(Refused):
        await keys.key("k1")  # past its ttl and Okta unreachable: not used


@pytest.mark.parametrize("document", [{}, {"keys": "k1"}, []])
async def test_a_jwks_that_is_not_one_is_a_failed_fetch(clock, document):
    async def fetch() -> dict[str, Any]:
        return document  # type: ignore[return-value]

    with pytest.raises(Refused):
        await KeySet(fetch, clock=clock).key("k1")


def test_only_rs256_rsa_signing_keys_of_2048_bits_or_more_are_kept():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = parse_jwks({"keys": [
        jwk(KEY, "good"), {k: v for k, v in jwk(KEY, "bare").items() if k not in ("alg", "use")},
        jwk(KEY, "enc", use="enc"), jwk(KEY, "hs", alg="HS256"), jwk(weak, "weak"),
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}, {"kty": "RSA", "kid": "broken", "n": "!", "e": "AQAB"},
        {**jwk(KEY, "k"), "kid": 7}, "not a key",
    ]})
    assert set(keys) == {"good", "bare"}


async def test_the_jwks_fetcher_wants_200_and_a_small_json_object(aiohttp_server):
    answers: dict[str, web.Response] = {
        "/ok": web.json_response({"keys": []}), "/down": web.Response(status=503),
        "/list": web.json_response([]), "/huge": web.json_response({"keys": ["x" * 70_000]}),
    }
    app = web.Application()
    async def answer(request: web.Request) -> web.Response:
        return answers[request.path]

    app.router.add_get("/{name}", answer)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        assert await jwks_fetcher(session, f"http://127.0.0.1:{server.port}/ok")() == {"keys": []}
        for bad in ("/down", "/list", "/huge"):
            with pytest.raises(JwksUnavailable):
                await jwks_fetcher(session, f"http://127.0.0.1:{server.port}{bad}")()
