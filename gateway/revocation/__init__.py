"""Revocations: the bus every end flows through, Okta event hooks, Universal Logout and logout interception."""
