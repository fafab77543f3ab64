"""A legacy SAML web app (think a servlet app with JSESSIONID) that knows nothing of Okta sessions.

It trusts an IdP (the Okta sandbox in tests and the demo), keeps its own long server-side sessions, and so shows
the problem the gateway solves: its session outlives Okta's. config.py says how it is addressed (its external URL
may be the gateway's), assertion.py how a SAMLResponse is verified, state.py what it remembers, app.py its routes.
"""

from .app import LEGACY_CONFIG, LEGACY_STATE, build_legacy_app
from .config import LegacyAppConfig
from .state import LegacySession, LegacyState

__all__ = ["LEGACY_CONFIG", "LEGACY_STATE", "LegacyAppConfig", "LegacySession", "LegacyState", "build_legacy_app"]
