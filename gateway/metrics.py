"""Counters and histograms, in one place, on a registry per gateway (so tests and workers never share one).

Names follow Prometheus conventions so that a /metrics endpoint is one call to `generate_latest(registry)`.
Label values are fixed words or route names, never ids, logins or anything secret.

Counters bumped on every proxied request (validations, decisions) are plain numbers read at scrape time
(`Counts`): a prometheus_client Counter takes a lock and costs about half a microsecond an increment, which the hot
path cannot afford several times a request.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LOOKUP_RESULTS = ("hit", "refresh", "miss", "shared", "coalesced", "negative", "grace", "unavailable",
                  "invalid_id")
# What a local miss found in the fleet's shared cache (Redis): another replica's answer (hit), the one it waited
# for (waited), nothing, so this replica asked Okta for the fleet (claimed), a wait that reached its bound, a
# rate-limit hold, a value that does not parse (malformed), or no shared cache to ask (unavailable: Redis away).
SHARED_OUTCOMES = ("hit", "waited", "claimed", "wait_bound", "held", "malformed", "unavailable")
OKTA_OUTCOMES = ("ok", "gone", "credentials", "rate_limited", "unavailable", "blocked")
OKTA_OPERATIONS = ("get_session", "refresh_session", "close_session", "end_user_sessions", "get_user")


class Count:
    """A counter without a lock: the event loop is the only writer."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Counts(Collector):
    """A family of `Count`s by label values, collected as a Prometheus counter."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], registry: CollectorRegistry) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self.children: dict[tuple[str, ...], Count] = {}
        registry.register(self)

    def get(self, *values: str) -> Count:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = Count()
        return child

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, child in list(self.children.items()):
            family.add_metric(list(values), child.value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labels)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counts("gateway_requests", "Requests proxied, by route", ("route",), self.registry)
        lookups = Counts("gateway_validation_lookups", "Session validations by how they were answered",
                         ("result",), self.registry)
        self.lookups = {result: lookups.get(result) for result in LOOKUP_RESULTS}
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
        shared = Counts("gateway_validation_shared", "Local cache misses by what the fleet's shared cache gave",
                        ("outcome",), self.registry)
        self.shared_lookups = {outcome: shared.get(outcome) for outcome in SHARED_OUTCOMES}

        self.decisions = Counts("gateway_session_decisions", "Enforcement decisions by route, what was done and why",
                                ("route", "action", "reason"), self.registry)
        self.would_end = Counts("gateway_session_observed_ends",
                                "Requests that enforce would have refused, forwarded in observe mode",
                                ("route", "reason"), self.registry)
        self.sign_ins = Counts("gateway_sign_ins", "App sign-ins seen at the ACS, by outcome", ("route", "outcome"),
                               self.registry)
        self.okta_extensions = Counter("gateway_okta_extensions", "Okta sessions refreshed on app activity",
                                       registry=self.registry)
        self.sockets_closed = Counter("gateway_websockets_closed", "Open WebSockets closed because their session ended",
                                      registry=self.registry)

        self.revocations = Counter("gateway_revocations", "Revocations acted on, by source", ["source"],
                                   registry=self.registry)
        self.revocation_latency = Histogram(
            "gateway_revocation_latency_seconds", "From the moment the source says a revocation happened to the "
            "moment the gateway acted on it", ["source"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.revoked_served = Histogram(
            "gateway_revoked_session_served_seconds", "How long a revoked session was still served: from the "
            "revocation's source time to the first refused request of it", registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))

        self.hook_deliveries = Counter("gateway_event_hook_deliveries", "Event hook deliveries by outcome",
                                       ["outcome"], registry=self.registry)
        self.hook_events = Counter("gateway_event_hook_events", "Events of hook deliveries by what came of them",
                                   ["outcome"], registry=self.registry)

        self.store_up = Gauge("gateway_store_up", "1 while the shared store (Redis) answers, 0 while it is away",
                              registry=self.registry)
        self.store_buffered = Gauge("gateway_store_buffered_revocations", "Revocations taken by this process and "
                                    "not yet written to the shared store (Redis away)", registry=self.registry)
        self.store_replay_lag = Gauge("gateway_store_replay_lag_seconds", "Age of the last revocation this process "
                                      "read from the fleet's stream when it read it", registry=self.registry)
        self.store_reloads = Counter("gateway_store_reloads", "Whole-state reloads from the shared store (a gap too "
                                     "old to replay, or Redis back empty)", ["why"], registry=self.registry)

        self.config_reloads = Counter("gateway_config_reloads", "Configuration reloads, by result (a failed one "
                                      "changed nothing)", ["result"], registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value, for tests and the status page."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
