"""Session Gateway: a reverse proxy that ties legacy SAML app sessions to their Okta session."""

__version__ = "0.1.0"
