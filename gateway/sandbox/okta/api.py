"""The org's /api/v1: Authentication, Sessions and a little of Users, as seed 002 and okta-reference.md describe.

Every /api/v1 request goes through `api_middleware`: it is recorded in `org.api_calls`, then the org's Faults
apply (latency, hang, rate limit, injected failure), and every answer carries X-Rate-Limit-Limit, -Remaining and
-Reset. Choices where Okta's behaviour is not pinned down:
- a call with no API token answers 401 E0000011 (`org.missing_token_403 = True` makes it 403 E0000005, as has
  been seen in the wild); a wrong or non-SSWS token answers 401 E0000011;
- /api/v1/sessions/me reads only the browser's cookie: an API token there is ignored, so without the cookie the
  answer is 404 E0000007 `me (Session)`; it is CORS-enabled for trusted origins, and so is /api/v1/authn;
- POST /api/v1/sessions needs no token and ignores one;
- an injected failure answers Okta's E0000009 body with the chosen status; an unknown path answers aiohttp's 404.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .common import ORG, browser_session, clear_session_cookie, json_answer, not_found, okta_error
from .org import ApiCall, OktaOrg, Session, User
from .timefmt import iso

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HANG_POLL = 0.01
CORS_PATHS = ("/api/v1/sessions/me", "/api/v1/authn")
EXPOSED = "X-Rate-Limit-Limit, X-Rate-Limit-Remaining, X-Rate-Limit-Reset"


def add_api_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/api/v1/authn", authn)
    router.add_route("OPTIONS", "/api/v1/authn", preflight)
    router.add_post("/api/v1/sessions", create_session)
    router.add_get("/api/v1/sessions/me", get_me)
    router.add_delete("/api/v1/sessions/me", delete_me)
    router.add_route("OPTIONS", "/api/v1/sessions/me", preflight)
    router.add_post("/api/v1/sessions/me/lifecycle/refresh", refresh_me)
    router.add_route("OPTIONS", "/api/v1/sessions/me/lifecycle/refresh", preflight)
    router.add_get("/api/v1/sessions/{id}", get_session)
    router.add_delete("/api/v1/sessions/{id}", delete_session)
    router.add_put("/api/v1/sessions/{id}", refresh_session)  # "Extend Session", deprecated: same as refresh
    router.add_post("/api/v1/sessions/{id}/lifecycle/refresh", refresh_session)
    router.add_get("/api/v1/users/{id}", get_user)
    router.add_delete("/api/v1/users/{id}/sessions", clear_user_sessions)
    router.add_post("/api/v1/users/{id}/lifecycle/suspend", suspend_user)
    router.add_post("/api/v1/users/{id}/lifecycle/deactivate", deactivate_user)


# --- the middleware: record, faults, rate limits, CORS ----------------------------------------------------------

@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/v1/"):
        return await handler(request)
    org = request.app[ORG]
    call = ApiCall(request.method, request.path)
    org.api_calls.append(call)
    response = await _answer(org, request, handler)
    call.status = response.status
    if request.path.startswith(CORS_PATHS):
        _cors(org, request, response)
    return response


async def _answer(org: OktaOrg, request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = org.faults
    if faults.latency > 0:
        await asyncio.sleep(faults.latency)
    while faults.hang:  # noqa: ASYNC110 - Faults is plain state that tests set, no Event to wait on
        await asyncio.sleep(HANG_POLL)
    bucket = request.path.split("/")[3] or "api"
    decision = org.rate_limits.take(bucket, org.clock.timestamp(), force_limited=faults.rate_limited)
    response: web.StreamResponse
    if not decision.allowed:
        response = okta_error(429, "E0000047")
    elif (status := faults.take_failure()) is not None:
        response = okta_error(status, "E0000009", "Internal Server Error")
    else:
        try:
            response = await handler(request)
        except web.HTTPMethodNotAllowed:
            response = okta_error(405, "E0000022", "The endpoint does not support the provided HTTP method")
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, text=exc.text, content_type="text/plain")
    response.headers.update(decision.headers())
    return response


def _cors(org: OktaOrg, request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin is None or not org.is_cors_origin(origin):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Access-Control-Expose-Headers"] = EXPOSED
    response.headers["Vary"] = "Origin"


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: allowed for trusted origins only (no CORS headers otherwise, so the browser refuses)."""
    org = request.app[ORG]
    if not org.is_cors_origin(request.headers.get("Origin")):
        return okta_error(403, "E0000006")
    asked = request.headers.get("Access-Control-Request-Headers", "Accept, Content-Type")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": asked,
        "Access-Control-Max-Age": "600",
    })


# --- Authentication API ----------------------------------------------------------------------------------

async def authn(request: web.Request) -> web.Response:
    """Primary authentication: username and password → a one-time, short-lived sessionToken."""
    org = request.app[ORG]
    body = await _json_body(request)
    if body is None:
        return okta_error(400, "E0000003")
    username, password = body.get("username"), body.get("password")
    user = org.authenticate(username, password) if isinstance(username, str) and isinstance(password, str) else None
    if user is None:
        return okta_error(401, "E0000004")
    token, expires = org.issue_session_token(user)
    return json_answer(200, {
        "expiresAt": iso(expires),
        "status": "SUCCESS",
        "sessionToken": token,
        "_embedded": {"user": {
            "id": user.id,
            "passwordChanged": iso(user.created),
            "profile": {"login": user.login, "firstName": user.first_name, "lastName": user.last_name,
                        "locale": "en", "timeZone": "America/Los_Angeles"},
        }},
    })


# --- Sessions API ----------------------------------------------------------------------------------------

async def create_session(request: web.Request) -> web.Response:
    """Redeem a sessionToken for a session, anonymously; no cookie is set (seed 002)."""
    org = request.app[ORG]
    body = await _json_body(request)
    if body is None:
        return okta_error(400, "E0000003")
    token = body.get("sessionToken")
    user = org.redeem_session_token(token) if isinstance(token, str) else None
    if user is None:
        return okta_error(401, "E0000004")
    return json_answer(200, session_json(org, org.start_session(user)))


async def get_session(request: web.Request) -> web.Response:
    found = _admin_session(request)  # looking is not activity
    if isinstance(found, web.Response):
        return found
    org, session = found
    return json_answer(200, session_json(org, session))


async def delete_session(request: web.Request) -> web.Response:
    found = _admin_session(request)
    if isinstance(found, web.Response):
        return found
    org, session = found
    org.end_session(session)
    return web.Response(status=204)


async def refresh_session(request: web.Request) -> web.Response:
    found = _admin_session(request)
    if isinstance(found, web.Response):
        return found
    org, session = found
    org.refresh(session)
    return _refreshed(request, org, session, me=False)


def _admin_session(request: web.Request) -> tuple[OktaOrg, Session] | web.Response:
    """The live session the path names, for a call with the API token; else the refusal or 404 to answer."""
    org = request.app[ORG]
    if (denied := _admin_denied(org, request)) is not None:
        return denied
    session = org.session(request.match_info["id"])
    if session is None:
        return not_found(request.match_info["id"])
    return org, session


async def get_me(request: web.Request) -> web.Response:
    session = browser_session(request)
    if session is None:
        return not_found("me")
    return json_answer(200, session_json(request.app[ORG], session, me=True))


async def delete_me(request: web.Request) -> web.Response:
    org = request.app[ORG]
    session = browser_session(request, activity=False)
    if session is None:
        return not_found("me")
    org.sign_out(session)
    response = web.Response(status=204)
    clear_session_cookie(response, org)
    return response


async def refresh_me(request: web.Request) -> web.Response:
    session = browser_session(request)
    if session is None:
        return not_found("me")
    return _refreshed(request, request.app[ORG], session, me=True)


def _refreshed(request: web.Request, org: OktaOrg, session: Session, *, me: bool) -> web.Response:
    if _prefers_minimal(request):
        return web.Response(status=204, headers={"Preference-Applied": "return=minimal"})
    return json_answer(200, session_json(org, session, me=me))


def session_json(org: OktaOrg, session: Session, *, me: bool = False) -> dict[str, Any]:
    """The Session object (seed 002, okta-reference.md). /me answers link to /me, as Okta's do."""
    api = f"{org.issuer}/api/v1"
    key = "me" if me else session.id
    user_href = f"{api}/users/me" if me else f"{api}/users/{session.user_id}"
    return {
        "id": session.id,
        "login": session.login,
        "userId": session.user_id,
        "status": session.status,
        "createdAt": iso(session.created_at),
        "expiresAt": iso(session.expires_at),
        "lastPasswordVerification": _iso_or_none(session.last_password_verification),
        "lastFactorVerification": _iso_or_none(session.last_factor_verification),
        "amr": list(session.amr),
        "idp": {"id": org.org_id, "type": "OKTA"},
        "_links": {
            "self": {"href": f"{api}/sessions/{key}", "hints": {"allow": ["GET", "DELETE"]}},
            "refresh": {"href": f"{api}/sessions/{key}/lifecycle/refresh", "hints": {"allow": ["POST"]}},
            "user": {"name": session.user.display_name, "href": user_href, "hints": {"allow": ["GET"]}},
        },
    }


# --- Users API (the part the gateway and the tests need) -------------------------------------------------

async def get_user(request: web.Request) -> web.Response:
    org = request.app[ORG]
    if (denied := _admin_denied(org, request)) is not None:
        return denied
    user = org.user(request.match_info["id"])  # an id or a login, as Okta takes either
    if user is None:
        return not_found(request.match_info["id"], "User")
    return json_answer(200, user_json(org, user))


async def clear_user_sessions(request: web.Request) -> web.Response:
    """End every session of the user; `oauthTokens` and `forgetDevices` are accepted (nothing else to revoke)."""
    org = request.app[ORG]
    if (denied := _admin_denied(org, request)) is not None:
        return denied
    user_id = request.match_info["id"]
    if user_id not in org.users:
        return not_found(user_id, "User")
    org.clear_user_sessions(user_id)
    return web.Response(status=204)


async def suspend_user(request: web.Request) -> web.Response:
    return await _lifecycle(request, OktaOrg.suspend_user)


async def deactivate_user(request: web.Request) -> web.Response:
    return await _lifecycle(request, OktaOrg.deactivate_user)


async def _lifecycle(request: web.Request, change: Callable[[OktaOrg, str], None]) -> web.Response:
    org = request.app[ORG]
    if (denied := _admin_denied(org, request)) is not None:
        return denied
    user_id = request.match_info["id"]
    if user_id not in org.users:
        return not_found(user_id, "User")
    change(org, user_id)
    return json_answer(200, {})


def user_json(org: OktaOrg, user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "status": user.status,
        "created": iso(user.created),
        "profile": {"login": user.login, "email": user.login, "firstName": user.first_name,
                    "lastName": user.last_name},
        "_links": {"self": {"href": f"{org.issuer}/api/v1/users/{user.id}"}},
    }


# --- helpers ---------------------------------------------------------------------------------------------

def _admin_denied(org: OktaOrg, request: web.Request) -> web.Response | None:
    """None when the request carries the org's API token (`Authorization: SSWS <token>`), else the refusal."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return okta_error(403, "E0000005") if org.missing_token_403 else okta_error(401, "E0000011")
    scheme, _, token = header.partition(" ")
    if scheme != "SSWS" or not hmac.compare_digest(token.strip().encode(), org.api_token.encode()):
        return okta_error(401, "E0000011")
    return None


def _prefers_minimal(request: web.Request) -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().lower() == "return=minimal" for p in prefer.split(","))


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _iso_or_none(moment: Any) -> str | None:
    return iso(moment) if moment is not None else None
