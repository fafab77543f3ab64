"""What tests and benchmarks do to the org's API (latency, failures, 429s, hangs), and the rate-limit windows.

Both act on /api/v1/* only; the browser pages never fail on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass
class Faults:
    """Settable at any time; read by the API on every call.

    latency      seconds of real (not org-clock) time added before every answer
    fail_status  answer this status (500, 502, 503, …) with an Okta error body instead of the real answer,
    fail_count   for the next N calls, or every call while None; back to normal after the N-th
    rate_limited answer 429 E0000047 with X-Rate-Limit-Remaining 0 and the reset at the end of the current window
    hang         never answer while set (the request waits; clear it or call reset())
    """

    latency: float = 0.0
    fail_status: int | None = None
    fail_count: int | None = None
    rate_limited: bool = False
    hang: bool = False

    def reset(self) -> None:
        self.latency, self.fail_status, self.fail_count = 0.0, None, None
        self.rate_limited = self.hang = False

    def take_failure(self) -> int | None:
        """The status this call must fail with, if any; counts the call against fail_count."""
        status = self.fail_status
        if status is None:
            return None
        if self.fail_count is None:
            return status
        if self.fail_count <= 0:
            self.fail_status = self.fail_count = None
            return None
        self.fail_count -= 1
        if self.fail_count == 0:
            self.fail_status = self.fail_count = None
        return status


@dataclass(frozen=True, slots=True)
class RateDecision:
    """One call's X-Rate-Limit-* values, and whether it may go through."""

    limit: int
    remaining: int
    reset: int  # UTC epoch seconds
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(self.remaining),
            "X-Rate-Limit-Reset": str(self.reset),
        }


class RateLimiter:
    """Per-bucket windows of 60 s on the org clock, each starting at the first call after the previous one ended.

    Okta counts per endpoint group ("bucket"); the org uses the first path segment after /api/v1 (sessions,
    authn, users), so browser calls to /api/v1/sessions/me share the gateway's /api/v1/sessions budget, and a
    call over the limit does not use up more of it.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}  # bucket -> (window start, calls counted)

    def take(self, bucket: str, now: float, *, force_limited: bool = False) -> RateDecision:
        start, used = self._windows.get(bucket, (now, 0))
        if now >= start + WINDOW_SECONDS:
            start, used = now, 0
        reset = math.ceil(start + WINDOW_SECONDS)
        if force_limited or used >= self.per_minute:
            self._windows[bucket] = (start, used)
            return RateDecision(self.per_minute, 0, reset, False)
        used += 1
        self._windows[bucket] = (start, used)
        return RateDecision(self.per_minute, self.per_minute - used, reset, True)
