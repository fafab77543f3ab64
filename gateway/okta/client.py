"""The Okta Sessions API client: one shared aiohttp ClientSession, the SSWS token, errors mapped by meaning.

Rules of this module:
- Every session or user id is checked (ids.py) before it is put into a URL; a bad one never leaves the process.
- Errors map by status and errorCode to what they mean for the gateway:
  404 E0000007 → `SessionGone`; 401 / 403 → `CredentialsRejected` (the gateway's token is wrong: nobody is logged
  out for it); 429 → `RateLimited`; network errors, timeouts, 5xx and anything unexpected → `OktaUnavailable`.
  A 404 without E0000007 is unexpected, not "gone": a misconfigured org URL must not log everyone out.
- Okta's rate limits are per endpoint family, so the client keeps one back-off per family (`Family`): session
  reads (GET /api/v1/sessions/{id}), session writes (DELETE, refresh) and user calls (/api/v1/users/…). A 429
  holds back only the family that answered it, until its X-Rate-Limit-Reset; the others go on. A flood of reads
  must never stop an app logout's DELETE or a Universal Logout's user calls. X-Rate-Limit-* are kept per family
  too; `rate_limit` (the headroom the cache stretches on) and the gauges are those of session reads.
- A fleet shares its holds: each 429 is told to `on_rate_limited` (the validator writes it to the shared store),
  and `hold_back` takes a hold another replica saw. Both move a family's hold only later, never earlier.
- Only idempotent calls (GET, DELETE) are retried, on failures that say nothing about the session (network,
  timeout, 5xx), with jittered backoff, all within one time budget per call.
- The token is never logged, put into an exception message or shown in a repr.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from yarl import URL

from ..metrics import Metrics
from .ids import is_login, is_session_id, is_user_id
from .model import MalformedAnswer, OktaSession, RateLimit, parse_rate_limit, parse_session

log = logging.getLogger("gateway.okta")

_PROBE_ID = "102sessiongatewayreadiness0"  # well-formed, never issued


class Family(enum.Enum):
    """The endpoint families whose rate limits Okta counts apart (okta-reference.md, "Rate limits")."""

    SESSION_READS = "session_reads"
    SESSION_WRITES = "session_writes"
    USERS = "users"


_FAMILY = {"get_session": Family.SESSION_READS, "refresh_session": Family.SESSION_WRITES,
           "close_session": Family.SESSION_WRITES, "end_user_sessions": Family.USERS, "get_user": Family.USERS}


class OktaError(Exception):
    """Base of the client's errors; messages never carry the token."""


class SessionGone(OktaError):
    """Okta does not know the session (ended, expired or never existed)."""


class UserUnknown(OktaError):
    """Okta does not know the user."""


class CredentialsRejected(OktaError):
    """Okta refused the gateway's own API token (401, 403): an operator must act; no user is logged out."""


class RateLimited(OktaError):
    def __init__(self, reset_at: float) -> None:
        super().__init__(f"Okta's rate limit is reached until {time.strftime('%H:%M:%S', time.gmtime(reset_at))}Z")
        self.reset_at = reset_at


class OktaUnavailable(OktaError):
    """Okta could not be reached or gave an answer that cannot be used."""


class InvalidId(OktaError):
    """The id is not an Okta id; it was not sent."""


class OktaClient:
    def __init__(
        self,
        org_url: URL,
        api_token: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.org_url = org_url.origin()
        self.__token = api_token
        self._timeout = timeout
        self._retries = retries
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        self.rate_limits: dict[Family, RateLimit] = {}  # the X-Rate-Limit-* of each family's last answer
        self._blocked: dict[Family, float] = dict.fromkeys(Family, 0.0)  # no call of the family before then
        self.on_rate_limited: list[Callable[[Family, float], None]] = []  # told of each 429: family, reset time
        self.credentials_ok: bool | None = None  # None until the first answer says

    def __repr__(self) -> str:
        return f"OktaClient({str(self.org_url)!r})"

    @property
    def rate_limit(self) -> RateLimit | None:
        """The headroom of session reads, the family every validation spends (the cache stretches on it)."""
        return self.rate_limits.get(Family.SESSION_READS)

    def blocked_until(self, family: Family) -> float:
        """Until when (epoch seconds) the family is held back after a 429; in the past when it is not."""
        return self._blocked[family]

    def hold_back(self, family: Family, until: float) -> None:
        """Send nothing of the family before `until` (epoch seconds): a 429 another replica of the fleet saw."""
        if until <= self._blocked[family] or until <= self._clock():
            return
        self._blocked[family] = until
        log.warning("Okta's rate limit for %s is reached (seen by another replica): none of them until %s",
                    family.value.replace("_", " "), time.strftime("%H:%M:%SZ", time.gmtime(until)))

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Accept": "application/json", "User-Agent": "session-gateway"},
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- the operations ---------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> OktaSession:
        _check(is_session_id(session_id), "session")
        status, body, _ = await self._call("get_session", "GET", f"/api/v1/sessions/{session_id}", idempotent=True)
        if status == 200:
            try:
                return parse_session(body)
            except MalformedAnswer as exc:
                self._count("get_session", "unavailable")
                raise OktaUnavailable(f"Okta answered an unusable Session: {exc}") from None
        raise self._error("get_session", status, body, gone=SessionGone)

    async def refresh_session(self, session_id: str) -> None:
        """Move the session's expiresAt as user activity would (Okta's idle timeout restarts)."""
        _check(is_session_id(session_id), "session")
        status, body, headers = await self._call(
            "refresh_session", "POST", f"/api/v1/sessions/{session_id}/lifecycle/refresh", idempotent=False,
            headers={"Prefer": "return=minimal"},
        )
        if status not in (200, 204):
            raise self._error("refresh_session", status, body, gone=SessionGone)

    async def close_session(self, session_id: str) -> bool:
        """End one session; False when Okta did not know it (already ended)."""
        _check(is_session_id(session_id), "session")
        status, body, _ = await self._call("close_session", "DELETE", f"/api/v1/sessions/{session_id}",
                                           idempotent=True)
        if status == 204:
            return True
        if status == 404 and _error_code(body) == "E0000007":
            self._count("close_session", "gone")
            return False
        raise self._error("close_session", status, body, gone=SessionGone)

    async def end_user_sessions(self, user_id: str, *, oauth_tokens: bool = False) -> None:
        """End every Okta session of the user (and, with oauth_tokens, revoke the tokens issued to them)."""
        _check(is_user_id(user_id), "user")
        path = f"/api/v1/users/{user_id}/sessions"
        status, body, _ = await self._call("end_user_sessions", "DELETE", path, idempotent=True,
                                           params={"oauthTokens": "true" if oauth_tokens else "false"})
        if status != 204:
            raise self._error("end_user_sessions", status, body, gone=UserUnknown)

    async def get_user(self, id_or_login: str) -> tuple[str, str]:
        """(user id, login) of a user named by id or login; UserUnknown when Okta has no such user."""
        _check(is_user_id(id_or_login) or is_login(id_or_login), "user")
        status, body, _ = await self._call("get_user", "GET", f"/api/v1/users/{id_or_login}", idempotent=True)
        if status == 200 and isinstance(body, dict):
            profile = body.get("profile")
            login = profile.get("login") if isinstance(profile, dict) else None
            if is_user_id(body.get("id")) and isinstance(login, str):
                return str(body["id"]), login
            raise OktaUnavailable("Okta answered an unusable User")
        raise self._error("get_user", status, body, gone=UserUnknown)

    async def check_credentials(self) -> bool | None:
        """Ask Okta about an id that cannot exist: 404 means our token is good, 401/403 that it is not.

        None when Okta could not say (unreachable, rate-limited).
        """
        try:
            await self.get_session(_PROBE_ID)
        except (SessionGone, CredentialsRejected):
            pass
        except OktaError:
            return None
        return self.credentials_ok

    # --- one call ----------------------------------------------------------------------------------------

    async def _call(
        self, operation: str, method: str, path: str, *, idempotent: bool,
        headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        if self._http is None:
            raise OktaUnavailable("the Okta client is not started")
        family = _FAMILY[operation]
        blocked_until = self._blocked[family]
        if blocked_until and self._clock() < blocked_until:
            self._count(operation, "blocked")
            raise RateLimited(blocked_until)
        deadline = time.monotonic() + self._timeout
        url = self.org_url.with_path(path, encoded=True)
        sent = {"Authorization": f"SSWS {self.__token}", **(headers or {})}
        attempt = 0
        answer_headers: Mapping[str, str]
        while True:
            started = time.monotonic()
            try:
                async with self._http.request(
                    method, url, headers=sent, params=params, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=max(deadline - started, 0.001)),
                ) as answer:
                    raw = await answer.read()
                    status, answer_headers = answer.status, answer.headers
                failure = f"HTTP {status}" if status >= 500 else None
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, raw, answer_headers, failure = 0, b"", {}, type(exc).__name__
            self._metrics.okta_latency[operation].observe(time.monotonic() - started)
            if failure is None:
                break
            attempt += 1
            backoff = random.uniform(0, min(1.0, 0.1 * 2**attempt))
            if not idempotent or attempt > self._retries or time.monotonic() + backoff >= deadline:
                self._count(operation, "unavailable")
                raise OktaUnavailable(f"Okta {operation} failed: {failure}")
            log.info("Okta %s failed (%s); retry %d of %d", operation, failure, attempt, self._retries)
            await asyncio.sleep(backoff)
        self._note_rate_limit(family, answer_headers)
        body = _json(raw)
        if status in (401, 403):
            self._credentials(False, status, body)
        elif status < 400 or status in (404, 429):
            self._credentials(True, status, body)
        if status < 400:
            self._count(operation, "ok")
        return status, body, answer_headers

    def _note_rate_limit(self, family: Family, headers: Mapping[str, str]) -> None:
        limit = parse_rate_limit(headers)
        if limit is None:
            return
        self.rate_limits[family] = limit
        if family is Family.SESSION_READS:  # the gauges (and the status page) show the family validation spends
            self._metrics.rate_limit_remaining.set(limit.remaining)
            self._metrics.rate_limit_limit.set(limit.limit)

    def _credentials(self, ok: bool, status: int, body: Any) -> None:
        if not ok and self.credentials_ok is not False:
            log.error("Okta refused the gateway's API token (HTTP %d %s): check [okta] api_token and its scopes; "
                      "until then no session can be validated and no user is logged out for it",
                      status, _error_code(body) or "")
        elif ok and self.credentials_ok is False:
            log.warning("Okta accepts the gateway's API token again")
        self.credentials_ok = ok

    def _error(self, operation: str, status: int, body: Any, *, gone: type[OktaError]) -> OktaError:
        code = _error_code(body)
        if status == 404 and code == "E0000007":
            self._count(operation, "gone")
            return gone(f"Okta does not know it ({code})")
        if status in (401, 403):
            self._count(operation, "credentials")
            return CredentialsRejected(f"Okta refused the gateway's API token (HTTP {status} {code or ''})".strip())
        if status == 429:
            family = _FAMILY[operation]
            limit, now = self.rate_limits.get(family), self._clock()
            reset = limit.reset_at if limit is not None and limit.reset_at > now else now + 60
            self._blocked[family] = max(self._blocked[family], reset)
            self._count(operation, "rate_limited")
            log.warning("Okta's rate limit for %s is reached: none of them until %s", family.value.replace("_", " "),
                        time.strftime("%H:%M:%SZ", time.gmtime(reset)))
            for listener in self.on_rate_limited:
                listener(family, reset)
            return RateLimited(reset)
        self._count(operation, "unavailable")
        return OktaUnavailable(f"Okta {operation} answered HTTP {status} {code or ''}".strip())

    def _count(self, operation: str, outcome: str) -> None:
        self._metrics.okta_calls[(operation, outcome)].inc()


def _check(ok: bool, kind: str) -> None:
    if not ok:
        raise InvalidId(f"not an Okta {kind} id; not sent")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _error_code(body: Any) -> str | None:
    code = body.get("errorCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
