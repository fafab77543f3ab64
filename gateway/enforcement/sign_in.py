"""Sign-in at the app's ACS: forward the POST first, bind once the app has accepted the assertion.

Rules of this module (the outcome itself is decided by `policy.sign_in_outcome()` and `policy.unbindable_sign_in()`):
- Okta is asked nothing before the app answered the ACS POST below 400 with a new session cookie: an unsigned
  POST costs no Okta call. The assertion is read only when the form reads the same way for every form reader
  (sessions/saml.py), or not at all.
- An id Okta must be asked about (the cache does not know it) spends a token of the gateway's budget of unknown
  ids, shared and per client (`unknown_id_budget`), given back when Okta knows the session; a sign-in that finds
  the budget spent waits up to `_BUDGET_WAIT` seconds for a token, and past that binds nothing.
- Each outcome is counted (`session_gateway_sign_ins_total`); one that cannot bind logs a warning with its cause at most
  once a minute per route.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from ..buckets import Budget
from ..metrics import Metrics
from ..plugin import SignInReader
from ..proxy.headers import client_address
from ..proxy.http import Forwarder, continue_if_expected
from ..routing import Route
from ..sessions.app_side import AppSide
from ..sessions.binding import Binding
from ..sessions.binding_cookie import BindingStorage
from ..sessions.cookies import read_set_cookie
from ..sessions.policy import SignInFacts, sign_in_outcome, unbindable_sign_in
from ..sessions.saml import MAX_FORM_BYTES, acs_post_refusal
from ..sessions.validation import SessionValidator, Verdict
from ..settings import IPNetwork, OktaSettings
from ..store import RevocationStore, user_keys

log = logging.getLogger("gateway.sessions")

_WARN_EVERY = 60.0
# A sign-in that finds the budget of unknown ids spent waits this long for a token, looking every _BUDGET_POLL s:
# tokens of real sign-ins come back within an Okta round trip, those of made-up ids only at the budget's rate
_BUDGET_WAIT = 2.0
_BUDGET_POLL = 0.05


class SignIns:
    """One route's sign-ins at its app's ACS."""

    def __init__(self, route: Route, reader: SignInReader, *, saml_attribute: str, validator: SessionValidator,
                 storage: BindingStorage, http: Forwarder, app: AppSide, store: RevocationStore, metrics: Metrics,
                 unknown_ids: Budget, trusted_proxies: Sequence[IPNetwork] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self._route, self._reader, self._attribute = route, reader, saml_attribute
        self._validator, self._storage, self._http, self._app = validator, storage, http, app
        self._store, self._metrics, self._clock = store, metrics, clock
        self._unknown_ids, self._trusted = unknown_ids, tuple(trusted_proxies)
        self._warned = 0.0

    async def __call__(self, request: web.Request, for_app: str) -> web.StreamResponse:
        """Forward the ACS POST untouched; once the app has accepted the assertion (it answers with a new session
        cookie), check the assertion's Okta session and bind. Okta is asked nothing before: an unsigned POST costs
        no Okta call. The gateway reads the assertion only when it can read the form as the app does (saml.py).

        Some apps answer a refused assertion with a new session all the same (a servlet app's redirect to its error
        page, PHP's session_start), so an id Okta must be asked about spends a token of the shared budget and one
        of the client's (`_unknown_ids`), given back when Okta knows the session: real sign-ins cost nothing net,
        made-up ids at most the budget. A sign-in that finds the budget spent waits a moment for a token (real
        sign-ins in a burst, from one office's address, give theirs back as soon as Okta answers); past that,
        Okta is not asked and nothing is bound."""
        length = request.content_length
        if length is None or length > MAX_FORM_BYTES:
            self._metrics.sign_ins.get(self._route.name, "unreadable").inc()
            return await self._http(request, self._route, cookie=for_app)
        await continue_if_expected(request)
        body = await request.read()
        headers = request.headers
        refused = acs_post_refusal(body, headers.getall("Content-Type", ()), headers.getall("Content-Encoding", ()),
                                   request.rel_url.raw_query_string)
        signed_in = None if refused else self._reader.read_sign_in(body, headers.get("Content-Type", ""))
        now = self._clock()

        async def bind(response: web.StreamResponse) -> None:
            fresh = self._fresh_app_cookie(response, now)
            if fresh is None or response.status >= 400:  # the app did not accept the assertion
                self._metrics.sign_ins.get(self._route.name, "refused_by_app").inc()
                return
            if refused is not None or signed_in is None or signed_in.session_id is None:
                outcome = unbindable_sign_in(refused, signed_in)
                self._metrics.sign_ins.get(self._route.name, outcome).inc()
                self._warn_unbindable(outcome)
                return
            client = self._spends_budget(request, signed_in.session_id)
            if client is not None and not await self._spend_budget(client):
                self._metrics.sign_ins.get(self._route.name, "over_budget").inc()
                self._warn_unbindable("over_budget")
                return
            validation = await self._validator.validate(signed_in.session_id, self._route.grace)
            if client is not None and validation.verdict is Verdict.ALIVE:
                self._unknown_ids.give_back(client)  # Okta knows it: a real sign-in costs nothing
            s = validation.session
            outcome = sign_in_outcome(SignInFacts(
                name_id=signed_in.name_id, okta=validation.view, created_at=s.created_at if s else None,
                okta_ended_before=self._okta_ended_before(s.user_id, s.login) if s else 0.0))
            self._metrics.sign_ins.get(self._route.name, outcome).inc()
            if outcome != "bound" or s is None:
                self._warn_unbindable(outcome)
                return
            fingerprint = self._storage.codec.fingerprint(*fresh)
            self._storage.write(request, response, Binding(s.id, s.user_id, s.login, fingerprint, now, now))

        return await self._http(request, self._route, body=body, cookie=for_app, before_answer=bind)

    async def _spend_budget(self, client: str) -> bool:
        """A token of the budget of unknown ids for `client`, waiting at most `_BUDGET_WAIT` for one."""
        deadline = time.monotonic() + _BUDGET_WAIT
        while not self._unknown_ids.take(client, time.monotonic()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_BUDGET_POLL)
        return True

    def _spends_budget(self, request: web.Request, session_id: str) -> str | None:
        """The client whose budget a lookup of this id spends, or None when it would not ask Okta (the cache knows
        the id, or a lookup of it is under way, or it is no Okta id)."""
        if not self._validator.asks_okta(session_id):
            return None
        return client_address(request.remote, request.headers.items(), self._trusted)

    def _fresh_app_cookie(self, response: web.StreamResponse, now: float) -> tuple[str, str] | None:
        for header in response.headers.getall("Set-Cookie", ()):
            set_cookie = read_set_cookie(header, now)
            if set_cookie is not None and not set_cookie.expired and self._app.is_app_cookie(set_cookie.name):
                self._app.learn(set_cookie)
                return set_cookie.name, set_cookie.value
        return None

    def _warn_unbindable(self, outcome: str) -> None:
        now = time.monotonic()
        if now - self._warned < _WARN_EVERY:
            return
        self._warned = now
        hint = {"no_session_attribute": f"the SAML Response carries no {self._attribute}"
                                        " attribute (add an attribute statement with session.id to the Okta app)",
                "login_mismatch": "the Okta session belongs to another login than the assertion's NameID",
                "unreadable": "the SAML Response could not be read (encrypted, signed twice or malformed)",
                "over_budget": "more sign-ins named session ids unknown to the cache than [okta] "
                               "unknown_ids_per_second (all clients) or unknown_ids_per_client allow, so Okta was "
                               "not asked (forged ACS POSTs the app answered with a new session, or many sign-ins "
                               "at once from one address)"}
        if outcome.startswith("ambiguous_"):
            hint[outcome] = (f"the ACS POST could be read two ways ({outcome[10:].replace('_', ' ')}): a client "
                             "other than a browser, or an attempt to have the gateway read another assertion than "
                             "the app")
        log.warning("route %s: an app session began that cannot be bound to an Okta session: %s", self._route.name,
                    hint.get(outcome, outcome.replace("_", " ")))

    def _okta_ended_before(self, user_id: str, login: str) -> float:
        """Before when Okta ended every session of the user, as the revocation store was told."""
        store = self._store
        return max((store.okta_ended_before(key) for key in user_keys(user_id, login)), default=0.0)


def unknown_id_budget(okta: OktaSettings) -> Budget:
    """The gateway's budget of Okta lookups of ids the cache does not know, shared by its routes: each bucket holds
    two seconds' worth (at least one), so that a client may have two sign-ins at Okta at once."""
    return Budget(burst=max(1.0, 2 * okta.unknown_ids_per_client), per_second=okta.unknown_ids_per_client,
                  shared_burst=max(1.0, 2 * okta.unknown_ids_per_second), shared_per_second=okta.unknown_ids_per_second,
                  now=time.monotonic())
