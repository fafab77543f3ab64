"""Fixtures that start the whole stack: the Okta sandbox, legacy apps, the gateway, and browsers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from stack_support import ADMIN_TOKEN, ALICE, BOB, FAST_CACHE, HOOK_SECRET, KEYS, Browser

from gateway.sandbox.okta.org import OktaOrg
from gateway.sandbox.stack import AppRoute, Stack, free_port, start_stack

StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def binding_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", KEYS[0])
    monkeypatch.setenv("OKTA_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    return KEYS


@pytest.fixture
async def start(binding_keys: list[str]) -> AsyncIterator[StartStack]:
    """Start a stack: start(AppRoute(...), ..., org_options={...}, okta={...}); org has Alice and Bob."""
    stacks: list[Stack] = []

    async def make(*apps: AppRoute, org_options: dict[str, Any] | None = None, **kwargs: Any) -> Stack:
        port = free_port("127.0.0.2")
        org = OktaOrg(issuer=f"http://127.0.0.2:{port}", api_token="sandbox-api-token-for-tests",
                      **(org_options or {}))
        org.add_user(*ALICE, first_name="Alice", last_name="Liddell")
        org.add_user(*BOB, first_name="Bob", last_name="Builder")
        kwargs.setdefault("okta", FAST_CACHE)
        stack = await start_stack(list(apps) or [AppRoute("hr")], org=org, okta_port=port, **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.close()


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[[Stack], Browser]]:
    made: list[Browser] = []

    def make(stack: Stack) -> Browser:
        browser = Browser(stack)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.close()
