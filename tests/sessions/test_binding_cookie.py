"""The binding's cookie (gateway/sessions/binding_cookie.py): written on a real answer with the route's attributes,
read back from a real request, opened for its own route only, expired with the attributes it was set with, and
aiohttp-session's storage interface (get_session, new_session, invalidate) over loopback HTTP."""

from __future__ import annotations

from dataclasses import asdict
from http.cookies import Morsel, SimpleCookie

import pytest
from aiohttp import web
from aiohttp_session import get_session, new_session, session_middleware
from cryptography.fernet import Fernet

from gateway.sessions.binding import Binding, BindingCodec
from gateway.sessions.binding_cookie import BindingStorage
from gateway.settings import CookieSettings

KEY, OLD_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
COOKIE = CookieSettings(name="gw_hr", path="/hr", samesite="Strict")
APP_COOKIE = ("JSESSIONID", "app-session-1")
T0 = 1_700_000_000.0


def binding(codec: BindingCodec, app_cookie: tuple[str, str] = APP_COOKIE) -> Binding:
    return Binding("102abcDEFghiJKLmnoPQRst", "00u0abcdefGHIJKLMNOP", "alice@example.com",
                   codec.fingerprint(*app_cookie), bound_at=T0, last_activity=T0 + 30)


def set_cookie(headers, name: str) -> tuple[Morsel[str], str]:
    """The one Set-Cookie of this name in an answer, parsed, and as sent."""
    found = [h for h in headers.getall("Set-Cookie", []) if h.startswith(name + "=")]
    assert len(found) == 1, headers.getall("Set-Cookie", [])
    jar: SimpleCookie = SimpleCookie()
    jar.load(found[0])
    return jar[name], found[0]


def written(storage: BindingStorage, value: Binding | None):
    async def write(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        storage.write(request, response, value)
        return response

    return write


def opened_by(storage: BindingStorage):
    """A handler that answers what the storage opens of the request's binding cookie."""

    async def read(request: web.Request):
        opened = storage.open(request.cookies.get(storage.cookie.name))
        return None if opened is None else {"binding": asdict(opened.binding), "route": opened.route,
                                            "stale_key": opened.stale_key}

    return read


async def test_a_binding_written_on_an_answer_comes_back_on_the_next_request_and_opens(in_handler):
    codec = BindingCodec([KEY])
    storage, bound = BindingStorage(codec, COOKIE, "hr"), binding(codec)
    answer = await in_handler(written(storage, bound))
    morsel, _ = set_cookie(answer.headers, "gw_hr")
    assert morsel.value and bound.login not in morsel.value  # sealed, not readable
    back = await in_handler(opened_by(storage), headers={"Cookie": f"gw_hr={morsel.value}"})
    assert back.json == {"binding": asdict(bound), "route": "hr", "stale_key": False}


async def test_the_cookie_has_the_routes_attributes_and_secure_follows_the_request(in_handler):
    storage = BindingStorage(BindingCodec([KEY]), COOKIE, "hr")
    morsel, raw = set_cookie((await in_handler(written(storage, binding(storage.codec)))).headers, "gw_hr")
    assert (morsel["path"], morsel["samesite"], morsel["httponly"]) == ("/hr", "Strict", True)
    assert morsel["domain"] == "" and not morsel["secure"]  # host-only; the request came by http
    assert morsel["max-age"] == "" and morsel["expires"] == ""  # it lives as long as the browser session
    assert "Domain" not in raw


async def test_a_cookie_set_secure_and_for_a_domain_says_so_over_http_too(in_handler):
    cookie = CookieSettings(name="gw", path="/", domain="example.test", secure=True, httponly=False,
                            samesite="None")
    storage = BindingStorage(BindingCodec([KEY]), cookie, "hr")
    morsel, _ = set_cookie((await in_handler(written(storage, binding(storage.codec)))).headers, "gw")
    assert morsel["domain"] == "example.test" and morsel["secure"] and morsel["samesite"] == "None"
    assert not morsel["httponly"]


async def test_no_binding_expires_the_cookie_where_it_was_set(in_handler):
    cookie = CookieSettings(name="gw_hr", path="/hr", domain="example.test", samesite="Strict")
    answer = await in_handler(written(BindingStorage(BindingCodec([KEY]), cookie, "hr"), None))
    morsel, _ = set_cookie(answer.headers, "gw_hr")
    assert morsel.value == "" and morsel["max-age"] == "0" and "1970" in morsel["expires"]
    assert (morsel["path"], morsel["domain"], morsel["samesite"], morsel["httponly"]) == (
        "/hr", "example.test", "Strict", True)


async def test_a_binding_sealed_for_another_route_does_not_open_here(in_handler):
    codec = BindingCodec([KEY])  # one codec for the gateway, as server.py makes it
    hr, wiki = BindingStorage(codec, COOKIE, "hr"), BindingStorage(codec, COOKIE, "wiki")
    morsel, _ = set_cookie((await in_handler(written(hr, binding(codec)))).headers, "gw_hr")
    assert hr.open(morsel.value) is not None
    assert wiki.open(morsel.value) is None
    back = await in_handler(opened_by(wiki), headers={"Cookie": f"gw_hr={morsel.value}"})
    assert back.status == 200 and back.json is None


@pytest.mark.parametrize("value", [None, "", "not-a-binding", "gAAAAA" + "x" * 80])
def test_nothing_that_is_not_a_binding_opens(value):
    assert BindingStorage(BindingCodec([KEY]), COOKIE, "hr").open(value) is None


def test_a_binding_opens_for_the_app_cookie_it_was_made_with_only():
    codec = BindingCodec([KEY])
    storage = BindingStorage(codec, COOKIE, "hr")
    sealed = codec.seal(binding(codec), "hr")
    opened = storage.open_for(sealed, APP_COOKIE)
    assert opened is not None and opened.binding == binding(codec) and opened.route == "hr"
    assert storage.open_for(sealed, ("JSESSIONID", "another-app-session")) is None
    assert storage.open_for(sealed, ("PHPSESSID", APP_COOKIE[1])) is None
    assert storage.open_for(sealed, None) is None
    assert storage.open_for(None, APP_COOKIE) is None
    assert BindingStorage(codec, COOKIE, "wiki").open_for(sealed, APP_COOKIE) is None


async def test_a_cookie_written_before_a_key_rotation_opens_after_it_and_says_its_key_is_stale(in_handler):
    before = BindingStorage(BindingCodec([OLD_KEY]), COOKIE, "hr")
    after = BindingStorage(BindingCodec([KEY, OLD_KEY]), COOKIE, "hr")
    morsel, _ = set_cookie((await in_handler(written(before, binding(before.codec)))).headers, "gw_hr")
    back = await in_handler(opened_by(after), headers={"Cookie": f"gw_hr={morsel.value}"})
    assert back.json["route"] == "hr" and back.json["stale_key"] is True
    assert BindingStorage(BindingCodec([KEY]), COOKIE, "hr").open(morsel.value) is None  # the old key dropped


# --- aiohttp-session's interface ----------------------------------------------------------------------------------


# aiohttp-session keeps its storage and session under plain string keys of the request
third_party_keys = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
async def session_app(start_upstream):
    """An app that installs the storage with aiohttp-session's middleware: GET /read answers get_session(),
    POST /bind makes a new session of the JSON it is sent, POST /forget invalidates the session."""

    async def start(storage: BindingStorage) -> str:
        async def read(request: web.Request) -> web.Response:
            session = await get_session(request)
            return web.json_response({"new": session.new, "empty": session.empty, "data": dict(session)})

        async def bind(request: web.Request) -> web.Response:
            session = await new_session(request)
            session.update(await request.json())
            return web.Response(text="bound")

        async def forget(request: web.Request) -> web.Response:
            (await get_session(request)).invalidate()
            return web.Response(text="forgotten")

        app = web.Application(middlewares=[session_middleware(storage)])
        app.router.add_get("/read", read)
        app.router.add_post("/bind", bind)
        app.router.add_post("/forget", forget)
        server = await start_upstream(app)
        return f"http://{server.host}:{server.port}"

    return start


@third_party_keys
async def test_get_session_reads_the_binding_from_the_cookie(session_app, http):
    codec = BindingCodec([KEY])
    storage, bound = BindingStorage(codec, COOKIE, "hr"), binding(codec)
    origin = await session_app(storage)
    async with http.get(origin + "/read") as r:
        assert await r.json() == {"new": True, "empty": True, "data": {}}
    async with http.get(origin + "/read", headers={"Cookie": f"gw_hr={codec.seal(bound, 'hr')}"}) as r:
        assert await r.json() == {"new": False, "empty": False, "data": asdict(bound)}
    async with http.get(origin + "/read", headers={"Cookie": f"gw_hr={codec.seal(bound, 'wiki')}"}) as r:
        assert (await r.json())["new"] is True  # sealed for another route: no session here


@third_party_keys
async def test_a_new_session_is_saved_as_a_sealed_binding_and_invalidate_expires_it(session_app, http):
    codec = BindingCodec([KEY])
    storage = BindingStorage(codec, COOKIE, "hr")
    origin = await session_app(storage)
    fields = {"session_id": "102abcDEFghiJKLmnoPQRst", "user_id": "00u0abcdefGHIJKLMNOP",
              "login": "bob@example.com", "app_fingerprint": "fp", "bound_at": T0, "last_activity": T0 + 5}
    async with http.post(origin + "/bind", json=fields) as r:
        morsel, _ = set_cookie(r.headers, "gw_hr")
    opened = storage.open(morsel.value)
    assert opened is not None and asdict(opened.binding) == fields and morsel["path"] == "/hr"

    async with http.post(origin + "/forget", headers={"Cookie": f"gw_hr={morsel.value}"}) as r:
        expired, _ = set_cookie(r.headers, "gw_hr")
    assert expired.value == "" and expired["max-age"] == "0" and expired["path"] == "/hr"
