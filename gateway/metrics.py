"""Counters and histograms, in one place, on a registry per gateway (so tests and workers never share one).

Names follow Prometheus conventions so that a /metrics endpoint is one call to `generate_latest(registry)`.
Label values are fixed words, never ids, logins or anything secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LOOKUP_RESULTS = ("hit", "refresh", "miss", "coalesced", "negative", "grace", "unavailable", "invalid_id")
OKTA_OUTCOMES = ("ok", "gone", "credentials", "rate_limited", "unavailable", "blocked")
OKTA_OPERATIONS = ("get_session", "refresh_session", "close_session", "end_user_sessions")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        lookups = Counter("gateway_validation_lookups", "Session validations by how they were answered",
                          ["result"], registry=self.registry)
        self.lookups = {result: lookups.labels(result) for result in LOOKUP_RESULTS}
        calls = Counter("gateway_okta_calls", "Calls to the Okta API by operation and outcome",
                        ["operation", "outcome"], registry=self.registry)
        self.okta_calls = {(op, out): calls.labels(op, out) for op in OKTA_OPERATIONS for out in OKTA_OUTCOMES}
        latency = Histogram("gateway_okta_latency_seconds", "Okta API call latency", ["operation"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.okta_latency = {op: latency.labels(op) for op in OKTA_OPERATIONS}
        self.rate_limit_remaining = Gauge("gateway_okta_rate_limit_remaining",
                                          "X-Rate-Limit-Remaining of the last Okta answer", registry=self.registry)
        self.rate_limit_limit = Gauge("gateway_okta_rate_limit_limit",
                                      "X-Rate-Limit-Limit of the last Okta answer", registry=self.registry)
        self.cache_entries = Gauge("gateway_validation_cache_entries", "Entries in the validation cache",
                                   registry=self.registry)
        self.fail_open = Counter("gateway_validation_outage_answers",
                                 "Lookups answered by a route's fail mode while Okta was unavailable", ["mode"],
                                 registry=self.registry)

        self._decisions = Counter("gateway_session_decisions", "Enforcement decisions by route, what was done and why",
                                  ["route", "action", "reason"], registry=self.registry)
        self._would_end = Counter("gateway_session_observed_ends",
                                  "Requests that enforce would have refused, forwarded in observe mode",
                                  ["route", "reason"], registry=self.registry)
        self._sign_ins = Counter("gateway_sign_ins", "App sign-ins seen at the ACS, by outcome", ["route", "outcome"],
                                 registry=self.registry)
        self.okta_extensions = Counter("gateway_okta_extensions", "Okta sessions refreshed on app activity",
                                       registry=self.registry)
        self.sockets_closed = Counter("gateway_websockets_closed", "Open WebSockets closed because their session ended",
                                      registry=self.registry)
        self._children: dict[tuple[str, ...], Counter] = {}

    def decision(self, route: str, action: str, reason: str) -> None:
        self._child(self._decisions, ("d", route, action, reason)).inc()

    def would_end(self, route: str, reason: str) -> None:
        self._child(self._would_end, ("w", route, reason)).inc()

    def sign_in(self, route: str, outcome: str) -> None:
        self._child(self._sign_ins, ("s", route, outcome)).inc()

    def _child(self, parent: Counter, key: tuple[str, ...]) -> Counter:
        """A labelled child, looked up once: `labels()` costs about a microsecond, a dict lookup far less."""
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = parent.labels(*key[1:])
        return child

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value, for tests and the status page."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
