"""The org's browser pages: sign-in, sign-out, sessionCookieRedirect, the SAML IdP endpoints and a dashboard.

Every page that finds a live session cookie counts as the user's activity. Redirect targets (fromURI,
redirectUrl) must be the org itself or a trusted origin with redirect enabled; anything else is not followed.
- GET/POST /login/login.htm?fromURI=U: the sign-in form (username, password, "Keep me signed in"); success sets the
  cookie and redirects to U (or the dashboard); a browser that already has a session goes to U at once.
- GET /login/signout?fromURI=U: ends the browser's session, clears the cookie, redirects to U when it is trusted,
  else to the sign-in page.
- GET /login/sessionCookieRedirect?token=T&redirectUrl=U: redeems T and sets the cookie, unless the browser already
  has a live session: then T is ignored (not used up) and the existing session is kept (seed 004).
- GET /app/{app}/sso/saml[?SAMLRequest=…&RelayState=…][&sessionToken=T]: with a session, the auto-submitting form
  that POSTs the signed SAMLResponse to the app's ACS; without, the sign-in page and back (a sessionToken works
  as at sessionCookieRedirect). AuthnRequests come by the redirect binding only.
"""

from __future__ import annotations

import base64
import html

from aiohttp import web
from yarl import URL

from . import saml
from .common import ORG, browser_session, clear_session_cookie, set_session_cookie
from .org import OktaOrg, Session

LOGIN_PATH = "/login/login.htm"


def add_page_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", dashboard)
    router.add_get(LOGIN_PATH, login_page)
    router.add_post(LOGIN_PATH, login_submit)
    router.add_get("/login/signout", signout)
    router.add_get("/login/sessionCookieRedirect", session_cookie_redirect)
    router.add_get("/app/{app}/sso/saml", sso)
    router.add_get("/app/{app}/sso/saml/metadata", saml_metadata)


async def dashboard(request: web.Request) -> web.Response:
    session = browser_session(request)
    if session is None:
        return redirect(LOGIN_PATH)
    who = html.escape(session.user.display_name)
    return page("Okta sandbox", f"<p>Signed in as <b>{who}</b> ({html.escape(session.login)}).</p>"
                                '<p><a href="/login/signout">Sign out</a></p>')


async def login_page(request: web.Request) -> web.Response:
    org = request.app[ORG]
    from_uri = request.query.get("fromURI", "")
    if browser_session(request) is not None:
        return redirect(org.safe_redirect(from_uri) or "/")
    return login_form(from_uri)


async def login_submit(request: web.Request) -> web.Response:
    org = request.app[ORG]
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    from_uri = str(form.get("fromURI", ""))
    user = org.authenticate(username, password)
    if user is None:
        return login_form(from_uri, error="Unable to sign in", status=401)
    session = org.start_session(user, persistent=form.get("remember") == "on")
    response = redirect(org.safe_redirect(from_uri) or "/")
    set_session_cookie(response, org, session)
    return response


async def signout(request: web.Request) -> web.Response:
    org = request.app[ORG]
    session = browser_session(request, activity=False)
    if session is not None:
        org.sign_out(session)
    target = org.safe_redirect(request.query.get("fromURI"))
    response = redirect(target or LOGIN_PATH)
    clear_session_cookie(response, org)
    return response


async def session_cookie_redirect(request: web.Request) -> web.Response:
    org = request.app[ORG]
    target = org.safe_redirect(request.query.get("redirectUrl"))
    if target is None:
        return page("Error", "<p>The redirectUrl is not a trusted origin.</p>", status=403)
    if browser_session(request) is not None:
        return redirect(target)  # the browser's session wins; the token is not even looked at (seed 004)
    return _with_token(org, request.query.get("token", ""), target)


async def sso(request: web.Request) -> web.Response:
    org = request.app[ORG]
    app = org.apps.get(request.match_info["app"])
    if app is None:
        return page("Not found", "<p>No such app.</p>", status=404)
    in_response_to: str | None = None
    if "SAMLRequest" in request.query:
        try:
            authn_request = saml.parse_authn_request(request.query["SAMLRequest"])
        except saml.SamlError as exc:
            return page("Error", f"<p>{html.escape(str(exc))}</p>", status=400)
        if authn_request.acs_url and authn_request.acs_url != app.acs_url:
            return page("Error", "<p>The AssertionConsumerServiceURL is not the app's.</p>", status=400)
        in_response_to = authn_request.id
    session = browser_session(request)
    if session is None:
        back = str(request.rel_url.without_query_params("sessionToken"))
        return _with_token(org, request.query.get("sessionToken", ""), back)
    relay_state = request.query.get("RelayState", app.default_relay_state)
    org.record_sso(app, session)
    return page_response(saml.autopost_page(app.acs_url, _saml_fields(org, app, session, in_response_to,
                                                                       relay_state)))


async def saml_metadata(request: web.Request) -> web.Response:
    org = request.app[ORG]
    app = org.apps.get(request.match_info["app"])
    if app is None:
        return page("Not found", "<p>No such app.</p>", status=404)
    body = saml.metadata(app, org.signing_key, f"{org.issuer}/app/{app.name}/sso/saml")
    return web.Response(body=body, content_type="application/xml")


def _saml_fields(org: OktaOrg, app: saml.SamlApp, session: Session, in_response_to: str | None,
                 relay_state: str) -> dict[str, str]:
    xml = saml.build_response(
        app, org.signing_key, name_id=session.login, attributes=org.attribute_values(app, session),
        now=org.clock.now(), authn_instant=session.created_at, session_index=saml.new_xml_id(),
        in_response_to=in_response_to,
    )
    fields = {"SAMLResponse": base64.b64encode(xml).decode()}
    if relay_state:
        fields["RelayState"] = relay_state
    return fields


def _with_token(org: OktaOrg, token: str, target: str) -> web.Response:
    """Redeem a sessionToken into a browser session and go to target; a bad token means signing in by hand."""
    user = org.redeem_session_token(token) if token else None
    if user is None:
        return redirect(str(URL(LOGIN_PATH).with_query(fromURI=target)))
    response = redirect(target)
    set_session_cookie(response, org, org.start_session(user))
    return response


# --- HTML -------------------------------------------------------------------------------------------------

def login_form(from_uri: str, *, error: str = "", status: int = 200) -> web.Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return page("Sign in", f"""{message}
<form method="POST" action="{LOGIN_PATH}">
<input type="hidden" name="fromURI" value="{html.escape(from_uri)}"/>
<p><label>Username <input name="username" autocomplete="username" autofocus/></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"/></label></p>
<p><label><input name="remember" type="checkbox"/> Keep me signed in</label></p>
<p><button type="submit">Sign in</button></p>
</form>""", status=status)


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    return page_response(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                         f"</head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n", status=status)


def page_response(text: str, *, status: int = 200) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
