"""A real browser through the whole stack: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
signs in through the Okta sandbox's page and the SAML auto-post, and logs out both ways, as a person would.

What it proves beyond the scripted browser: Chromium's own cookie rules (SameSite, Secure, host-only cookies of IP
hosts), the auto-post form submitted by the page's script, and redirects followed by the browser itself. The
servers run in-process on the test's event loop, and Playwright's async API drives Chromium from the same loop.
Without Chromium or Playwright the tests skip, but fail in CI (GATEWAY_TESTS_STRICT=1): `make test` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from okta_sandbox_support import ALICE, BOB, OKTA_HOST
from stack_support import ADMIN_TOKEN, HOOK_SECRET, SLOW_CACHE

from conftest import StartStack, strict
from gateway.sandbox.stack import Stack

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the fixture below says so
    async_playwright = None

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
# The flags that work on this machine: no sandbox (root), and nothing that reaches for Google's hosts.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000  # every wait of a page (navigation, selector, expectation) gives up after this
HOOK_TYPES = ["user.session.end", "user.session.clear", "user.lifecycle.suspend", "user.lifecycle.deactivate"]

pytestmark = pytest.mark.timeout(60)


def missing(reason: str) -> None:
    """Skip here; fail in CI, where a missing browser must not pass for a green run."""
    if strict():
        pytest.fail(reason + " (GATEWAY_TESTS_STRICT=1: `make test` installs it)")
    pytest.skip(reason)


async def screenshot(page: Page, name: str) -> Path:
    """Save what the page shows as test-artifacts/<name>.png (one line per picture a test wants kept)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, timeout=WAIT_MS)
    return path


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    if async_playwright is None:
        missing("Playwright for Python is not installed (pip install playwright)")
    if shutil.which(CHROMIUM) is None:
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(chromium: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh profile: no cookies, no cache (a new incognito-like context of the one browser)."""
    context = await chromium.new_context()
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def stack(start: StartStack) -> Stack:
    """The whole stack (`start`, tests/conftest.py: the Okta sandbox with Alice and Bob on OKTA_HOST, the legacy app
    and the gateway on 127.0.0.1); Okta's event hook is registered to the gateway as in production, and the cache
    vouches for an hour: only the push ends sessions."""
    running = await start(okta={**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}}, admin=True)
    hook = running.org.add_event_hook(running.url("/.gateway/okta/events"), HOOK_TYPES, secret=HOOK_SECRET)
    assert await running.org.verify_hook(hook)
    return running


def at(url: str) -> re.Pattern[str]:
    """The page's URL is `url`, whatever its query."""
    return re.compile(re.escape(url) + r"(\?.*)?$")


async def sign_in(page: Page, stack: Stack, who: tuple[str, str], start: str = "/page/1") -> None:
    """Open a page of the app through the gateway, sign in on Okta's page, and come back to it signed in."""
    await page.goto(stack.url(start))
    await okta_sign_in_page(page, stack)
    await page.get_by_label("Username").fill(who[0])
    await page.get_by_label("Password").fill(who[1])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(stack.url(start), timeout=WAIT_MS)  # via the SAML auto-post, by script
    await expect(page.locator("body")).to_contain_text(f"signed in to Legacy HR as {who[0]}", timeout=WAIT_MS)


async def okta_sign_in_page(page: Page, stack: Stack) -> None:
    """The page is Okta's own sign-in form, asking for a password."""
    await expect(page).to_have_url(at(stack.org.issuer + "/login/login.htm"), timeout=WAIT_MS)
    await expect(page.get_by_label("Password")).to_be_visible(timeout=WAIT_MS)


async def cookies(context: BrowserContext, host: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in await context.cookies() if c["domain"] == host}


async def test_sign_in_through_okta_lands_on_the_app_page(context: BrowserContext, stack: Stack) -> None:
    page = await context.new_page()
    await sign_in(page, stack, ALICE)
    await screenshot(page, "app-signed-in")

    okta = await cookies(context, OKTA_HOST)
    assert okta[stack.org.cookie_name]["secure"] and okta[stack.org.cookie_name]["sameSite"] == "None"
    app = await cookies(context, "127.0.0.1")
    assert {"JSESSIONID", "gateway_binding_hr"} <= app.keys()  # kept although not Secure: SameSite=Lax on http
    assert not app["gateway_binding_hr"]["secure"]  # secure = "auto" on http

    await page.get_by_role("link", name="Next page").click()  # the binding and the app session hold
    await expect(page).to_have_url(stack.url("/page/2"))
    await expect(page.locator("body")).to_contain_text(f"signed in to Legacy HR as {ALICE[0]}")


async def test_okta_sign_out_in_another_tab_ends_the_app_session(context: BrowserContext, stack: Stack) -> None:
    page = await context.new_page()
    await sign_in(page, stack, ALICE)

    okta_tab = await context.new_page()
    await okta_tab.goto(stack.org.issuer + "/login/signout")
    await okta_sign_in_page(okta_tab, stack)  # Okta signed the browser out and shows its sign-in page
    await stack.org.wait_for_hooks(WAIT_MS / 1000)  # Okta pushes user.session.end to the gateway

    await page.bring_to_front()
    await page.reload()  # the gateway ended the app session: through the app's sign-in to Okta's page
    await okta_sign_in_page(page, stack)
    assert stack.apps["hr"].sessions == {}
    assert "JSESSIONID" not in await cookies(context, "127.0.0.1")


async def test_app_logout_signs_out_of_okta_and_the_next_sign_in_asks_for_a_password(
    context: BrowserContext, stack: Stack
) -> None:
    page = await context.new_page()
    await sign_in(page, stack, ALICE)

    await page.get_by_role("link", name="Sign out").click()  # /logout, through Okta's sign-out and back
    await expect(page).to_have_url(stack.url("/"))
    await expect(page.locator("body")).to_contain_text("Not signed in.")
    assert stack.org.sessions_of(stack.org.user(ALICE[0]).id) == []
    assert stack.org.cookie_name not in await cookies(context, OKTA_HOST)

    await page.get_by_role("link", name="Sign in").click()  # no silent sign-in as Alice (seed 004)
    await okta_sign_in_page(page, stack)
    await page.get_by_label("Username").fill(BOB[0])
    await page.get_by_label("Password").fill(BOB[1])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(stack.url("/"))
    await expect(page.locator("body")).to_contain_text(f"Signed in to Legacy HR as {BOB[0]}")


async def test_the_operators_status_page_signs_in_switches_a_policy_and_is_screenshot(
    context: BrowserContext, stack: Stack
) -> None:
    page = await context.new_page()
    await sign_in(page, stack, ALICE)
    await stack.org.wait_for_hooks()
    stack.org.clear_user_sessions(stack.org.user(ALICE[0]).id)  # a revocation for the page to show
    await stack.org.wait_for_hooks()

    status = await context.new_page()
    await status.goto(stack.url("/.gateway/status"), timeout=WAIT_MS)
    await status.get_by_label("Operator token").fill(ADMIN_TOKEN)
    await status.get_by_role("button", name="Sign in").click()
    await expect(status.locator("h2").first).to_contain_text("Routes")
    await expect(status.locator("body")).to_contain_text("user_sessions_cleared")
    await status.get_by_role("button", name="observe").click()
    await expect(status.locator(".notice")).to_contain_text("policy enforce -> observe")
    await expect(status.locator(".changed")).to_have_text("observe")
    await screenshot(status, "status-page")
