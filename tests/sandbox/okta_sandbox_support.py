"""The Okta sandbox as every test meets it: where it lives (OKTA_HOST), its one API token, its users Alice and Bob,
an org served there over real loopback HTTP (`Sandboxes`, behind tests/conftest.py's `okta_sandbox` and
`start_okta_sandbox` fixtures), browsers that keep their own cookies, API calls with the org's token, and a hook
receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from gateway.sandbox.browser import loopback_origins
from gateway.sandbox.okta.app import build_okta_app
from gateway.sandbox.okta.org import OktaOrg
from gateway.sandbox.stack import free_port

OKTA_HOST = "127.0.0.2"  # Okta's stand-in lives on another host than the gateway, apps and hook receivers (127.0.0.1)
API_TOKEN = "sandbox-api-token-for-tests"  # the org's API token; OKTA_API_TOKEN in every test's environment
ALICE, BOB = ("alice@example.com", "Alice-pw-1"), ("bob@example.com", "Bob-pw-2")  # (login, password)


def sandbox_org(port: int, *, users: bool = True, **options: Any) -> OktaOrg:
    """An org to serve on OKTA_HOST:port with the API token, and Alice and Bob unless users=False; `options` are
    OktaOrg's (clock, engine, lifetimes, rate limit, another issuer). Its server is the caller's to start."""
    options.setdefault("api_token", API_TOKEN)
    org = OktaOrg(issuer=options.pop("issuer", f"http://{OKTA_HOST}:{port}"), **options)
    if users:
        org.add_user(*ALICE, first_name="Alice", last_name="Liddell")
        org.add_user(*BOB, first_name="Bob", last_name="Builder")
    return org


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Okta:
    """A running sandbox org: its state (`org`), its URL, and clients to talk to it."""

    def __init__(self, org: OktaOrg, server: TestServer) -> None:
        self.org, self.server = org, server
        self._clients: list[aiohttp.ClientSession] = []
        self.http = self.client(cookies=False)

    @property
    def issuer(self) -> str:
        return self.org.issuer

    def url(self, path: str) -> str:
        return f"{self.org.issuer}{path}"

    def clock(self) -> float:
        """The org's clock in epoch seconds: the gateway under test keeps time with it."""
        return self.org.clock.timestamp()

    def calls(self, method: str, path_prefix: str) -> int:
        """How many API calls of this method came to paths that start so."""
        return sum(1 for c in self.org.api_calls if c.method == method and c.path.startswith(path_prefix))

    def client(self, *, cookies: bool = True) -> aiohttp.ClientSession:
        """A browser (its own cookie jar; unsafe=True keeps cookies of IP-address hosts; the org's loopback origin is
        a secure context, so its Secure cookie goes back over http) or a cookie-less client."""
        jar: aiohttp.abc.AbstractCookieJar = aiohttp.DummyCookieJar()
        if cookies:
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=loopback_origins(self.org.issuer))
        session = aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=10))
        self._clients.append(session)
        return session

    browser = client

    async def call(self, method: str, path: str, *, client: aiohttp.ClientSession | None = None,
                   token: str | None = API_TOKEN, **kwargs: Any) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"SSWS {token}"
        async with (client or self.http).request(method, self.url(path), headers=headers, allow_redirects=False,
                                                 **kwargs) as r:
            return Answer(r.status, r.headers, await r.text())

    async def session_token(self, login: str, password: str) -> str:
        answer = await self.call("POST", "/api/v1/authn", token=None, json={"username": login, "password": password})
        assert answer.status == 200, answer.text
        return str(answer.json["sessionToken"])

    async def browser_sign_in(self, browser: aiohttp.ClientSession, login: str, password: str,
                              from_uri: str = "") -> Answer:
        """The sign-in form, as a person fills it in."""
        form = {"username": login, "password": password, "fromURI": from_uri}
        async with browser.post(self.url("/login/login.htm"), data=form, allow_redirects=False) as r:
            return Answer(r.status, r.headers, await r.text())

    def cookie(self, browser: aiohttp.ClientSession, name: str | None = None) -> str | None:
        name = name or self.org.cookie_name
        for morsel in browser.cookie_jar:
            if morsel.key == name and morsel["domain"] == OKTA_HOST:
                return morsel.value
        return None

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


class Sandboxes:
    """Starts orgs for one test and closes their clients after it (the servers are aiohttp_server's)."""

    def __init__(self, aiohttp_server: Any) -> None:
        self._aiohttp_server = aiohttp_server
        self._started: list[Okta] = []

    async def start(self, *, users: bool = True, **options: Any) -> Okta:
        """Serve sandbox_org(port, users=users, **options) on OKTA_HOST."""
        port = free_port(OKTA_HOST)
        org = sandbox_org(port, users=users, **options)
        server = await self._aiohttp_server(build_okta_app(org), host=OKTA_HOST, port=port)
        okta = Okta(org, server)
        self._started.append(okta)
        return okta

    async def __aenter__(self) -> Sandboxes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for okta in self._started:
            await okta.close()


@dataclass
class Received:
    method: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """An event hook endpoint on 127.0.0.1: echoes verification challenges and records every delivery.

    `statuses` are the answers to the next POSTs, in order (200 once they run out); `delay` holds every POST
    answer back that many seconds; `echo` replaces the challenge echoed back (None: echo it right).
    """

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    echo: str | None = None
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/okta/events", self._verify)
        app.router.add_post("/okta/events", self._event)
        return app

    async def _verify(self, request: web.Request) -> web.Response:
        challenge = request.headers.get("x-okta-verification-challenge", "")
        self.received.append(Received("GET", dict(request.headers), None))
        return web.json_response({"verification": self.echo if self.echo is not None else challenge})

    async def _event(self, request: web.Request) -> web.Response:
        self.received.append(Received("POST", dict(request.headers), await request.json()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    @property
    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.posts for e in r.body["data"]["events"]]


async def start_receiver(aiohttp_server: Any, **options: Any) -> Receiver:
    receiver = Receiver(**options)
    server = await aiohttp_server(receiver.app(), host="127.0.0.1")
    receiver.url = f"http://127.0.0.1:{server.port}/okta/events"
    return receiver
