"""The log lines of `session-gateway run` with `[log] format = "json"` at DEBUG, through a whole story: sign-ins,
requests, an app logout, an event hook revocation, a Universal Logout, an operator's policy switch, and hostile
requests (a request id from a client that is no trusted proxy, a path of odd bytes) on a raw socket.

Every line is one JSON object with the common fields; each request the client made has its access line under the
id the client got back; the audit lines of the revocations carry the id of the request that caused them; and no
line holds a full session id, a cookie value, the API token, the hook secret, the operator token or a key.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from fleet_support import start_replica
from okta_sandbox_support import ALICE, API_TOKEN, BOB, OKTA_HOST, sandbox_org
from raw_http import send_raw, statuses
from stack_support import ADMIN_TOKEN, HOOK_SECRET, KEYS, SLOW_CACHE

from conftest import GatewayProcess, toml_text
from gateway import __version__
from gateway.sandbox.browser import Browser, Page
from gateway.sandbox.fleet import Fleet, replica_config, replica_ports
from gateway.sandbox.stack import UNIVERSAL_LOGOUT, AppRoute, free_port, start_world

HOOK_TYPES = ["user.session.end", "user.session.clear"]
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
COMMON = {"time", "level", "logger", "message"}
REQUEST = {"request_id", "client", "method", "path"}


class RecordingBrowser(Browser):
    """A browser that notes the X-Request-Id of every answer the gateway gave it."""

    seen: list[tuple[str, str, int]]

    async def request(self, method: str, url: str, **kwargs: Any) -> Page:
        page = await super().request(method, url, **kwargs)
        if page.url.startswith(self.stack.gateway_url):
            self.seen.append((page.headers["X-Request-Id"], method, page.status))
        return page


def browser_of(fleet: Fleet) -> RecordingBrowser:
    browser = RecordingBrowser(fleet)  # type: ignore[arg-type]
    browser.seen = []
    return browser


async def test_every_line_is_json_with_its_request_id_and_no_secret(binding_keys, tmp_path):
    port = free_port(OKTA_HOST)
    okta = {**SLOW_CACHE, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}, "universal_logout": {}}
    world = await start_world([AppRoute("hr")], org=sandbox_org(port), okta_host=OKTA_HOST, okta_port=port,
                              okta=okta, server={"log_level": "debug", "access_log": True}, admin=True)
    fleet = Fleet(world, replica_ports(world, 1))
    config = replica_config(world, fleet.ports[0])
    routes = config.pop("route")
    gateway = await start_replica(GatewayProcess, toml_text(routes, **config, log={"format": "json"}),
                                  tmp_path / "gateway.toml", fleet.ports[0])
    browsers: list[RecordingBrowser] = []
    try:
        secrets = await story(fleet, browsers)
    finally:
        output = await asyncio.to_thread(gateway.stop)
        for browser in browsers:
            await browser.close()
        await world.close()
    lines = [json.loads(text) for text in output.splitlines()]  # every line is one JSON object
    (tmp_path / "gateway.log").write_text(output)  # to read when this test fails
    for line in lines:
        assert COMMON <= line.keys() and ISO_UTC.fullmatch(line["time"]), line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
    for secret in secrets:
        assert secret not in output, f"{secret[:4]}… appears in the log"

    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert all(REQUEST | {"status", "bytes", "duration_ms"} <= line.keys() for line in access)
    by_id = {line["request_id"]: line for line in access}
    seen = [s for browser in browsers for s in browser.seen]
    assert len(seen) >= 15
    for request_id, method, status in seen:
        assert (by_id[request_id]["method"], by_id[request_id]["status"]) == (method, status)
    assert all("?" not in line["path"] for line in access)  # queries carry SAMLResponse, RelayState, tokens
    proxied = [line for line in access if line.get("route") == "hr"]
    assert proxied and all("upstream_ms" in line for line in proxied if line["status"] == 200)  # the app answered
    assert all(0 <= line["upstream_ms"] <= line["duration_ms"] for line in proxied if "upstream_ms" in line)

    ids = {line["request_id"] for line in access}
    audits = [line for line in lines if line["logger"] == "gateway.audit"]
    revocations = {line["source"]: line for line in audits if line.get("event") == "revocation"}
    assert {"app_logout", "event_hook", "universal_logout"} <= revocations.keys()
    for line in audits:  # each is about the request that caused it: the logout, the delivery, the call
        assert line["request_id"] in ids and REQUEST <= line.keys(), line
    assert revocations["app_logout"]["session"].endswith("…")
    assert any(line.get("event") == "policy_switch" and line["to"] == "observe" for line in audits)

    [start] = [line for line in lines if line.get("event") == "start"]
    assert (start["version"], start["listen"], start["store"]) == (__version__, f"127.0.0.1:{fleet.ports[0]}",
                                                                   "memory (this process)")
    assert start["routes"] == [{"name": "hr", "host": "*", "path": "/", "policy": "enforce"}]
    assert [line["event"] for line in lines if line.get("event") in ("start", "stop")] == ["start", "stop"]


async def story(fleet: Fleet, browsers: list[RecordingBrowser]) -> list[str]:
    """Drive the stack; what must never be logged, gathered on the way."""
    org = fleet.org
    secrets = [API_TOKEN, HOOK_SECRET, ADMIN_TOKEN, *KEYS]

    def note(browser: RecordingBrowser, *users: tuple[str, str]) -> None:
        for name in ("JSESSIONID", "gateway_binding_hr"):
            value = browser.cookie(name)
            assert value
            secrets.append(value)
        for login, _ in users:
            secrets.extend(s.id for s in org.sessions_of(org.user(login).id))

    alice = browser_of(fleet)
    browsers.append(alice)
    assert (await alice.get("/page/1")).status == 302  # the enforcer's redirect to sign in
    assert (await alice.sign_in(ALICE)).status == 200
    note(alice, ALICE)
    for path in ("/page/1", "/page/2", "/api/me", "/page/3?code=not-for-the-log"):
        assert (await alice.get(path)).status == 200
    assert (await alice.get("/logout")).status == 302  # the app's logout: Okta's session ends too

    hook = org.add_event_hook(fleet.url("/.gateway/okta/events"), HOOK_TYPES, secret=HOOK_SECRET)
    assert await org.verify_hook(hook)
    assert (await alice.sign_in(ALICE)).status == 200
    note(alice, ALICE)
    await alice.okta_sign_out()  # Okta's event hook tells the gateway
    await org.wait_for_hooks()
    assert (await alice.get("/page/1")).status == 302

    bob = browser_of(fleet)
    browsers.append(bob)
    assert (await bob.sign_in(BOB)).status == 200
    note(bob, BOB)
    assert await org.send_universal_logout(fleet.url(UNIVERSAL_LOGOUT), BOB[0], "email") == 204
    assert (await bob.get("/page/1")).status == 302

    async with aiohttp.ClientSession() as http:
        async with http.put(fleet.url("/.gateway/admin/routes/hr/policy"), json={"mode": "observe"},
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert r.status == 200 and r.headers["X-Request-Id"]
        raw_acs = "/saml/acs?SAMLResponse=PHNhbWxwOlJlc3BvbnNlIHNlY3JldA&RelayState=relay-secret-value"
        async with http.get(fleet.url(raw_acs)) as r:
            assert r.headers["X-Request-Id"]
    secrets += ["PHNhbWxwOlJlc3BvbnNlIHNlY3JldA", "relay-secret-value", "not-for-the-log"]
    for hostile in (b"GET /page/%0d%0a%ff;jsessionid=ABCDEF HTTP/1.1\r\nHost: a\r\nX-Request-Id: ev\xc3\xa9l\r\n",
                    # aiohttp's parser refuses it (one JSON line still), and would quote the raw request in its error
                    b"GET /\xff\xfe HTTP/1.1\r\nHost: a\r\n",
                    b"GET /p HTTP/1.1\r\nHost: a\r\nCookie: JSESSIONID=quoted-by-the-parser\x01\r\n",
                    b"GET /p HTTP/1.1\r\nHost: a\r\nX-Request-Id: x" + b"y" * 10_240 + b"\r\n",
                    b"GET /p HTTP/1.1\r\nHost: a\r\nX-Request-Id: spoofed-by-a-client\r\n"):
        raw = await send_raw("127.0.0.1", fleet.ports[0], hostile + b"Connection: close\r\n\r\n")
        assert statuses(raw) and b"spoofed" not in raw and b"yyyy" not in raw
    secrets += ["ABCDEF", "spoofed-by-a-client", "y" * 64, "quoted-by-the-parser"]
    return secrets
