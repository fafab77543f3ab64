"""Helpers for end-to-end tests over the whole stack: the Okta sandbox on OKTA_HOST (its users and token are
okta_sandbox_support's), legacy apps and the gateway on 127.0.0.1, and browsers that keep their own cookies (of IP
hosts too; by host, not by port, as browsers do)."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from okta_sandbox_support import ALICE

from gateway.sandbox.browser import Browser, Page
from gateway.sandbox.stack import Stack

KEYS = [Fernet.generate_key().decode() for _ in range(3)]
FAST_CACHE = {"cache_ttl": 5, "revalidate": 0, "negative_ttl": 5}
HOOK_SECRET = "hook-secret-for-the-e2e-tests-0123456789"
ADMIN_TOKEN = "operator-token-for-the-e2e-tests-0123"
SLOW_CACHE = {"cache_ttl": 3600, "revalidate": 0}  # pushed revocations must not need the cache to expire

__all__ = ["ADMIN_TOKEN", "FAST_CACHE", "HOOK_SECRET", "KEYS", "SLOW_CACHE", "Browser", "Page", "signed_in"]


async def signed_in(start: Any, browsers: Any, *apps: Any, **kwargs: Any) -> tuple[Stack, Browser]:
    """A stack started with `start` (the fixture; the Okta cache slow unless `okta=` says otherwise) and a browser
    signed in as Alice on it."""
    kwargs.setdefault("okta", SLOW_CACHE)
    stack = await start(*apps, **kwargs)
    browser = browsers(stack)
    assert (await browser.sign_in(ALICE)).status == 200
    return stack, browser
