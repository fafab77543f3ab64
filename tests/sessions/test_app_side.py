"""What the gateway does to the app's own session (gateway/sessions/app_side.py), against a real upstream app on
loopback and real requests: the server-side logout with the app's cookies only, once per value and within the rate
for unbound sessions; calls to the app; and the app's cookies expired where the app set them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import Morsel, SimpleCookie
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from okta_sandbox_support import Answer

from conftest import route, settings
from gateway.proxy.upstream import UpstreamPools
from gateway.sessions import app_side
from gateway.sessions.app_side import LOGOUTS_PER_SECOND, AppSide
from gateway.sessions.binding import BindingCodec
from gateway.sessions.binding_cookie import BindingStorage
from gateway.sessions.cookies import parse_cookie_header, read_set_cookie

OKTA = {"org_url": "https://example.okta.com", "api_token": "${OKTA_API_TOKEN}"}
BINDING = {"keys": "${GATEWAY_BINDING_KEYS}"}
BROWSER_COOKIES = "JSESSIONID=app-session-1; gateway_binding=sealed-binding; analytics=42"


class App:
    """The upstream app: records every request; /logout ends its session, /login sets it on a deep path, /form
    answers a POST with two cookies."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, headers, body
        self.web = web.Application()
        self.web.router.add_route("*", "/{tail:.*}", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        response = web.Response(text="the app's page")
        if request.path.endswith("/logout"):
            response.del_cookie("JSESSIONID")
        elif request.path == "/login":
            response.set_cookie("JSESSIONID", "fresh", path="/deep", domain="hr.example.test")
        elif request.path == "/form":
            response = web.Response(status=303, headers={"Location": "/done"})
            response.set_cookie("JSESSIONID", "after-form")
            response.set_cookie("REMEMBER", "yes")
        return response

    def cookies_logged_out(self) -> list[str]:
        return [headers.get("Cookie", "") for method, path, headers, _ in self.seen if path.endswith("/logout")]


StartSide = Callable[..., Awaitable[tuple[AppSide, App, TestServer]]]


@pytest.fixture
async def start_side(start_upstream) -> AsyncIterator[StartSide]:
    """An AppSide as the gateway builds one for an enforcing servlet route (the route's options on top), in front
    of a real App; its pools are started and closed after the test."""
    pools: list[UpstreamPools] = []

    async def start(upstream: str | None = None, **overrides: Any) -> tuple[AppSide, App, TestServer]:
        app = App()
        server = await start_upstream(app.web)
        overrides = {"policy": "enforce", "app_profile": "servlet", **overrides}
        parsed = settings(route(upstream or server, **overrides), okta=OKTA, binding=BINDING)
        r = parsed.routes.routes[0]
        assert r.sessions is not None
        pools.append(UpstreamPools(parsed.routes.routes, parsed.proxy))
        await pools[-1].start()
        storage = BindingStorage(BindingCodec(parsed.binding_keys), r.sessions.cookie, r.name)
        return AppSide(r, r.sessions, pools[-1], storage), app, server

    yield start
    for p in pools:
        await p.close()


def logging_out(side: AppSide, *, limited: bool = True) -> Callable[[web.Request], Awaitable[str]]:
    """A gateway handler that logs the app out with the cookies the browser sent."""

    async def action(request: web.Request) -> str:
        await side.logout(request, parse_cookie_header(request.headers.get("Cookie")), limited=limited)
        return "logged out"

    return action


def expiring(side: AppSide) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def action(request: web.Request) -> web.Response:
        response = web.Response(text="ended")
        side.expire(request, response, parse_cookie_header(request.headers.get("Cookie")))
        return response

    return action


def set_cookies(answer: Answer) -> dict[str, Morsel[str]]:
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


# --- which cookies are the app's ---------------------------------------------------------------------------------


async def test_the_profile_says_which_cookies_are_the_apps(start_side):
    side, _, _ = await start_side()
    assert side.is_app_cookie("JSESSIONID") and not side.is_app_cookie("gateway_binding")
    assert side.present(parse_cookie_header(BROWSER_COOKIES)) == ["JSESSIONID"]
    shib, _, _ = await start_side(app_profile="generic", app_cookies=["_shibsession_*"])
    assert shib.present({"_shibsession_a": "1", "other": "2", "_shibsession_b": "3"}) == ["_shibsession_a",
                                                                                         "_shibsession_b"]


# --- the server-side logout ----------------------------------------------------------------------------------------


async def test_the_logout_calls_the_apps_logout_url_with_its_cookies_only(start_side, in_handler):
    side, app, server = await start_side()
    answer = await in_handler(logging_out(side), headers={"Cookie": BROWSER_COOKIES, "Host": "hr.example.test"})
    assert answer.status == 200
    [(method, path, headers, body)] = app.seen
    assert (method, path, body) == ("GET", "/logout", b"")
    assert headers["Cookie"] == "JSESSIONID=app-session-1"  # not the binding, not the other cookies
    assert headers["Accept"] == "text/html"
    assert headers["Host"] == f"{server.host}:{server.port}"  # the upstream's, as for proxied requests
    assert headers["X-Forwarded-Host"] == "hr.example.test" and headers["X-Forwarded-For"] == "127.0.0.1"


async def test_with_preserve_host_the_logout_names_the_browsers_host(start_side, in_handler):
    side, app, _ = await start_side(preserve_host=True)
    await in_handler(logging_out(side), headers={"Cookie": BROWSER_COOKIES, "Host": "hr.example.test"})
    assert app.seen[0][2]["Host"] == "hr.example.test"


async def test_the_logout_goes_through_the_routes_rewrite(start_side, in_handler):
    side, app, _ = await start_side(path="/hr", rewrite="/legacy", app_logout_url="/hr/logout")
    await in_handler(logging_out(side), headers={"Cookie": BROWSER_COOKIES})
    assert [path for _, path, _, _ in app.seen] == ["/legacy/logout"]


async def test_an_app_cookie_value_is_logged_out_once(start_side, in_handler):
    side, app, _ = await start_side()
    for cookie in ("JSESSIONID=one", "JSESSIONID=one; analytics=1", "JSESSIONID=two", "JSESSIONID=one"):
        await in_handler(logging_out(side, limited=False), headers={"Cookie": cookie})
    assert app.cookies_logged_out() == ["JSESSIONID=one", "JSESSIONID=two"]


async def test_nothing_is_called_without_an_app_cookie_or_without_a_logout_url(start_side, in_handler):
    side, app, _ = await start_side()
    await in_handler(logging_out(side), headers={"Cookie": "gateway_binding=sealed; analytics=42"})
    await in_handler(logging_out(side))
    generic, generic_app, _ = await start_side(app_profile="generic")  # its profile has no logout URL
    assert generic.present({"session": "s1"}) == ["session"]
    await in_handler(logging_out(generic), headers={"Cookie": "session=s1"})
    assert app.seen == [] and generic_app.seen == []


async def test_unbound_logouts_keep_to_the_rate_and_a_bound_one_does_not_wait_on_it(start_side, in_handler):
    side, app, _ = await start_side()
    burst = int(LOGOUTS_PER_SECOND)

    async def flood(request: web.Request) -> str:
        unbound = [side.logout(request, {"JSESSIONID": f"made-up-{i}"}) for i in range(burst + 5)]
        bound = side.logout(request, {"JSESSIONID": "revoked-but-bound"}, limited=False)  # after the burst is spent
        await asyncio.gather(*unbound, bound)
        return "flooded"

    await in_handler(flood)
    called = set(app.cookies_logged_out())
    assert called == {f"JSESSIONID=made-up-{i}" for i in range(burst)} | {"JSESSIONID=revoked-but-bound"}


async def test_the_memory_of_logged_out_values_forgets_the_oldest_first(start_side, in_handler, monkeypatch):
    monkeypatch.setattr(app_side, "_LOGGED_OUT_KEPT", 2)
    side, app, _ = await start_side()
    for value in ("a", "b", "c", "a", "c", "b"):
        await in_handler(logging_out(side, limited=False), headers={"Cookie": f"JSESSIONID={value}"})
    # "a" was the oldest when "c" came: forgotten, called again; then "b" was; "c" was still remembered
    assert app.cookies_logged_out() == ["JSESSIONID=a", "JSESSIONID=b", "JSESSIONID=c", "JSESSIONID=a",
                                        "JSESSIONID=b"]


# --- calls to the app --------------------------------------------------------------------------------------------


async def test_a_call_sends_its_body_and_gives_the_apps_status_and_cookies(start_side, in_handler):
    side, app, _ = await start_side()

    async def post(request: web.Request) -> Any:
        return await side.call(request, "POST", "/form", "JSESSIONID=app-session-1", body=b"a=1&b=%20",
                               content_type="application/x-www-form-urlencoded")

    status, cookies = (await in_handler(post)).json
    assert status == 303
    assert [c.split(";")[0] for c in cookies] == ["JSESSIONID=after-form", "REMEMBER=yes"]
    [(method, path, headers, body)] = app.seen
    assert (method, path, body) == ("POST", "/form", b"a=1&b=%20")
    assert headers["Content-Type"] == "application/x-www-form-urlencoded" and headers["Content-Length"] == "9"
    assert headers["Cookie"] == "JSESSIONID=app-session-1"


async def test_a_call_outside_the_routes_prefix_is_not_made(start_side, in_handler):
    side, app, _ = await start_side(path="/hr", rewrite="/")

    async def outside(request: web.Request) -> Any:
        return [await side.call(request, "GET", "/wiki/logout", "JSESSIONID=x"),
                await side.call(request, "GET", "logout", "JSESSIONID=x")]

    assert (await in_handler(outside)).json == [None, None]
    assert app.seen == []


async def test_an_app_that_cannot_be_reached_gives_none_and_a_warning(start_side, in_handler, caplog):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    side, _, _ = await start_side(nowhere)

    async def call(request: web.Request) -> Any:
        return await side.call(request, "GET", "/logout", "JSESSIONID=x")

    with caplog.at_level("WARNING", logger="gateway.sessions"):
        answer = await in_handler(call)
    assert answer.status == 200 and answer.json is None  # the browser's answer does not depend on it
    [record] = [r for r in caplog.records if r.name == "gateway.sessions"]
    assert "route app" in record.getMessage() and "GET /logout failed" in record.getMessage()


# --- the app's cookies expired in an answer ------------------------------------------------------------------------


async def test_each_app_cookie_sent_and_the_binding_are_expired_and_nothing_else(start_side, in_handler):
    side, _, _ = await start_side(app_cookie_path="/app", app_cookie_domain="example.test")
    expired = set_cookies(await in_handler(expiring(side), headers={"Cookie": BROWSER_COOKIES}))
    assert set(expired) == {"JSESSIONID", "gateway_binding"}  # not analytics: not the app's session
    app_cookie = expired["JSESSIONID"]
    assert (app_cookie.value, app_cookie["max-age"]) == ("", "0")
    assert (app_cookie["path"], app_cookie["domain"]) == ("/app", "example.test")  # the route's settings
    assert (expired["gateway_binding"].value, expired["gateway_binding"]["max-age"]) == ("", "0")


async def test_without_a_binding_cookie_only_the_apps_are_expired(start_side, in_handler):
    side, _, _ = await start_side()
    expired = set_cookies(await in_handler(expiring(side), headers={"Cookie": "JSESSIONID=a; analytics=1"}))
    assert set(expired) == {"JSESSIONID"} and expired["JSESSIONID"]["path"] == "/"


async def test_a_cookie_is_expired_with_the_path_and_domain_the_app_set_it_with(start_side, in_handler):
    side, _, _ = await start_side(app_cookie_domain="example.test")

    async def sign_in_then_end(request: web.Request) -> web.Response:
        result = await side.call(request, "GET", "/login", "")
        assert result is not None
        for header in result[1]:
            learned = read_set_cookie(header, time.time())
            assert learned is not None
            side.learn(learned)
        return await expiring(side)(request)

    expired = set_cookies(await in_handler(sign_in_then_end, headers={"Cookie": "JSESSIONID=fresh"}))
    assert (expired["JSESSIONID"]["path"], expired["JSESSIONID"]["domain"]) == ("/deep", "hr.example.test")
