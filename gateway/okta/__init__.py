"""The Okta Sessions API: typed values (model), id checks (ids) and the HTTP client (client)."""
