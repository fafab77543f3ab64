"""The operator's endpoints under attack, through the real gateway: odd bytes in every credential (raw sockets,
since aiohttp's client would refuse or re-encode them), guessing the token, and forms from another origin."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from raw_http import send_raw, statuses
from stack_support import ADMIN_TOKEN, SLOW_CACHE
from yarl import URL

from gateway.sandbox.stack import AppRoute
from gateway.server import ENFORCERS

pytestmark = pytest.mark.hostile

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def stack(start):
    return await start(AppRoute("hr"), okta=SLOW_CACHE, admin=True)


def address(stack) -> tuple[str, int]:
    url = URL(stack.gateway_url)
    return url.host or "127.0.0.1", url.port or 80


async def raw(stack, method: str, path: str, headers: list[tuple[str, bytes]] = (), body: bytes = b"") -> bytes:
    head = f"{method} /.gateway/{path} HTTP/1.1\r\nHost: {URL(stack.gateway_url).raw_authority}\r\n".encode()
    for name, value in headers:
        head += name.encode() + b": " + value + b"\r\n"
    if body or method in ("POST", "PUT"):
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return await send_raw(*address(stack), head + b"Connection: close\r\n\r\n" + body, idle=5)


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def refused_cleanly(answer: bytes, allowed: tuple[int, ...] = (400, 401, 403, 415)) -> bool:
    found = statuses(answer)
    return len(found) == 1 and found[0] in allowed and b"Traceback" not in answer and len(body_of(answer)) < 4096


# --- odd bytes in the operator cookie, the Bearer token, the CSRF token and the form ------------------------------

# one stack per test, the hostile values in a loop: starting a stack costs more than the requests

ODD_COOKIES = ["\u00b21.x".encode(), "\u00b2\u00b3.abc".encode(), b"1\xff.x", b"\xff\xfe", "\u0661\u0662.x".encode(),
               b"99999999999999999999999999.x", b"-1.x", b".", b"1.\xed\xa0\x80", b"%ff.x", b'"1.x"']
ODD_TOKENS = ["\u00b2".encode(), b"\xff\xfe", b"\xed\xa0\x80", ADMIN_TOKEN.encode() + b"\xff", "\u0661".encode() * 40,
              b"\x00"]
FORM = b"application/x-www-form-urlencoded"
ODD_POLICY_FORMS = [
    (FORM, b"mode=off&csrf=" + "\u00b2".encode()),
    (FORM, b"mode=off&csrf=%ff%fe"),
    (FORM, b"mode=\xff&csrf=x"),
    (FORM + b"; charset=no-such-charset", b"mode=off&csrf=x"),
    (FORM + b"; charset=utf-16", "mode=off&csrf=x".encode("utf-16")),
    (b"multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\noff"),
    (b"multipart/form-data", b"garbage"),
    (b"text/plain", b"mode=off"),
]
ODD_SIGN_IN_FORMS = [
    (FORM, b"token=" + "\u00b2".encode()),
    (FORM, b"token=%ff%fe%ed%a0%80"),
    (FORM + b"; charset=no-such-charset", b"token=x"),
    (b"multipart/form-data", b"garbage"),
]


async def test_any_operator_cookie_is_a_401_never_a_500(stack):
    for cookie in ODD_COOKIES:
        for path in ("status", "status.json", "metrics"):
            answer = await raw(stack, "GET", path, [("Cookie", b"gateway_operator=" + cookie)])
            assert refused_cleanly(answer, (401,)), (cookie, path, answer[:300])


async def test_any_bearer_token_is_a_401_never_a_500(stack):
    for token in ODD_TOKENS:
        for method, path in (("GET", "status.json"), ("GET", "status"), ("PUT", "admin/routes/hr/policy")):
            answer = await raw(stack, method, path, [("Authorization", b"Bearer " + token)])
            assert refused_cleanly(answer, (400, 401)), (token, path, answer[:300])  # 400: aiohttp refuses a NUL
        stack.org.clock.advance(30)  # past the sign-in throttle: each odd token is compared


async def signed_in_operator(stack):
    async with aiohttp.ClientSession() as http, http.post(stack.url("/.gateway/login"), data={"token": ADMIN_TOKEN},
                                                          allow_redirects=False) as r:
        assert r.status == 303
        cookie = r.cookies["gateway_operator"].value
    async with aiohttp.ClientSession() as http, http.get(stack.url("/.gateway/status"),
                                                         headers={"Cookie": f"gateway_operator={cookie}"}) as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
    return cookie, csrf


async def test_a_hostile_policy_form_is_a_4xx_never_a_500(stack):
    cookie, _ = await signed_in_operator(stack)
    for content_type, body in ODD_POLICY_FORMS:
        answer = await raw(stack, "POST", "admin/routes/hr/policy",
                           [("Cookie", b"gateway_operator=" + cookie.encode()), ("Content-Type", content_type)], body)
        assert refused_cleanly(answer), (content_type, body, answer[:300])
    assert stack.gateway[ENFORCERS]["hr"].mode.value == "enforce"


async def test_a_hostile_sign_in_form_is_a_4xx_never_a_500(stack):
    for content_type, body in ODD_SIGN_IN_FORMS:
        answer = await raw(stack, "POST", "login", [("Content-Type", content_type)], body)
        assert refused_cleanly(answer, (400, 401, 415)), (content_type, body, answer[:300])


async def test_a_signed_in_operator_with_an_odd_notice_or_cookie_gets_the_page(stack):
    cookie, _ = await signed_in_operator(stack)
    answer = await raw(stack, "GET", "status?notice=%ff%ed%a0%80%00<b>",
                       [("Cookie", b"gateway_operator=" + cookie.encode())])
    assert statuses(answer) == [200] and b"Traceback" not in answer
    answer = await raw(stack, "GET", "status", [("Authorization", f"Bearer {ADMIN_TOKEN}".encode()),
                                                ("Cookie", b"gateway_operator=\xff\xfe")])
    assert statuses(answer) == [200] and b"Traceback" not in answer


async def test_a_hostile_policy_json_is_a_400_never_a_500(stack):
    for body in (b"[" * 4000, b'{"mode":' * 400 + b"1", b"\xff", b'{"mode": "\xed\xa0\x80"}'):
        answer = await raw(stack, "PUT", "admin/routes/hr/policy", [
            ("Authorization", f"Bearer {ADMIN_TOKEN}".encode()), ("Content-Type", b"application/json")], body)
        assert refused_cleanly(answer, (400,)), (body[:20], answer[:300])


# --- guessing the operator token -------------------------------------------------------------------------------

def login(http: aiohttp.ClientSession, stack, token: str, **headers: str):
    return http.post(stack.url("/.gateway/login"), data={"token": token}, allow_redirects=False, headers=headers)


async def test_guessing_the_token_at_the_sign_in_form_is_held_back(stack):
    async with aiohttp.ClientSession() as http:
        async def guess(i: int) -> tuple[int, str | None]:
            async with login(http, stack, f"wrong-token-{i:010d}") as r:
                return r.status, r.headers.get("Retry-After")

        answers = await asyncio.gather(*(guess(i) for i in range(300)))
        compared = [a for a in answers if a[0] == 401]
        held = [a for a in answers if a[0] == 429]
        assert len(compared) <= 5 and len(compared) + len(held) == 300
        assert all(after is not None and int(after) >= 1 for _, after in held)
        async with login(http, stack, ADMIN_TOKEN) as r:  # while held back even the right token is not compared
            assert r.status == 429 and "Cache-Control" in r.headers
        stack.org.clock.advance(int(held[0][1] or 1))
        async with login(http, stack, ADMIN_TOKEN) as r:
            assert r.status == 303


async def test_guessing_the_token_as_a_bearer_is_held_back_too(stack):
    async with aiohttp.ClientSession() as http:
        found = []
        for i in range(30):
            async with http.get(stack.url("/.gateway/status.json"),
                                headers={"Authorization": f"Bearer wrong-token-{i:010d}"}) as r:
                found.append(r.status)
        assert found.count(401) <= 5 and found.count(429) >= 25
        async with http.get(stack.url("/.gateway/status.json"), headers=BEARER) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        stack.org.clock.advance(30)
        async with http.get(stack.url("/.gateway/status.json"), headers=BEARER) as r:
            assert r.status == 200


async def test_many_addresses_share_one_overall_allowance(start):
    stack = await start(AppRoute("hr"), okta=SLOW_CACHE, admin=True, server={"trusted_proxies": ["127.0.0.0/8"]})
    async with aiohttp.ClientSession() as http:
        found = []
        for i in range(60):  # one guess from each of 60 addresses, through a trusted proxy
            async with login(http, stack, f"wrong-token-{i:010d}", **{"X-Forwarded-For": f"10.0.0.{i}"}) as r:
                found.append(r.status)
        assert found.count(401) <= 20 and found.count(429) >= 40


# --- CSRF: the form's Origin is exactly this gateway's origin --------------------------------------------------

async def test_a_form_from_another_scheme_of_the_same_host_and_port_is_refused(stack):
    cookie, csrf = await signed_in_operator(stack)
    authority = URL(stack.gateway_url).raw_authority
    headers = {"Cookie": f"gateway_operator={cookie}"}
    async with aiohttp.ClientSession() as http:
        for origin in (f"https://{authority}", f"ws://{authority}", f"http://{authority}/", f"http://x@{authority}",
                       f"http://{authority}.evil.example", "null", "http://127.0.0.1"):
            async with http.post(stack.url("/.gateway/admin/routes/hr/policy"), data={"mode": "off", "csrf": csrf},
                                 headers={**headers, "Origin": origin}, allow_redirects=False) as r:
                assert r.status == 403, origin
            async with login(http, stack, ADMIN_TOKEN, Origin=origin) as r:
                assert r.status in (401, 429), origin
        assert stack.gateway[ENFORCERS]["hr"].mode.value == "enforce"
        stack.org.clock.advance(60)
        async with http.post(stack.url("/.gateway/admin/routes/hr/policy"), data={"mode": "off", "csrf": csrf},
                             headers={**headers, "Origin": f"HTTP://{authority.upper()}"},
                             allow_redirects=False) as r:
            assert r.status == 303
        assert stack.gateway[ENFORCERS]["hr"].mode.value == "off"


async def test_behind_a_trusted_tls_proxy_the_origin_is_the_https_one(start):
    stack = await start(AppRoute("hr"), okta=SLOW_CACHE, admin=True, server={"trusted_proxies": ["127.0.0.0/8"]})
    authority = URL(stack.gateway_url).raw_authority
    proto = {"X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession() as http:
        async with login(http, stack, ADMIN_TOKEN, Origin=f"http://{authority}", **proto) as r:
            assert r.status == 401  # the browser came by https: an http Origin is another origin
        async with login(http, stack, ADMIN_TOKEN, Origin=f"https://{authority}", **proto) as r:
            assert r.status == 303
