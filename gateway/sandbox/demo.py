"""The demo: the problem and its fix, on one machine, with no Okta org.

It starts the Okta sandbox (127.0.0.2:9010, the demo users), a legacy SAML app twice behind the gateway
(127.0.0.1:8080): `/hr/` with policy enforce and `/wiki/` with policy off, so that the difference shows. The
sandbox delivers its event hooks to the gateway and can call its Universal Logout endpoint, as a real org would.

`run_demo()` serves until Ctrl-C. `run_scripted()` walks the story by itself with a scripted browser and prints
what each app shows after each step: the wiki stays signed in after every kind of sign-out (the problem, seeds 003
and 004), the HR app does not (the fix). It returns whether every step came out as the story says.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet

from .browser import Browser
from .okta.org import OktaOrg
from .run import DEMO_USERS, stop_on_signals
from .stack import UNIVERSAL_LOGOUT, AppRoute, Stack, start_stack

OKTA_HOST, OKTA_PORT = "127.0.0.2", 9010
GATEWAY_HOST, GATEWAY_PORT = "127.0.0.1", 8080
HOOK_EVENTS = ["user.session.end", "user.session.clear", "user.lifecycle.suspend", "user.lifecycle.deactivate"]
APPS = [AppRoute("hr", prefix="/hr", policy="enforce", title="Legacy HR"),
        AppRoute("wiki", prefix="/wiki", policy="off", title="Legacy Wiki")]
ALICE, BOB = DEMO_USERS


def demo_secrets() -> None:
    """The secrets a real deployment takes from its environment, made up for the demo when unset."""
    os.environ.setdefault("OKTA_API_TOKEN", secrets.token_urlsafe(24))
    os.environ.setdefault("OKTA_HOOK_SECRET", secrets.token_urlsafe(24))
    os.environ.setdefault("GATEWAY_ADMIN_TOKEN", secrets.token_urlsafe(18))
    os.environ.setdefault("GATEWAY_BINDING_KEYS", Fernet.generate_key().decode())


async def start_demo(*, okta_port: int = OKTA_PORT, gateway_port: int = GATEWAY_PORT,
                     cache_ttl: float = 60.0) -> Stack:
    demo_secrets()
    org = OktaOrg(issuer=f"http://{OKTA_HOST}:{okta_port}", api_token=os.environ["OKTA_API_TOKEN"])
    for (login, password), (first, last) in zip(DEMO_USERS, (("Alice", "Liddell"), ("Bob", "Builder")),
                                                 strict=True):
        org.add_user(login, password, first, last)
    stack = await start_stack(
        APPS, org=org, okta_host=OKTA_HOST, okta_port=okta_port, gateway_host=GATEWAY_HOST,
        gateway_port=gateway_port, admin=True, server={"log_level": "warning"},
        okta={"cache_ttl": cache_ttl, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}, "universal_logout": {}})
    hook = org.add_event_hook(stack.url("/.gateway/okta/events"), HOOK_EVENTS,
                              secret=os.environ["OKTA_HOOK_SECRET"])
    if not await org.verify_hook(hook):
        await stack.close()
        raise RuntimeError("the gateway did not answer the sandbox's event hook verification")
    return stack


async def run_demo(*, okta_port: int = OKTA_PORT, gateway_port: int = GATEWAY_PORT) -> None:
    stopped = stop_on_signals()  # before anything starts: Ctrl-C while starting stops it too
    stack = await start_demo(okta_port=okta_port, gateway_port=gateway_port)
    try:
        url = stack.gateway_url
        print(f"Okta sandbox (the org)         {stack.org.issuer}/")
        for login, password in DEMO_USERS:
            print(f"  user {login:<20} password {password}")
        print(f"HR app, policy enforce         {url}/hr/")
        print(f"Wiki app, policy off           {url}/wiki/")
        print(f"status page                    {url}/.gateway/status  (operator token: "
              f"{os.environ['GATEWAY_ADMIN_TOKEN']})")
        print("Try: sign in to both apps, then sign out of Okta at the sandbox: the wiki stays signed in, the HR app")
        print("does not. Or log out of the HR app: the next sign-in asks for a password again.")
        print("Ctrl-C stops everything.", flush=True)
        await stopped.wait()
    finally:
        await stack.close()


# --- the scripted story ------------------------------------------------------------------------------------


@dataclass
class Row:
    step: str
    hr: str
    wiki: str
    okta: str
    expected: bool


async def run_scripted(*, okta_port: int = OKTA_PORT, gateway_port: int = GATEWAY_PORT,
                       out: Callable[[str], None] = print) -> bool:
    stack = await start_demo(okta_port=okta_port, gateway_port=gateway_port)
    browser = Browser(stack)
    try:
        rows = await _story(stack, browser)
    finally:
        await browser.close()
        await stack.close()
    _print_table(rows, out)
    return all(row.expected for row in rows)


async def _story(stack: Stack, browser: Browser) -> list[Row]:
    org, rows = stack.org, []

    async def step(name: str, action: Callable[[], Awaitable[object]], hr: bool, wiki: bool) -> None:
        await action()
        await org.wait_for_hooks()
        seen_hr, seen_wiki = await _signed_in(browser, "/hr"), await _signed_in(browser, "/wiki")
        okta = "signed in" if org.sessions_of(org.user(ALICE[0]).id) else "signed out"  # type: ignore[union-attr]
        rows.append(Row(name, _word(seen_hr), _word(seen_wiki), okta, (seen_hr, seen_wiki) == (hr, wiki)))

    async def sign_in_both() -> None:
        await browser.sign_in(ALICE, prefix="/hr", start="/hr/")
        await browser.sign_in(ALICE, prefix="/wiki", start="/wiki/")

    alice = org.user(ALICE[0])
    assert alice is not None
    await step("Alice signs in to both apps", sign_in_both, True, True)
    await step("She signs out of Okta", browser.okta_sign_out, False, True)
    await step("She signs in again", sign_in_both, True, True)
    async def log_out_of_hr() -> None:
        await browser.follow(await browser.get("/hr/logout"))

    await step("She logs out of the HR app", log_out_of_hr, False, True)
    await step("She signs in again", sign_in_both, True, True)
    await step("An admin clears her Okta sessions", _async(lambda: org.clear_user_sessions(alice.id)), False, True)
    await step("She signs in again", sign_in_both, True, True)
    await step("Okta suspends her (event hook)", _async(lambda: org.suspend_user(alice.id)), False, True)
    org.unsuspend_user(alice.id)
    await step("She signs in again", sign_in_both, True, True)
    await step("Okta's Universal Logout for her",
               lambda: org.send_universal_logout(stack.url(UNIVERSAL_LOGOUT), alice), False, True)
    return rows


async def _signed_in(browser: Browser, prefix: str) -> bool:
    page = await browser.get(f"{prefix}/api/me", headers={"Accept": "application/json"})
    return page.status == 200


def _word(signed_in: bool) -> str:
    return "signed in" if signed_in else "signed out"


def _async(action: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run


def _print_table(rows: list[Row], out: Callable[[str], None]) -> None:
    head = ("After this step", "Wiki (policy off)", "HR (policy enforce)", "Okta session", "")
    table = [head] + [(r.step, r.wiki, r.hr, r.okta, "" if r.expected else "UNEXPECTED") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            out("  ".join("-" * w for w in widths[:-1]))
    out("")
    out("Without the gateway (the wiki) the app stays signed in after every way Okta ends the session. With it (HR)")
    out("the app session ends with the Okta session, and logging out of the app ends the Okta session too.")
