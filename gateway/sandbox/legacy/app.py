"""The legacy SAML app's HTTP face: pages, SP-initiated sign-in, the ACS, logout, a JSON API and a WebSocket.

Rules:
- The session is the app's own (cookie `cookie_name`, HttpOnly, SameSite=Lax, Path=`cookie_path`, no expiry:
  a browser-session cookie as servlet containers set it). A cookie the app does not know, or whose session idled
  out, is simply "not signed in": the app neither re-sets nor clears it.
- Every request with a live session is activity (last_seen moves), WebSocket messages included.
- Redirect targets (`return`, RelayState) are local paths under the external prefix, else the home page: no open
  redirect. Links and redirects are made from `external_url`; routes from `base_path` (see config.py).
- The ACS refuses anything it cannot verify with 403 and a short page (415 for a body that is not a urlencoded
  form, 400 for an unreadable one, 413 for one over `max_post_bytes`); never a traceback, never 5xx.
"""

from __future__ import annotations

import html
import json
import logging
from datetime import timedelta

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from cryptography import x509
from yarl import URL

from ..okta.saml import redirect_binding_request
from .assertion import Expectations, Rejected, verify_response
from .config import LegacyAppConfig
from .state import LegacySession, LegacyState

log = logging.getLogger(__name__)

LEGACY_CONFIG = web.AppKey("legacy_config", LegacyAppConfig)
LEGACY_STATE = web.AppKey("legacy_state", LegacyState)
_EXPECTATIONS = web.AppKey("legacy_expectations", Expectations)
FORM_TYPE = "application/x-www-form-urlencoded"
WS_SESSION_ENDED = 4401  # close code when the session ends while a WebSocket is open


def build_legacy_app(config: LegacyAppConfig) -> web.Application:
    certificate = x509.load_pem_x509_certificate(config.idp_certificate_pem.encode())  # bad config fails here
    app = web.Application(client_max_size=config.max_post_bytes)
    app[LEGACY_CONFIG] = config
    app[LEGACY_STATE] = LegacyState(idle=timedelta(seconds=config.session_idle_seconds))
    app[_EXPECTATIONS] = Expectations(certificate, config.acs_url, config.audience, config.idp_issuer,
                                      timedelta(seconds=config.clock_skew_seconds), config.max_post_bytes)
    route = config.route
    app.router.add_get(route("/"), home)
    app.router.add_get(route(r"/page/{n:\d{1,9}}"), numbered_page)
    app.router.add_get(route("/login"), login)
    app.router.add_post(route(config.acs_path), acs)
    app.router.add_route("GET", route(config.logout_path), logout)
    app.router.add_route("POST", route(config.logout_path), logout)
    app.router.add_get(route("/api/me"), api_me)
    app.router.add_post(route("/api/rotate"), rotate)
    app.router.add_get(route("/ws"), websocket)
    return app


# --- handlers ---------------------------------------------------------------------------------------------

async def home(request: web.Request) -> web.Response:
    config = request.app[LEGACY_CONFIG]
    session = current_session(request)
    if session is not None:
        return page(config.name, f"<p>Signed in to {html.escape(config.name)} as <b>{html.escape(session.login)}"
                                 f"</b>.</p>{_signed_in_links(config)}")
    said = "<p>Signed out.</p>" if request.query.get("logged_out") == "1" else ""
    sign_in = html.escape(str(URL(config.link("/login")).with_query({"return": config.link("/")})))
    return page(config.name, f'{said}<p>Not signed in.</p><p><a href="{sign_in}">Sign in</a></p>')


async def numbered_page(request: web.Request) -> web.Response:
    """A page behind the app's login: without a session, off to sign in and back here (as a servlet app does)."""
    config = request.app[LEGACY_CONFIG]
    n = int(request.match_info["n"])
    session = current_session(request)
    if session is None:
        back = config.link(f"/page/{n}")
        return redirect(302, str(URL(config.link("/login")).with_query({"return": back})))
    next_page = html.escape(config.link(f"/page/{n + 1}"))
    return page(f"{config.name}: page {n}",
                f"<p>Page {n}, signed in to {html.escape(config.name)} as <b>{html.escape(session.login)}</b>.</p>"
                f'<p><a href="{next_page}">Next page</a></p>{_signed_in_links(config)}')


async def login(request: web.Request) -> web.Response:
    """SP-initiated sign-in: an AuthnRequest by the redirect binding, RelayState = where to come back to."""
    config, state = request.app[LEGACY_CONFIG], request.app[LEGACY_STATE]
    now = config.clock()
    saml_request = redirect_binding_request(request_id=state.new_request_id(now), issuer=config.audience,
                                            acs_url=config.acs_url, destination=config.idp_sso_url,
                                            issue_instant=now)
    target = local_target(request.query.get("return"), config)
    location = URL(config.idp_sso_url).extend_query(SAMLRequest=saml_request, RelayState=target)
    return redirect(302, str(location))


async def acs(request: web.Request) -> web.Response:
    config, state = request.app[LEGACY_CONFIG], request.app[LEGACY_STATE]
    if request.content_type != FORM_TYPE:  # the POST binding's only shape; no multipart parser on hostile input
        return refusal("The sign-in form must be application/x-www-form-urlencoded.", status=415)
    try:
        form = await request.post()  # over client_max_size: aiohttp answers 413 itself
    except (ValueError, LookupError, HttpProcessingError):  # undecodable bytes, an unknown charset
        return refusal("The sign-in form could not be read.", status=400)
    encoded = form.get("SAMLResponse")
    if not isinstance(encoded, str):
        return refusal("No SAMLResponse was posted.")
    now = config.clock()
    try:
        verified = verify_response(encoded, request.app[_EXPECTATIONS], now)
    except Rejected as exc:
        log.info("legacy app %s refused a SAMLResponse: %s", config.name, exc)
        return refusal(f"Sign-in refused: {exc}.")
    except Exception:  # hostile input must never become a 500; the reason goes to the log only
        log.warning("legacy app %s could not process a SAMLResponse", config.name, exc_info=True)
        return refusal("Sign-in refused: the SAMLResponse could not be processed.")
    skew = timedelta(seconds=config.clock_skew_seconds)
    if not state.use_assertion(verified.assertion_id, verified.not_on_or_after + skew, now):
        return refusal("Sign-in refused: this Assertion was used before.")
    if verified.in_response_to is not None and not state.take_request(verified.in_response_to, now):
        return refusal("Sign-in refused: the Response answers a request this app did not send.")
    cookie = state.create(verified.login, verified.attributes, now)
    relay_state = form.get("RelayState")
    response = redirect(303, local_target(relay_state if isinstance(relay_state, str) else None, config))
    set_session_cookie(response, config, cookie)
    return response


async def logout(request: web.Request) -> web.Response:
    config, state = request.app[LEGACY_CONFIG], request.app[LEGACY_STATE]
    cookie = request.cookies.get(config.cookie_name)
    if state.lookup(cookie, config.clock(), touch=False) is not None:  # an idled-out session is no logout
        state.destroy(cookie)
        state.logouts += 1
    response = redirect(303, config.link("/") + "?logged_out=1")
    set_session_cookie(response, config, None)
    return response


async def api_me(request: web.Request) -> web.Response:
    session = current_session(request)
    if session is None:
        return web.json_response({"error": "not signed in"}, status=401)
    return web.json_response({"login": session.login, "attributes": session.attributes})


async def rotate(request: web.Request) -> web.Response:
    """Give the session a new cookie value, as an app does after a privilege change (session fixation defence)."""
    config, state = request.app[LEGACY_CONFIG], request.app[LEGACY_STATE]
    session = current_session(request)
    fresh = state.rotate(request.cookies.get(config.cookie_name, "")) if session is not None else None
    if fresh is None:
        return web.json_response({"error": "not signed in"}, status=401)
    response = web.json_response({"login": session.login if session else "", "rotated": True})
    set_session_cookie(response, config, fresh)
    return response


async def websocket(request: web.Request) -> web.StreamResponse:
    """Greets the signed-in user, then echoes text; closes with 4401 once the session has ended."""
    config, state = request.app[LEGACY_CONFIG], request.app[LEGACY_STATE]
    cookie = request.cookies.get(config.cookie_name)
    session = state.lookup(cookie, config.clock())
    if session is None:
        return web.json_response({"error": "not signed in"}, status=401)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(json.dumps({"hello": session.login}))
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            continue
        if state.lookup(cookie, config.clock()) is None:
            await ws.close(code=WS_SESSION_ENDED, message=b"session ended")
            break
        await ws.send_str(message.data)
    return ws


# --- helpers ----------------------------------------------------------------------------------------------

def set_session_cookie(response: web.StreamResponse, config: LegacyAppConfig, value: str | None) -> None:
    """The app's session cookie (HttpOnly, SameSite=Lax, its Path), or its expiry when value is None."""
    if value is None:
        response.del_cookie(config.cookie_name, path=config.cookie_path, httponly=True, samesite="Lax",
                            secure=config.secure_cookie)
    else:
        response.set_cookie(config.cookie_name, value, path=config.cookie_path, httponly=True, samesite="Lax",
                            secure=config.secure_cookie)


def current_session(request: web.Request) -> LegacySession | None:
    """The live session of the request's cookie; looking counts as activity."""
    config = request.app[LEGACY_CONFIG]
    return request.app[LEGACY_STATE].lookup(request.cookies.get(config.cookie_name), config.clock())


def local_target(value: str | None, config: LegacyAppConfig) -> str:
    """`value` when it is a path of this app as the browser sees it; otherwise the home page."""
    home = config.link("/")
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return home
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return home
    prefix = config.external_prefix
    if prefix and value != prefix and not value.startswith(prefix + "/"):
        return home
    return value


def _signed_in_links(config: LegacyAppConfig) -> str:
    links = [(config.link("/"), "Home"), (config.link("/page/1"), "Page 1"), (config.link("/api/me"), "Who am I"),
             (config.link(config.logout_path), "Sign out")]
    return "<ul>" + "".join(f'<li><a href="{html.escape(href)}">{text}</a></li>' for href, text in links) + "</ul>"


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


def refusal(message: str, *, status: int = 403) -> web.Response:
    return page("Sign-in failed", f"<p>{html.escape(message)}</p>", status=status)


def redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location, "Cache-Control": "no-store"})
