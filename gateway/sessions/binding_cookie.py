"""The binding's cookie: aiohttp-session's storage interface around BindingCodec (several keys, rotation).

aiohttp-session's own EncryptedCookieStorage takes one Fernet and refuses a MultiFernet, and its middleware skips
streamed answers (every proxied one): so this storage is ours, and the enforcement middleware calls `write()` on
the response itself before the response is prepared. All use of aiohttp-session stays in this module.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, SessionData

from ..settings import CookieSettings
from .binding import Binding, BindingCodec, Opened


class BindingStorage(AbstractStorage):
    """The binding cookie of one route: what it seals names the route, and it opens only what was sealed for it."""

    def __init__(self, codec: BindingCodec, cookie: CookieSettings, route: str) -> None:
        super().__init__(cookie_name=cookie.name, domain=cookie.domain, path=cookie.path, secure=cookie.secure,
                         httponly=cookie.httponly, samesite=cookie.samesite)
        self.codec = codec
        self.cookie = cookie
        self.route = route

    def open(self, value: str | None) -> Opened | None:
        opened = self.codec.open(value) if value else None
        return opened if opened is not None and opened.route == self.route else None

    def open_for(self, value: str | None, app_cookie: tuple[str, str] | None) -> Opened | None:
        """The binding of this cookie value if it was sealed for this route and belongs to the app session cookie
        sent with it."""
        return self.codec.open_for(value, self.route, *app_cookie) if value and app_cookie is not None else None

    def write(self, request: web.BaseRequest, response: web.StreamResponse, binding: Binding | None) -> None:
        """Set the sealed binding on the answer, or expire the cookie when binding is None."""
        c = self.cookie
        secure = request.secure if c.secure is None else c.secure
        if binding is None:
            response.del_cookie(c.name, domain=c.domain, path=c.path, secure=secure, httponly=c.httponly,
                                samesite=c.samesite)
        else:
            response.set_cookie(c.name, self.codec.seal(binding, self.route), domain=c.domain, path=c.path,
                                secure=secure, httponly=c.httponly, samesite=c.samesite)

    # aiohttp-session's interface, so that get_session() works where an app installs this storage

    async def load_session(self, request: web.Request) -> Session:
        opened = self.open(self.load_cookie(request))
        if opened is None:
            return Session(None, data=None, new=True, max_age=None)
        data: SessionData = {"created": int(opened.binding.bound_at), "session": _fields(opened.binding)}
        return Session(None, data=data, new=False, max_age=None)

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        if session.empty:
            self.write(request, response, None)
            return
        now = time.time()
        binding = Binding(str(session["session_id"]), str(session["user_id"]), str(session["login"]),
                          str(session["app_fingerprint"]), float(session.get("bound_at", now)),
                          float(session.get("last_activity", now)))
        self.write(request, response, binding)


def _fields(binding: Binding) -> dict[str, Any]:
    return {"session_id": binding.session_id, "user_id": binding.user_id, "login": binding.login,
            "app_fingerprint": binding.app_fingerprint, "bound_at": binding.bound_at,
            "last_activity": binding.last_activity}
