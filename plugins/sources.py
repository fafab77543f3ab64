"""Built-in sources of the Okta session id: the SAML sign-in, Okta's own cookie, and a trusted header.

Only the SAML sign-in binds (once the app has accepted the assertion). The cookie's or the header's id is only
compared with the bound session (a different one ends the app session): it never binds, and is never looked up.
"""

from __future__ import annotations

import ipaddress

from gateway.plugin import RequestInfo, SignIn, SourceOptions
from gateway.sessions.saml import login_from_acs_form


class SamlSignIn:
    """Reads the NameID and the session-id attribute from the SAML Response posted to the app's ACS."""

    def __init__(self, options: SourceOptions) -> None:
        self._attribute = options.saml_attribute

    def read_sign_in(self, body: bytes, content_type: str) -> SignIn | None:
        return login_from_acs_form(body, content_type, self._attribute)


class OktaCookie:
    """Okta's own session cookie, for a gateway on Okta's host: Classic Engine's `sid` is the session id."""

    def __init__(self, options: SourceOptions) -> None:
        self._name = options.okta_cookie

    def identify(self, request: RequestInfo) -> str | None:
        return request.cookies.get(self._name) or None


class TrustedHeader:
    """A session id set by a component in front of the gateway, believed only from its configured addresses."""

    def __init__(self, options: SourceOptions) -> None:
        self._header = options.session_header
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in options.session_header_from)

    def identify(self, request: RequestInfo) -> str | None:
        value = request.headers.get(self._header)
        if not value or not self._trusted or request.peer is None:
            return None
        try:
            peer = ipaddress.ip_address(request.peer)
        except ValueError:
            return None
        return (value.strip() or None) if any(peer in network for network in self._trusted) else None
