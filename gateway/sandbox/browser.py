"""A scripted browser for the sandbox: one cookie jar for every host, redirects followed step by step.

The end-to-end tests, the revocation benchmark and the scripted demo drive the stack with it. Like a browser, it
keeps cookies by host and not by port, keeps those of IP-address hosts (aiohttp's jar needs unsafe=True), and sends
Secure cookies to loopback origins over http, which browsers count as secure contexts (the Okta sandbox's cookie on
127.0.0.2 is Secure, as it is on a real, https, org).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .okta.common import is_loopback
from .okta.saml import read_autopost_form
from .stack import Stack


@dataclass
class Page:
    status: int
    headers: CIMultiDictProxy[str]
    text: str
    url: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def set_cookies(self) -> list[str]:
        return self.headers.getall("Set-Cookie", [])


def loopback_origins(*urls: str) -> list[URL]:
    """The origins among `urls` that a browser treats as secure over http: those of loopback hosts."""
    return [URL(u).origin() for u in urls if is_loopback(URL(u).host or "")]


class Browser:
    """A browser: one cookie jar for every host, redirects followed by hand so tests can see each step."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=loopback_origins(stack.org.issuer,
                                                                                    stack.gateway_url))
        self.http = aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=15))

    async def get(self, url: str, **kwargs: Any) -> Page:
        return await self.request("GET", url, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> Page:
        full = url if url.startswith("http") else self.stack.url(url)
        async with self.http.request(method, full, allow_redirects=False, **kwargs) as r:
            return Page(r.status, r.headers, await r.text(), str(r.url))

    async def follow(self, page: Page, limit: int = 10) -> Page:
        """Follow redirects as a browser would (a relative Location is relative to the page that sent it)."""
        for _ in range(limit):
            if page.status not in (301, 302, 303, 307):
                return page
            page = await self.get(str(URL(page.url).join(URL(page.location))))
        raise AssertionError("too many redirects")

    async def sign_in(self, who: tuple[str, str], prefix: str = "", start: str = "/page/1") -> Page:
        """From the app's sign-in link through Okta's page and the SAML POST, to the page asked for."""
        page = await self.get(f"{prefix}/login?return={start}")
        page = await self.follow(page)
        if "/login/login.htm" in page.url:
            from_uri = URL(page.url).query.get("fromURI", "")
            form = {"username": who[0], "password": who[1], "fromURI": from_uri}
            page = await self.follow(await self.request("POST", self.stack.org.issuer + "/login/login.htm",
                                                        data=form))
        assert page.status == 200, page.text
        action, fields = read_autopost_form(page.text)
        return await self.follow(await self.request("POST", action, data=fields))

    async def okta_sign_out(self) -> Page:
        return await self.get(self.stack.org.issuer + "/login/signout")

    def cookie(self, name: str) -> str | None:
        return next((m.value for m in self.http.cookie_jar if m.key == name and m["domain"] == "127.0.0.1"), None)

    def set_cookie(self, name: str, value: str) -> None:
        self.http.cookie_jar.update_cookies({name: value}, URL(self.stack.gateway_url))

    def drop_cookie(self, name: str) -> None:
        kept = [(m.key, m.value, m["domain"]) for m in self.http.cookie_jar if m.key != name]
        self.http.cookie_jar.clear()
        for key, value, domain in kept:
            self.http.cookie_jar.update_cookies({key: value}, URL(f"http://{domain}/"))

    async def close(self) -> None:
        await self.http.close()
