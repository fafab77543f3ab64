"""Built-in plugins: sources of the Okta session id, app profiles and app logout adapters."""
