"""Universal Logout through the gateway: Okta's signed call ends every app session of the user, and every bad
call (wrong audience, expired, replayed, signed by an unknown key) is refused with nothing revoked."""

from __future__ import annotations

import aiohttp
import pytest
from okta_sandbox_support import ALICE, BOB
from raw_http import send_raw, statuses
from stack_support import SLOW_CACHE
from yarl import URL

from gateway.sandbox.stack import UNIVERSAL_LOGOUT

WITH_UL = {**SLOW_CACHE, "universal_logout": {}}


async def signed_in(start, browsers):
    stack = await start(okta=WITH_UL)
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE)).status == 200
    return stack, browser


def refused(page) -> bool:
    return page.status == 302 and page.location == "/login"


async def post(stack, headers, body) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(stack.url(UNIVERSAL_LOGOUT), headers=headers, data=body) as r:
            return r.status


async def test_a_universal_logout_by_email_ends_every_app_session_of_the_user(start, browsers):
    stack, browser = await signed_in(start, browsers)
    bob = browsers(stack)
    await bob.sign_in(BOB)
    assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), ALICE[0], "email") == 204
    assert refused(await browser.get("/page/1"))
    assert (await bob.get("/page/1")).status == 200


async def test_a_universal_logout_by_iss_sub_works_too(start, browsers):
    stack, browser = await signed_in(start, browsers)
    assert await stack.org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), ALICE[0], "iss_sub") == 204
    assert refused(await browser.get("/page/1"))


async def test_an_unknown_user_is_a_404(start, browsers):
    stack, _ = await signed_in(start, browsers)
    ghost = stack.org.add_user("ghost@example.com", "Ghost-pw-1")
    headers, body = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ghost)
    del stack.org.users[ghost.id]  # gone from Okta since
    assert await post(stack, headers, body.replace(b"ghost@example.com", b"nobody@example.com")) in (401, 404)
    headers, body = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ALICE[0])
    assert await post(stack, headers, body.replace(b"alice@example.com", b"nobody@example.com")) == 404


async def test_bad_tokens_are_refused_and_revoke_nothing(start, browsers):
    stack, browser = await signed_in(start, browsers)
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = stack.org.clock.timestamp()
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for overrides in ({"aud": stack.url("/elsewhere")}, {"exp": now - 3600, "iat": now - 4000, "nbf": now - 4000},
                      {"key": foreign}, {"typ": "JWT"}, {"iss": "https://evil.example"}):
        headers, body = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ALICE[0], **overrides)
        assert await post(stack, headers, body) == 401, overrides
    assert (await browser.get("/page/1")).status == 200


async def test_a_replayed_token_is_refused(start, browsers):
    stack, browser = await signed_in(start, browsers)
    headers, body = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ALICE[0])
    assert await post(stack, headers, body) == 204
    assert await post(stack, headers, body) == 401
    assert (await browser.sign_in(ALICE)).status == 200  # signing in again after the logout works
    assert (await browser.get("/page/1")).status == 200


async def test_a_malformed_body_is_a_400(start, browsers):
    stack, _ = await signed_in(start, browsers)
    headers, _ = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ALICE[0])
    assert await post(stack, headers, b'{"sub_id": {"format": "phone", "phone": "1"}}') == 400


# --- hostile calls: a short 4xx, never a 500 ------------------------------------------------------------------

async def post_raw(stack, authorization: bytes, body: bytes) -> bytes:
    url = URL(stack.url(UNIVERSAL_LOGOUT))
    head = (b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (url.raw_path.encode(), url.raw_authority.encode(),
                                                                authorization, len(body)))
    return await send_raw(url.host or "127.0.0.1", url.port or 80, head + body, idle=5)


@pytest.mark.hostile
async def test_a_hostile_token_is_a_401_never_a_500(start, browsers):
    stack, browser = await signed_in(start, browsers)
    for authorization in (b"Bearer \xff\xfe", "Bearer \u00b2.\u00b3.x".encode(), b"Bearer \xed\xa0\x80",
                          b"Bearer a.b.c", b"Bearer " + b"e30." * 3, b"Bearer ..", b"Bearer", b"Basic x",
                          b"Bearer eyJhbGciOiJSUzI1NiJ9\xff.e30.x", b"Bearer " + b"A" * 12000):
        answer = await post_raw(stack, authorization, b'{"sub_id": {"format": "email", "email": "alice@example.com"}}')
        assert statuses(answer) in ([401], [400]) and b"Traceback" not in answer, (authorization[:30], answer[:300])
        assert len(answer.partition(b"\r\n\r\n")[2]) < 200
    assert (await browser.get("/page/1")).status == 200


@pytest.mark.hostile
async def test_a_hostile_body_behind_a_good_token_is_a_400(start, browsers):
    stack, browser = await signed_in(start, browsers)
    for body in (b"[" * 50_000, b'{"sub_id": ' * 3000, "{}".encode("utf-16"), b"\xff",
                 b'{"sub_id": {"format": "email", "email": "\xed\xa0\x80@x"}}', b"9" * 5000):
        headers, _ = stack.org.universal_logout_request(stack.url(UNIVERSAL_LOGOUT), ALICE[0])
        answer = await post_raw(stack, headers["Authorization"].encode(), body)
        assert statuses(answer) == [400] and b"Traceback" not in answer, (body[:30], answer[:300])
    assert (await browser.get("/page/1")).status == 200
