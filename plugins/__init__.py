"""Built-in plugins: sources of the Okta session id and app profiles (gateway/plugin.py says how they are found)."""

from __future__ import annotations

from gateway.plugin import SourceFactory

from .profiles import PROFILES
from .sources import OktaCookie, SamlSignIn, TrustedHeader

SOURCES: dict[str, SourceFactory] = {"saml": SamlSignIn, "cookie": OktaCookie, "header": TrustedHeader}

__all__ = ["PROFILES", "SOURCES"]
