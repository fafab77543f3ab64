"""Which strings may be put into an Okta API URL.

A session id comes from a cookie, a header or a SAML assertion: from outside. It reaches a URL path only after a
strict whole-string match, so that nothing (`../users/me`, `%2e%2e`, a 10 KB string, non-ASCII) can steer the
gateway's API token to another API path. Anything else counts as no session.
"""

from __future__ import annotations

import re

# Classic Engine ids start with 10x ("102…"; the Sessions API doc's example is "101W_juydrDRByB7fUdRyE2JQ"),
# Identity Engine ids with "idx" (System Log externalSessionId). Okta's are 25 characters; a little slack on length.
_SESSION_ID = re.compile(r"(?:10[0-9]|idx)[A-Za-z0-9_-]{20,40}")
_USER_ID = re.compile(r"00u[A-Za-z0-9]{17}")
_LOGIN = re.compile(r"[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 43 and _SESSION_ID.fullmatch(value) is not None


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 20 and _USER_ID.fullmatch(value) is not None


def is_login(value: object) -> bool:
    """An email-shaped Okta login, safe in a URL path (GET /api/v1/users/{login})."""
    return isinstance(value, str) and len(value) <= 254 and _LOGIN.fullmatch(value) is not None
