"""Built-in plugins: sources of the Okta session id (sources.py) and app profiles (profiles.py).

Each is an entry point of the group `session_gateway.plugins` in pyproject.toml, found by name like any third-party
plugin (gateway/plugin.py says how); nothing in the gateway imports this package: the entry points are loaded.
"""
