"""Soak: mixed traffic with session churn against one gateway process for ten minutes: memory, errors, p99.

The stack is the demo's (gateway/sandbox/demo.py): the Okta sandbox on 127.0.0.2 with event hooks and Universal
Logout, and the legacy SAML app behind `/hr/` (policy enforce) and `/wiki/` (policy off), all in this process,
started by gateway/sandbox/stack.py. The gateway is `session-gateway run` in a process of its own on 127.0.0.1, on
the configuration the stack would have used in-process, so that its RSS is read from /proc.

Traffic, for `--duration` seconds (the first `--warmup` of them not measured), from `--browsers` browsers
(gateway/sandbox/browser.py) shared by `--users` users:
- a browser signs in through SAML (with a password, or silently by SSO), browses both apps and ends its round by
  signing out of Okta, logging out of the HR app, or going away; half the rounds start in a new browser;
- now and then an admin acts on a user: clears their sessions, suspends and then unsuspends them, or ends one
  session (each reaching the gateway as an event hook), or Okta sends a Universal Logout for them;
- `--hostile` (5 %) of the requests are hostile (HOSTILE below): smuggling attempts on raw sockets, forged and
  charset-polyglot ACS POSTs, distinct large Cookie headers, random session ids in headers and cookies, bad event
  hook and Universal Logout bodies, operator token guesses and a cross-scheme CSRF, odd targets and Host headers,
  and a few slowloris heads and bodies in the background.
Errors are counted over the whole run; RSS growth and latencies only after the warm-up. All of it comes from
127.0.0.1, hostile or not, so a per-client limit of the gateway sees one client.

An error is: a 5xx the scenario did not ask for; a traceback in the gateway's log; a request of the HR app served
after its session was revoked, later than the cache TTL, beyond one request; an answer meant for another user or
another request; a signed-in session signed out with no revocation, or a sign-in that did not end signed in; an
app logout that left the Okta session alive; a hostile request answered with anything but a 3xx or 4xx (4xx only
where a redirect would mean it worked), answered twice, held open past SLOW_LIMIT, or whose smuggled request
reached an app (each smuggled request is a logout of a canary session of its own, which dies when it gets
through); an event hook delivery or a Universal Logout the gateway refused; a connection error; a 429 from Okta
(legitimate traffic stays well under the org's limit, so only unauthenticated calls can get there).

    python bench/soak_bench.py [--duration 600] [--warmup 60] [--browsers 16] [--users 8] [--hostile 0.05]

Prints a progress line each tenth of the run, the errors by kind with one example each and, last,
`RESULT soak_rss_growth_mb=<RSS at the end minus RSS after the warm-up> soak_errors=<n> soak_p99_ms=<p99 of the
non-hostile requests after the warm-up>`. Exit status 1 when there were errors. Loopback only; every loop is
bounded by the deadline. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import aiohttp  # noqa: E402
import proxy_bench as pb  # noqa: E402
from raw_http import send_raw, statuses  # noqa: E402

from gateway.sandbox.browser import Browser, Page  # noqa: E402
from gateway.sandbox.demo import APPS, HOOK_EVENTS, demo_secrets  # noqa: E402
from gateway.sandbox.okta.org import OktaOrg, Session, User, random_id  # noqa: E402
from gateway.sandbox.okta.saml import SigningKey, build_response  # noqa: E402
from gateway.sandbox.stack import UNIVERSAL_LOGOUT, Stack, _route, free_port, start_stack  # noqa: E402

TTL = 10.0  # the validation cache's TTL: how long a revoked session may be served without a push
THINK = 0.1  # most seconds a browser waits between two requests
ROUND = (40, 200)  # requests of a browser between its sign-in and its sign-out
HOOKS = "/.gateway/okta/events"
CANARY = "canary@example.com"
SLOW_LIMIT = 60.0  # seconds a connection that trickles its head or body may stay open (issue 10 saw 70 s and more)
SLOW_AT_ONCE = 4  # slow connections open at one time
EVIL = "evil.example"


# --- what is counted -------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """Requests, latencies (after the warm-up) and errors by kind, with the first example of each."""

    measuring: bool = False
    requests: int = 0
    hostile: int = 0
    sign_ins: int = 0
    revocations: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def answered(self, seconds: float) -> None:
        self.requests += 1
        if self.measuring:
            self.latencies.append(seconds)

    def error(self, kind: str, example: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, example[:240])

    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[int(0.99 * (len(ordered) - 1))] * 1000


class SoakBrowser(Browser):
    """A browser whose requests to the gateway are timed and checked for a 5xx."""

    def __init__(self, stack: Stack, tally: Tally) -> None:
        super().__init__(stack)
        self.tally = tally

    async def request(self, method: str, url: str, **kwargs: Any) -> Page:
        full = url if url.startswith("http") else self.stack.url(url)
        if not full.startswith(self.stack.gateway_url + "/"):
            return await super().request(method, full, **kwargs)
        started = time.perf_counter()
        page = await super().request(method, full, **kwargs)
        self.tally.answered(time.perf_counter() - started)
        if page.status >= 500:
            self.tally.error(f"{page.status} from the gateway", f"{method} {url}: {page.text[:120]}")
        return page

    def okta_session(self, org: OktaOrg) -> Session | None:
        """The Okta session of this browser's Okta cookie, if it is alive."""
        value = next((m.value for m in self.http.cookie_jar if m.key == org.cookie_name), None)
        return org.session_for_cookie(value)


@dataclass(eq=False)
class Round:
    """One browser's sign-in to the HR app, until it ends; `revoked_at` is when its session was revoked."""

    browser: SoakBrowser
    revoked_at: float | None = None
    served_late: int = 0
    wiki: bool = False

    def revoke(self, now: float) -> None:
        if self.revoked_at is None:
            self.revoked_at = now


@dataclass(eq=False)
class Person:
    """A user; the lock keeps an admin's action on them and their sign-ins apart, so each has one outcome."""

    user: User
    password: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rounds: set[Round] = field(default_factory=set)  # signed in to the HR app now

    @property
    def login(self) -> str:
        return self.user.login


# --- the stack, with the gateway in a process of its own ------------------------------------------------------

def config_toml(data: Mapping[str, Any]) -> str:
    """TOML for a configuration dict: tables, arrays of tables (a list of dicts), and inline tables below them."""
    lines: list[str] = []
    for name, table in data.items():
        for entry in table if isinstance(table, list) else [table]:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in entry.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def gateway_config(stack: Stack, okta: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """The configuration start_stack() gave its in-process gateway, as a `session-gateway run` file holds it."""
    upstreams = {r.name: r.upstream_origin for r in stack.settings.routes.routes}
    host, port = stack.settings.server.host, stack.settings.server.port
    return {
        "server": {"listen": f"{host}:{port}", "stop_delay": 0, **server},
        "okta": {"org_url": stack.org.issuer, "api_token": "${OKTA_API_TOKEN}", **okta,
                 "universal_logout": {"endpoint_url": stack.url(UNIVERSAL_LOGOUT)}},
        "binding": {"keys": "${GATEWAY_BINDING_KEYS}"},
        "admin": {"token": "${GATEWAY_ADMIN_TOKEN}"},
        "route": [_route(spec, upstreams[spec.name]) for spec in APPS],
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise pb.BenchError("no VmRSS in /proc")


# --- the soak ----------------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args: argparse.Namespace, stack: Stack, gateway: pb.Child, log: Path,
                 people: list[Person]) -> None:
        self.args, self.stack, self.org, self.gateway, self.log = args, stack, stack.org, gateway, log
        self.people = people
        self.port = stack.settings.server.port
        self.tally = Tally()
        self.rng = random.Random(args.seed)
        self.deadline = 0.0
        self.attacker_key = SigningKey("attacker")
        self.canaries: dict[str, tuple[str, str]] = {}  # the session cookie of each canary -> (app, smuggled by)
        self.operator: tuple[str, str] | None = None  # the operator cookie and the status page's CSRF token
        self.slow: set[asyncio.Task[None]] = set()  # slow clients, each bounded by SLOW_LIMIT and the deadline
        self.hostile = HOSTILE

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    # --- browsers ---

    async def browse_forever(self, person: Person) -> None:
        browser: SoakBrowser | None = None
        while not self.over():
            if browser is None or self.rng.random() < 0.5:
                if browser is not None:
                    await browser.close()
                browser = SoakBrowser(self.stack, self.tally)
            try:
                await self.one_round(browser, person)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.tally.error("connection error", f"{person.login}: {type(exc).__name__}: {exc}")
                await browser.close()
                browser = None
            except Exception as exc:  # a surprise in an answer: counted, shown, and the browser goes on
                self.tally.error("unexpected answer", f"{person.login}: {exc!r}")
        if browser is not None:
            await browser.close()

    async def one_round(self, browser: SoakBrowser, person: Person) -> None:
        now = Round(browser)
        if not await self.sign_in(now, person):
            return
        try:
            for _ in range(self.rng.randint(*ROUND)):
                if self.over():
                    return
                if self.rng.random() < self.args.hostile:
                    await self.hostile_request()
                elif not await self.browse(now, person):
                    return  # signed out: revoked, as checked
                await asyncio.sleep(self.rng.uniform(0, THINK))
            await self.rng.choice((self.okta_sign_out, self.app_logout, self.go_away))(now, person)
            if now.revoked_at is not None:
                await self.until_refused(now, person)
        finally:
            person.rounds.discard(now)

    async def sign_in(self, now: Round, person: Person) -> bool:
        async with person.lock:  # an admin's action on this user waits, and this waits for a suspension to end
            if not await self.sign_in_to(now.browser, person, "hr"):
                await asyncio.sleep(1.0)  # a browser stuck in a sign-in loop does not spin
                return False
            self.tally.sign_ins += 1
            now.wiki = self.rng.random() < 0.5 and await self.sign_in_to(now.browser, person, "wiki")
            person.rounds.add(now)
        return True

    async def sign_in_to(self, browser: SoakBrowser, person: Person, app: str) -> bool:
        try:
            page = await browser.sign_in((person.login, person.password), prefix=f"/{app}",
                                         start=f"/{app}/page/1")
        except (AssertionError, ValueError) as exc:  # the sign-in form came back, or no SAML form came
            self.tally.error("sign-in failed", f"{app}, {person.login}: {str(exc)[:160]}")
            return False
        if not self.signed_in_as(page, person, f"{app} sign-in"):
            self.tally.error("sign-in failed", f"{app}, {person.login}: ended at {page.status} {page.url}")
            return False
        return True

    def signed_in_as(self, page: Page, person: Person, what: str) -> bool:
        """Whether the page is one of a signed-in app; an error when it is someone else's."""
        if page.status != 200 or "signed in to" not in page.text.lower():
            return False
        if f"as <b>{person.login}</b>" not in page.text:
            self.tally.error("an answer meant for another user", f"{what} of {person.login}: {page.text[:160]}")
        return True

    async def browse(self, now: Round, person: Person) -> bool:
        """One page of an app; False once the HR session is over (and checked to be over for a reason)."""
        if now.wiki and self.rng.random() < 0.3:
            page = await now.browser.get(f"/wiki/page/{self.rng.randint(1, 99)}")
            if not self.signed_in_as(page, person, "wiki page"):
                self.not_signed_in(page, person, "wiki", None)
                now.wiki = False
            return True
        started = time.monotonic()
        if self.rng.random() < 0.3:
            page = await now.browser.get("/hr/api/me", headers={"Accept": "application/json"})
            served = page.status == 200
            if served and _login_in(page) != person.login:
                self.tally.error("an answer meant for another user", f"/hr/api/me of {person.login}: {page.text}")
        else:
            page = await now.browser.get(f"/hr/page/{self.rng.randint(1, 99)}")
            served = self.signed_in_as(page, person, "HR page")
        if now.revoked_at is not None and started > now.revoked_at + TTL and served:
            now.served_late += 1
            if now.served_late > 1:
                self.tally.error("served after revocation",
                                 f"{person.login}: {started - now.revoked_at:.1f} s after the revocation")
        if served:
            return True
        self.not_signed_in(page, person, "HR", now.revoked_at)
        return False

    def not_signed_in(self, page: Page, person: Person, app: str, revoked_at: float | None) -> None:
        """An error unless the session was revoked; another kind when the answer was a logout nobody asked for."""
        if "logged_out=1" in page.location:  # the answer to a smuggled logout, or to another browser's
            self.tally.error("an answer to a request the browser did not send",
                             f"{app}, {person.login}: {page.status} {page.location}")
        elif revoked_at is None:
            self.tally.error("signed out with no revocation", f"{app}, {person.login}: {page.status} {page.location}")

    async def okta_sign_out(self, now: Round, person: Person) -> None:
        now.revoke(time.monotonic())
        await now.browser.okta_sign_out()
        self.tally.revocations += 1

    async def app_logout(self, now: Round, person: Person) -> None:
        okta = now.browser.okta_session(self.org)
        now.revoke(time.monotonic())
        page = await now.browser.get("/hr/logout")
        if page.status != 302 or "/login/signout" not in page.location:
            self.tally.error("app logout not intercepted", f"{person.login}: {page.status} {page.location}")
        elif okta is not None and not okta.ended:
            self.tally.error("app logout left the Okta session alive", person.login)
        self.tally.revocations += 1
        await now.browser.follow(page)

    async def go_away(self, now: Round, person: Person) -> None:
        """The browser is left as it is: its sessions live on in Okta and in the app until they expire."""

    async def until_refused(self, now: Round, person: Person) -> None:
        """Browse a revoked session until it is refused, or for a little longer than the cache TTL."""
        assert now.revoked_at is not None
        while time.monotonic() < now.revoked_at + TTL + 2.0:
            if not await self.browse(now, person):
                return
            await asyncio.sleep(self.rng.uniform(0, THINK))

    # --- an admin, and Okta's Universal Logout ---

    async def admin_forever(self) -> None:
        actions: list[Callable[[Person], Awaitable[None]]] = [
            self.clear_sessions, self.suspend_for_a_while, self.end_one_session, self.universal_logout]
        while not self.over():
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.args.admin_every)
            person = self.rng.choice(self.people)
            async with person.lock:
                if not self.over():
                    await self.rng.choice(actions)(person)

    def revoke_all(self, person: Person) -> None:
        moment = time.monotonic()
        for signed_in in person.rounds:
            signed_in.revoke(moment)
        self.tally.revocations += 1

    async def clear_sessions(self, person: Person) -> None:
        self.revoke_all(person)
        self.org.clear_user_sessions(person.user.id)

    async def suspend_for_a_while(self, person: Person) -> None:
        self.revoke_all(person)
        self.org.suspend_user(person.user.id)
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        self.org.unsuspend_user(person.user.id)

    async def end_one_session(self, person: Person) -> None:
        for signed_in in person.rounds:
            session = signed_in.browser.okta_session(self.org)
            if session is not None:
                signed_in.revoke(time.monotonic())
                self.tally.revocations += 1
                self.org.end_session(session)
                return

    async def universal_logout(self, person: Person) -> None:
        self.revoke_all(person)
        status = await self.org.send_universal_logout(self.stack.url(UNIVERSAL_LOGOUT), person.user)
        if status != 204:
            self.tally.error("Universal Logout refused", f"{person.login}: {status}")

    # --- hostile requests ---

    async def hostile_request(self) -> None:
        name, make = self.rng.choice(self.hostile)
        self.tally.hostile += 1
        try:
            await make(self, name)
        except OSError as exc:
            self.tally.error("connection error", f"hostile {name}: {type(exc).__name__}: {exc}")

    async def raw(self, name: str, data: bytes, *, idle: float = 2.0, only_4xx: bool = False) -> bytes:
        """Send a hostile request as bytes; an error unless exactly one answer came, a 3xx or 4xx (or only 4xx)."""
        answer = await send_raw("127.0.0.1", self.port, data, idle=idle)
        found = statuses(answer)
        if not found:
            self.tally.error(f"hostile {name}: not answered", repr(answer[:80]))
        elif len(found) > 1:
            self.tally.error(f"hostile {name}: answered twice", str(found))
        elif not (400 if only_4xx else 300) <= found[0] < 500:
            self.tally.error(f"hostile {name}: answered {found[0] // 100}xx", repr(answer[:160]))
        return answer

    def head(self, method: str, target: str, *headers: str, host: str | None = None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host or f'127.0.0.1:{self.port}'}", *headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def canary(self, app: str, smuggled_by: str) -> str:
        """A new app session for one smuggled request to log out: it ends only if that request got through."""
        cookie = self.stack.apps[app].create(CANARY, {}, self.org.clock.now())
        self.canaries[cookie] = app, smuggled_by
        if len(self.canaries) > 500:  # the oldest have had their chance
            old = next(iter(self.canaries))
            self.stack.apps[self.canaries.pop(old)[0]].destroy(old)
        return cookie

    def check_canaries(self) -> None:
        for cookie, (app, smuggled_by) in list(self.canaries.items()):
            if cookie not in self.stack.apps[app].sessions:
                self.tally.error(f"hostile {smuggled_by}: the smuggled request reached the app",
                                 f"{app}: its canary session was logged out")
                del self.canaries[cookie]

    async def smuggle(self, name: str, headers: list[str], frame: Callable[[bytes], bytes]) -> None:
        """POST to an app's /api/me (which answers 405 to a POST) with a smuggled logout of the canary inside:
        `frame` makes the body of that request, `{n}` in a header is the body's length."""
        app = self.rng.choice([spec.name for spec in APPS])
        inner = (f"GET /logout HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID={self.canary(app, name)}\r\n"
                 "X-Forwarded-For: 6.6.6.6\r\n\r\n").encode()
        body = frame(inner)
        data = self.head("POST", f"/{app}/api/me", *headers).replace(b"{n}", str(len(body)).encode())
        await self.raw(name, data + body, idle=0.5)
        self.check_canaries()

    def start_slow(self, name: str, head: bytes) -> None:
        """A client that sends `head` and then one byte every few seconds, in the background (SLOW_AT_ONCE at most)."""
        if len(self.slow) < SLOW_AT_ONCE:
            task = asyncio.create_task(self.slow_client(name, head))
            self.slow.add(task)
            task.add_done_callback(self.slow.discard)

    async def slow_client(self, name: str, head: bytes) -> None:
        """An error when the gateway still holds the connection open after SLOW_LIMIT seconds of trickle."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            self.tally.error("connection error", f"hostile {name}: {type(exc).__name__}: {exc}")
            return
        started = time.monotonic()
        try:
            writer.write(head)
            await writer.drain()
            while not self.over():
                if time.monotonic() - started > SLOW_LIMIT:
                    self.tally.error(f"hostile {name}: still open after {SLOW_LIMIT:g} s", "no read timeout")
                    return
                try:
                    await asyncio.wait_for(reader.read(65536), 5.0)
                    return  # closed, or answered (408, 400) and closed: as it should be
                except TimeoutError:
                    writer.write(b"a")
                    await writer.drain()
        except OSError:
            return  # reset by the gateway
        finally:
            writer.close()

    def forged_form(self, *, login: str | None = None) -> str:
        """SAMLResponse=… of a Response signed with a key the app does not trust, naming a random Okta session."""
        now = datetime.now(UTC)
        xml = build_response(self.org.apps["hr"], self.attacker_key,
                             name_id=login or self.rng.choice(self.people).login,
                             attributes={"okta_session_id": random_id("102", 22)}, now=now, authn_instant=now,
                             session_index=random_id("id", 20))
        return "SAMLResponse=" + base64.b64encode(xml).decode().replace("+", "%2B").replace("/", "%2F") \
            .replace("=", "%3D")

    async def acs_post(self, name: str, body: bytes, content_type: str) -> None:
        data = self.head("POST", "/hr/saml/acs", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                         "Connection: close")
        answer = await self.raw(name, data + body)
        if b"gateway_binding" in answer.split(b"\r\n\r\n", 1)[0]:
            self.tally.error("a forged sign-in was bound", name)

    async def sign_in_operator(self) -> None:
        """The status page's cookie and CSRF token, as the operator's browser holds them (for the CSRF checks)."""
        token = os.environ["GATEWAY_ADMIN_TOKEN"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            origin = self.stack.gateway_url
            async with http.post(self.stack.url("/.gateway/login"), data={"token": token},
                                 headers={"Origin": origin}) as r:
                await r.read()
            async with http.get(self.stack.url("/.gateway/status")) as r:
                page = await r.text()
            cookie = next((m.value for m in http.cookie_jar if m.key == "gateway_operator"), "")
        marker = 'name="csrf" value="'
        start = page.find(marker)
        if not cookie or start < 0:
            raise pb.BenchError("the operator could not sign in to the status page")
        self.operator = cookie, page[start + len(marker):page.index('"', start + len(marker))]


def _login_in(page: Page) -> str | None:
    try:
        return str(page.json.get("login"))
    except (ValueError, AttributeError):
        return None


Hostile = Callable[[Soak, str], Awaitable[None]]


def _smuggle(headers: list[str], frame: Callable[[bytes], bytes] = lambda inner: inner) -> Hostile:
    async def send(soak: Soak, name: str) -> None:
        await soak.smuggle(name, headers, frame)

    return send


def _chunked(inner: bytes) -> bytes:
    return f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n"


def _after_last_chunk(inner: bytes) -> bytes:
    return b"0\r\n\r\n" + inner


async def _forged_acs(soak: Soak, name: str) -> None:
    await soak.acs_post(name, soak.forged_form().encode(), "application/x-www-form-urlencoded")


async def _utf16_acs(soak: Soak, name: str) -> None:
    await soak.acs_post(name, soak.forged_form().encode("utf-16"), "application/x-www-form-urlencoded; charset=utf-16")


async def _two_responses_acs(soak: Soak, name: str) -> None:
    body = f"{soak.forged_form()}&{soak.forged_form()}".encode()
    await soak.acs_post(name, body, "application/x-www-form-urlencoded")


async def _nul_acs(soak: Soak, name: str) -> None:
    await soak.acs_post(name, soak.forged_form().encode() + b"%00\x00", "application/x-www-form-urlencoded")


async def _large_cookie(soak: Soak, name: str) -> None:
    """A distinct Cookie header of 2 to 15 KB, with an app session cookie the app never issued."""
    pads = "; ".join(f"p{i}={secrets.token_urlsafe(96)}" for i in range(soak.rng.randint(16, 110)))
    app = soak.rng.choice(("hr", "wiki"))
    await soak.raw(name, soak.head("GET", f"/{app}/api/me", "Accept: application/json", "Connection: close",
                                   f"Cookie: JSESSIONID={secrets.token_urlsafe(32)}; {pads}"))


async def _random_ids(soak: Soak, name: str) -> None:
    sid, idx = random_id("102", 22), random_id("idx", 22)
    binding = base64.urlsafe_b64encode(secrets.token_bytes(soak.rng.randint(60, 300))).decode()
    await soak.raw(name, soak.head("GET", "/hr/api/me", "Accept: application/json", "Connection: close",
                                   f"X-Okta-Session-Id: {soak.rng.choice((sid, idx))}",
                                   f"Cookie: sid={sid}; idx={idx}; JSESSIONID={secrets.token_urlsafe(32)}; "
                                   f"gateway_binding_hr={binding}"))


def _hook(body: bytes, *, secret: bool = True, length: int | None = None) -> Hostile:
    async def send(soak: Soak, name: str) -> None:
        auth = os.environ["OKTA_HOOK_SECRET"] if secret else secrets.token_urlsafe(24)
        data = soak.head("POST", HOOKS, f"Authorization: {auth}", "Content-Type: application/json",
                         f"Content-Length: {len(body) if length is None else length}", "Connection: close")
        await soak.raw(name, data + body, idle=1.0)

    return send


def _universal_logout(**overrides: Any) -> Hostile:
    async def send(soak: Soak, name: str) -> None:
        user = soak.rng.choice(soak.people).user
        headers, body = soak.org.universal_logout_request(soak.stack.url(UNIVERSAL_LOGOUT), user, **overrides)
        if not overrides:
            headers["Authorization"] = "Bearer " + secrets.token_urlsafe(soak.rng.randint(8, 400))
        data = soak.head("POST", UNIVERSAL_LOGOUT, *(f"{k}: {v}" for k, v in headers.items()),
                         f"Content-Length: {len(body)}", "Connection: close")
        await soak.raw(name, data + body, only_4xx=True)

    return send


async def _operator_guess(soak: Soak, name: str) -> None:
    body = f"token={secrets.token_urlsafe(18)}".encode()
    await soak.raw(name, soak.head("POST", "/.gateway/login", "Content-Type: application/x-www-form-urlencoded",
                                   f"Origin: {soak.stack.gateway_url}", f"Content-Length: {len(body)}",
                                   "Connection: close") + body, only_4xx=True)


async def _csrf_other_scheme(soak: Soak, name: str) -> None:
    """The operator's own cookie and CSRF token, from an Origin of another scheme: refused, nothing switched."""
    assert soak.operator is not None
    cookie, csrf = soak.operator
    body = f"csrf={csrf}&mode=enforce".encode()
    await soak.raw(name, soak.head("POST", "/.gateway/admin/routes/hr/policy", f"Cookie: gateway_operator={cookie}",
                                   f"Origin: https://127.0.0.1:{soak.port}",
                                   "Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}",
                                   "Connection: close") + body, only_4xx=True)


def _get(target: str, *headers: str, only_4xx: bool = True, host: str | None = None) -> Hostile:
    async def send(soak: Soak, name: str) -> None:
        await soak.raw(name, soak.head("GET", target, *headers, "Connection: close", host=host), only_4xx=only_4xx)

    return send


def _status_page_spelled(target: str) -> Hostile:
    async def send(soak: Soak, name: str) -> None:
        answer = await soak.raw(name, soak.head("GET", target, "Connection: close"), only_4xx=True)
        if b"operator sign-in" in answer:
            soak.tally.error(f"hostile {name}: reached the status page", answer[:120].decode(errors="replace"))

    return send


async def _evil_host_logout(soak: Soak, name: str) -> None:
    answer = await soak.raw(name, soak.head("GET", "/hr/logout", "Connection: close",
                                            host=f"127.0.0.1:{soak.port}@{EVIL}"))
    if EVIL.encode() in answer.split(b"\r\n\r\n", 1)[0]:
        soak.tally.error("an after-logout redirect built from the Host header", answer[:200].decode(errors="replace"))


async def _slow_head(soak: Soak, name: str) -> None:
    soak.start_slow(name, soak.head("GET", "/hr/api/me").removesuffix(b"\r\n") + b"X-Slow: ")


async def _slow_acs_body(soak: Soak, name: str) -> None:
    soak.start_slow(name, soak.head("POST", "/hr/saml/acs", "Content-Type: application/x-www-form-urlencoded",
                                    "Content-Length: 4096") + b"SAMLResponse=")


async def _bare_lf(soak: Soak, name: str) -> None:
    await soak.raw(name, soak.head("GET", "/wiki/api/me", "Connection: close").replace(b"\r\n", b"\n"))


async def _oversize_head(soak: Soak, name: str) -> None:
    await soak.raw(name, soak.head("GET", "/hr/api/me", f"X-Pad: {'a' * soak.rng.randint(17_000, 40_000)}",
                                   "Connection: close"), only_4xx=True)


NESTED = b"[" * 100_000 + b"]" * 100_000
CL = "Content-Length: {n}"
HOSTILE: list[tuple[str, Hostile]] = [
    ("Connection: Content-Length", _smuggle([CL, "Connection: Content-Length"])),
    ("Connection: Transfer-Encoding", _smuggle(["Transfer-Encoding: chunked", "Connection: Transfer-Encoding"],
                                               _chunked)),
    ("Connection: Host", _smuggle([CL, "Connection: Host, Content-Length"])),
    ("CL.TE", _smuggle([CL, "Transfer-Encoding: chunked"], _after_last_chunk)),
    ("TE.CL", _smuggle(["Transfer-Encoding: chunked", "Content-Length: 4"], _chunked)),
    ("TE xchunked", _smuggle(["Transfer-Encoding: xchunked", CL])),
    ("TE with a space before the colon", _smuggle(["Transfer-Encoding : chunked", CL], _after_last_chunk)),
    ("TE twice", _smuggle(["Transfer-Encoding: chunked", "Transfer-Encoding: identity", CL], _after_last_chunk)),
    ("TE chunked, identity", _smuggle(["Transfer-Encoding: chunked, identity", CL], _after_last_chunk)),
    ("two Content-Lengths", _smuggle([CL, "Content-Length: 0"])),
    ("Content-Length: +n", _smuggle(["Content-Length: +{n}"])),
    ("Content-Length: n, n", _smuggle(["Content-Length: {n}, {n}"])),
    ("obs-fold", _smuggle(["X-Folded: a", " Transfer-Encoding: chunked", CL], _after_last_chunk)),
    ("bare LF", _bare_lf),
    ("absolute-form target", _get("http://127.0.0.1:1/wiki/api/me", "Accept: application/json", only_4xx=False)),
    ("absolute-form target, another host", _get(f"http://{EVIL}/hr/api/me", "Accept: application/json",
                                                only_4xx=False)),
    ("oversize head", _oversize_head),
    ("slow head", _slow_head),
    ("slow ACS body", _slow_acs_body),
    ("forged ACS POST", _forged_acs),
    ("ACS POST in utf-16", _utf16_acs),
    ("ACS POST with two SAMLResponses", _two_responses_acs),
    ("ACS POST with a NUL", _nul_acs),
    ("large distinct Cookie header", _large_cookie),
    ("random session ids", _random_ids),
    ("hook without the secret", _hook(b'{"data": {"events": []}}', secret=False)),
    ("hook body not JSON", _hook(b'{"data": {"events": [')),
    ("hook body nested 100,000 deep", _hook(NESTED)),
    ("hook body over the limit", _hook(b"{}", length=2 * 1024 * 1024)),
    ("Universal Logout with a made-up token", _universal_logout()),
    ("Universal Logout for another audience", _universal_logout(aud="http://127.0.0.1:1/other")),
    ("Universal Logout with alg none", _universal_logout(alg="none")),
    ("operator token guess", _operator_guess),
    ("operator cookie not ASCII", _get("/.gateway/status", "Cookie: gateway_operator=\u00b21.x")),
    ("CSRF from another scheme", _csrf_other_scheme),
    ("/%2egateway/status", _status_page_spelled("/%2egateway/status")),
    ("Host naming another origin at logout", _evil_host_logout),
]


# --- running it ----------------------------------------------------------------------------------------------

async def start(args: argparse.Namespace, work: Path, children: list[pb.Child]) -> Soak:
    """The stack in this process, then the gateway in its own, on the port and configuration the stack chose."""
    demo_secrets()
    okta_port = free_port("127.0.0.2")
    org = OktaOrg(issuer=f"http://127.0.0.2:{okta_port}", api_token=os.environ["OKTA_API_TOKEN"])
    people = []
    for i in range(args.users):
        password = f"Soak-{i}-{secrets.token_urlsafe(6)}"
        people.append(Person(org.add_user(f"user{i}@example.com", password), password))
    okta = {"cache_ttl": TTL, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}}
    server = {"log_level": "warning"}
    stack = await start_stack(APPS, org=org, okta_port=okta_port, okta={**okta, "universal_logout": {}},
                              server=server, admin=True)
    try:
        await stack.runners.pop().cleanup()  # its in-process gateway: this one runs in a process of its own
        config = work / "gateway.toml"
        config.write_text(config_toml(gateway_config(stack, okta, server)))
        log = work / "gateway.log"
        env = {**os.environ, "PYTHONPATH": str(pb.REPO)}
        gateway = pb.spawn([args.python, "-m", "gateway.cli", "run", "--config", str(config)], log, cwd=pb.REPO,
                           env=env)
        children.append(gateway)
        soak = Soak(args, stack, gateway, log, people)
        await asyncio.to_thread(pb.wait_for_gateway, gateway, soak.port, log)
        hook = org.add_event_hook(stack.url(HOOKS), HOOK_EVENTS, secret=os.environ["OKTA_HOOK_SECRET"])
        if not await org.verify_hook(hook):
            raise pb.BenchError("the gateway did not answer the event hook's verification")
        await soak.sign_in_operator()  # before any token guess, which the gateway may answer with 429 for a while
    except BaseException:
        await stack.close()
        raise
    return soak


async def run(args: argparse.Namespace, work: Path, children: list[pb.Child]) -> int:
    soak = await start(args, work, children)
    try:
        return await soak_for(soak)
    finally:
        await soak.stack.close()


async def soak_for(soak: Soak) -> int:
    args = soak.args
    tally, pid = soak.tally, soak.gateway.pid
    print(f"# soak: {args.duration} s ({args.warmup} s warm-up), {args.browsers} browsers of {args.users} users, "
          f"{args.hostile:.0%} hostile, cache TTL {TTL:g} s; gateway pid {pid}, RSS {rss_mb(pid):.1f} MB", flush=True)
    began = time.monotonic()
    soak.deadline = began + args.duration
    tasks = [asyncio.create_task(soak.browse_forever(soak.people[i % len(soak.people)]))
             for i in range(args.browsers)]
    tasks.append(asyncio.create_task(soak.admin_forever()))
    try:
        await asyncio.sleep(args.warmup)
        tally.measuring = True
        after_warmup = rss_mb(pid)
        print(f"# warm-up over: RSS {after_warmup:.1f} MB", flush=True)
        every = max(10.0, args.duration / 10)
        while not soak.over():
            await asyncio.sleep(min(every, max(soak.deadline - time.monotonic(), 0)))
            if soak.gateway.poll() is not None:
                tally.error("the gateway exited", f"status {soak.gateway.returncode}")
                break
            soak.check_canaries()
            print(f"# {time.monotonic() - began:5.0f} s  RSS {rss_mb(pid):6.1f} MB  {tally.requests} requests "
                  f"({tally.hostile} hostile)  {tally.sign_ins} sign-ins  {tally.revocations} revocations  "
                  f"{sum(tally.errors.values())} errors", flush=True)
        at_end = rss_mb(pid) if soak.gateway.poll() is None else after_warmup
    finally:
        soak.deadline = 0.0
        done, pending = await asyncio.wait(tasks + list(soak.slow), timeout=30)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                tally.error("the bench failed", repr(task.exception()))
    await finish(soak)
    report(soak, at_end - after_warmup)
    return 1 if tally.errors else 0


async def finish(soak: Soak) -> None:
    """The errors only seen at the end: hooks the gateway refused, Okta's 429s, tracebacks in the log."""
    org, tally = soak.org, soak.tally
    try:
        await org.wait_for_hooks(10)
    except TimeoutError:
        tally.error("event hook deliveries still pending at the end", str(len(org.deliveries)))
    refused = [d for d in org.deliveries if d.attempts and not d.delivered]
    if refused:
        tally.errors["event hook delivery refused"] += len(refused)
        tally.examples.setdefault("event hook delivery refused", repr(refused[0].attempts[-1]))
    limited = sum(1 for call in org.api_calls if call.status == 429)
    if limited:
        tally.errors["429 from Okta"] += limited
        tally.examples.setdefault("429 from Okta", "the gateway's Okta calls were rate-limited")
    for exception, example in tracebacks(soak.log.read_text(errors="replace")):
        tally.error(f"traceback in the gateway's log ({exception})", example)
    okta_calls = Counter(f"{c.method} {c.path.split('/')[3] if c.path.count('/') >= 3 else c.path}"
                         for c in org.api_calls)
    minutes = max(soak.args.duration / 60, 1 / 60)
    print(f"# Okta API calls: {len(org.api_calls)} ({len(org.api_calls) / minutes:.0f}/min): "
          + ", ".join(f"{k} {v}" for k, v in okta_calls.most_common()), flush=True)


def tracebacks(log: str) -> list[tuple[str, str]]:
    """(exception type, the log line that announced it and its last line) of each traceback in a log."""
    found = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), i)
            exception = lines[end].partition(":")[0].rpartition(".")[2] or "?"
            found.append((exception, f"{lines[i - 1] if i else ''} ... {lines[end]}"))
    return found


def report(soak: Soak, growth: float) -> None:
    tally = soak.tally
    total = sum(tally.errors.values())
    print(f"# {tally.requests} timed requests, {tally.hostile} hostile, {tally.sign_ins} sign-ins, "
          f"{tally.revocations} revocations; {len(tally.latencies)} latencies after the warm-up", flush=True)
    if total:
        print("# errors by kind:")
        for kind, count in tally.errors.most_common():
            print(f"#   {count:6d}  {kind}: {tally.examples.get(kind, '')!r}")
    print(f"RESULT soak_rss_growth_mb={growth:.1f} soak_errors={total} soak_p99_ms={tally.p99_ms():.1f}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds of traffic, the warm-up included")
    parser.add_argument("--warmup", type=int, default=60, help="seconds before RSS and latencies count")
    parser.add_argument("--browsers", type=int, default=16, help="browsers at once")
    parser.add_argument("--users", type=int, default=8, help="users the browsers belong to")
    parser.add_argument("--hostile", type=float, default=0.05, help="share of requests that are hostile")
    parser.add_argument("--admin-every", type=float, default=3.0, help="mean seconds between two admin actions")
    parser.add_argument("--seed", type=int, default=None, help="for the traffic's random choices")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the gateway")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.duration or args.browsers < 1 or args.users < 1 or not 0 <= args.hostile <= 1:
        parser.error("need 0 < warmup < duration, browsers and users >= 1, 0 <= hostile <= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, pb._raise_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    # the sandbox's own servers log what hostile requests do to them: to a file, not over the progress lines
    logging.basicConfig(filename=work / "sandbox.log", level=logging.WARNING)
    children: list[pb.Child] = []
    status = 1
    try:
        status = asyncio.run(run(args, work, children))
        return status
    except pb.BenchError as exc:
        print(f"soak_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            pb.stop(child)
        if status == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept for a look: {work} (the gateway's configuration and log, the sandbox's log)",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
