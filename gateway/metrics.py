"""Counters and histograms, in one place, on a registry per gateway (so tests and workers never share one).

Names follow Prometheus conventions, all under one prefix (`PREFIX`), so that a scrape is one call to
`generate_latest(registry)` (the operator's /.gateway/metrics, and metrics_listener.py's for Prometheus).
Label values are fixed words or route names, never ids, logins or anything secret.

What the hot path touches on every proxied request is lockless and read at scrape time: counters (`Counts`: a
prometheus_client Counter takes a lock and costs about half a microsecond an increment) and the upstream latency
histogram (`Timings`: prometheus_client's Histogram.observe takes a lock for its sum and another for its bucket,
after a linear search of the buckets: 8,570 instructions under callgrind, where `Timing.observe` takes 2,010).
The event loop is the only writer of either.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

PREFIX = "session_gateway_"  # of every metric's name: the one place it is written

LOOKUP_RESULTS = ("hit", "refresh", "miss", "shared", "coalesced", "negative", "grace", "unavailable",
                  "invalid_id")
# What a local miss found in the fleet's shared cache (Redis): another replica's answer (hit), the one it waited
# for (waited), nothing, so this replica asked Okta for the fleet (claimed), a wait that reached its bound, a
# rate-limit hold, a value that does not parse (malformed), or no shared cache to ask (unavailable: Redis away).
SHARED_OUTCOMES = ("hit", "waited", "claimed", "wait_bound", "held", "malformed", "unavailable")
OKTA_OUTCOMES = ("ok", "gone", "credentials", "rate_limited", "unavailable", "blocked")
OKTA_OPERATIONS = ("get_session", "refresh_session", "close_session", "end_user_sessions", "get_user")
# A sidecar's upstream is an app on the same host or network: from a cached page under a millisecond to a report
# that takes tens of seconds (the default read_timeout is 60 s)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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


class Timing:
    """One histogram's buckets without a lock: the event loop is the only writer. `counts[i]` holds the
    observations above `bounds[i - 1]` and at most `bounds[i]` (the last one, those above every bound)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class Timings(Collector):
    """A family of `Timing`s by label values, collected as a Prometheus histogram (cumulative `le` buckets)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("buckets must be increasing")
        self._name, self._documentation, self._labels, self._bounds = name, documentation, labels, buckets
        self._les = [repr(float(b)) for b in buckets] + ["+Inf"]  # as prometheus_client's Histogram writes them
        self.children: dict[tuple[str, ...], Timing] = {}
        registry.register(self)

    def get(self, *values: str) -> Timing:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = Timing(self._bounds)
        return child

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, child in list(self.children.items()):
            running, buckets = 0, []
            for le, count in zip(self._les, child.counts, strict=True):
                running += count
                buckets.append((le, float(running)))
            family.add_metric(list(values), buckets, child.sum)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labels)


class TimingsByValue(dict[str, Timing]):
    """The children of a one-label `Timings` by their label value, each made on first use: the hot path's lookup
    is one dict subscript, with no tuple of values made and no call."""

    def __init__(self, timings: Timings) -> None:
        super().__init__()
        self._timings = timings

    def __missing__(self, value: str) -> Timing:
        child = self[value] = self._timings.get(value)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counts(PREFIX + "requests", "Requests proxied, by route", ("route",), self.registry)
        self.upstream_latency = Timings(
            PREFIX + "upstream_latency_seconds", "From sending a request upstream to the upstream's answer head, by "
            "route (connect and request body included; answers that came only)", ("route",), UPSTREAM_BUCKETS,
            self.registry)
        self.upstream_errors = Counts(PREFIX + "upstream_errors", "Requests the upstream did not answer, by route "
                                      "and what happened (timeout: 504, failed: 502)", ("route", "error"),
                                      self.registry)
        lookups = Counts(PREFIX + "validation_lookups", "Session validations by how they were answered",
                         ("result",), self.registry)
        self.lookups = {result: lookups.get(result) for result in LOOKUP_RESULTS}
        calls = Counter(PREFIX + "okta_calls", "Calls to the Okta API by operation and outcome",
                        ["operation", "outcome"], registry=self.registry)
        self.okta_calls = {(op, out): calls.labels(op, out) for op in OKTA_OPERATIONS for out in OKTA_OUTCOMES}
        latency = Histogram(PREFIX + "okta_latency_seconds", "Each HTTP attempt of an Okta API call, from sending "
                            "it to its whole answer read, by operation (failed attempts and retries included)",
                            ["operation"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.okta_latency = {op: latency.labels(op) for op in OKTA_OPERATIONS}
        self.rate_limit_remaining = Gauge(PREFIX + "okta_rate_limit_remaining",
                                          "X-Rate-Limit-Remaining of the last Okta answer", registry=self.registry)
        self.rate_limit_limit = Gauge(PREFIX + "okta_rate_limit_limit",
                                      "X-Rate-Limit-Limit of the last Okta answer", registry=self.registry)
        self.cache_entries = Gauge(PREFIX + "validation_cache_entries", "Entries in the validation cache",
                                   registry=self.registry)
        self.fail_open = Counter(PREFIX + "validation_outage_answers",
                                 "Lookups answered by a route's fail mode while Okta was unavailable", ["mode"],
                                 registry=self.registry)
        shared = Counts(PREFIX + "validation_shared", "Local cache misses by what the fleet's shared cache gave",
                        ("outcome",), self.registry)
        self.shared_lookups = {outcome: shared.get(outcome) for outcome in SHARED_OUTCOMES}

        self.decisions = Counts(PREFIX + "session_decisions", "Enforcement decisions by route, what was done and why",
                                ("route", "action", "reason"), self.registry)
        self.would_end = Counts(PREFIX + "session_observed_ends",
                                "Requests that enforce would have refused, forwarded in observe mode",
                                ("route", "reason"), self.registry)
        self.sign_ins = Counts(PREFIX + "sign_ins", "App sign-ins seen at the ACS, by outcome", ("route", "outcome"),
                               self.registry)
        self.okta_extensions = Counter(PREFIX + "okta_extensions", "Okta sessions refreshed on app activity",
                                       registry=self.registry)
        self.sockets_closed = Counter(PREFIX + "websockets_closed",
                                      "Open WebSockets closed because their session ended", registry=self.registry)

        self.revocations = Counter(PREFIX + "revocations", "Revocations acted on, by source", ["source"],
                                   registry=self.registry)
        self.revocation_latency = Histogram(
            PREFIX + "revocation_latency_seconds", "From the moment the source says a revocation happened to the "
            "moment the gateway acted on it", ["source"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.revoked_served = Histogram(
            PREFIX + "revoked_session_served_seconds", "How long a revoked session could still be served: from its "
            "revocation (the tombstone's time, or the user's watermark) to the first request of it this process "
            "refused, once per session and route", registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))

        self.hook_deliveries = Counter(PREFIX + "event_hook_deliveries", "Event hook deliveries by outcome",
                                       ["outcome"], registry=self.registry)
        self.hook_events = Counter(PREFIX + "event_hook_events", "Events of hook deliveries by what came of them",
                                   ["outcome"], registry=self.registry)

        self.store_up = Gauge(PREFIX + "store_up", "1 while the shared store (Redis) answers, 0 while it is away",
                              registry=self.registry)
        self.store_buffered = Gauge(PREFIX + "store_buffered_revocations", "Revocations taken by this process and "
                                    "not yet written to the shared store (Redis away)", registry=self.registry)
        self.store_replay_lag = Gauge(PREFIX + "store_replay_lag_seconds", "Age of the last revocation this process "
                                      "read from the fleet's stream when it read it", registry=self.registry)
        self.store_reloads = Counter(PREFIX + "store_reloads", "Whole-state reloads from the shared store (a gap too "
                                     "old to replay, or Redis back empty)", ["why"], registry=self.registry)

        self.config_reloads = Counter(PREFIX + "config_reloads", "Configuration reloads, by result (a failed one "
                                      "changed nothing)", ["result"], registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value, for tests and the status page."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
