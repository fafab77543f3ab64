"""What the API and the browser pages share: the org's app key, Okta's error bodies, and the session cookie."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from aiohttp import web
from yarl import URL

from .org import URL_SAFE, OktaOrg, Session, random_id

ORG = web.AppKey("okta_org", OktaOrg)

ERROR_SUMMARIES = {
    "E0000003": "The request body was not well-formed.",
    "E0000004": "Authentication failed",
    "E0000005": "Invalid session",
    "E0000006": "You do not have permission to perform the requested action",
    "E0000011": "Invalid token provided",
    "E0000047": "API call exceeded rate limit due to too many requests.",
}


def error_body(code: str, summary: str | None = None) -> dict[str, Any]:
    """Okta's error body: errorLink repeats the code, errorId is new each time."""
    return {
        "errorCode": code,
        "errorSummary": summary or ERROR_SUMMARIES.get(code, "Internal error"),
        "errorLink": code,
        "errorId": random_id("oae", 22, URL_SAFE),
        "errorCauses": [],
    }


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


def okta_error(status: int, code: str, summary: str | None = None) -> web.Response:
    return json_answer(status, error_body(code, summary))


def not_found(resource_id: str, kind: str = "Session") -> web.Response:
    return okta_error(404, "E0000007", f"Not found: Resource not found: {resource_id} ({kind})")


def browser_session(request: web.Request, *, activity: bool = True) -> Session | None:
    """The live session of the browser's cookie, if any; the request counts as the user's activity."""
    org = request.app[ORG]
    session = org.session_for_cookie(request.cookies.get(org.cookie_name))
    if session is not None and activity:
        org.touch(session)
    return session


def set_session_cookie(response: web.StreamResponse, org: OktaOrg, session: Session) -> None:
    """Host-only (no Domain), Path=/, HttpOnly, SameSite=None; Secure on https and on loopback (see `_secure`);
    persistent only with KMSI."""
    max_age = None
    if session.persistent:
        max_age = max(int((session.expires_at - org.clock.now()).total_seconds()), 0)
    response.set_cookie(org.cookie_name, session.cookie_value, path="/", httponly=True, samesite="None",
                        secure=_secure(org), max_age=max_age)


def clear_session_cookie(response: web.StreamResponse, org: OktaOrg) -> None:
    response.del_cookie(org.cookie_name, path="/", httponly=True, samesite="None", secure=_secure(org))


def _secure(org: OktaOrg) -> bool:
    """Secure when the issuer is https (as a real Okta org always is) or a loopback address over http: browsers
    drop a SameSite=None cookie that is not Secure, and take Secure cookies from loopback origins (127.0.0.0/8,
    [::1], localhost), which they count as secure contexts. A sandbox on another http host gets no Secure, and a
    real browser will not keep its cookie: serve it on loopback or behind https."""
    url = URL(org.issuer)
    return url.scheme == "https" or is_loopback(url.host or "")


def is_loopback(host: str) -> bool:
    """A host that browsers treat as a secure context over plain http."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
