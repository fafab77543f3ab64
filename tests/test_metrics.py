"""The gateway's metrics (gateway/metrics.py): lock-free Counts and Timings collected as Prometheus counters and
histograms, a registry per gateway, one prefix, the fixed label values made up front, and what `value()` and the
text exposition say."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import (
    LOOKUP_RESULTS,
    OKTA_OPERATIONS,
    OKTA_OUTCOMES,
    PREFIX,
    UPSTREAM_BUCKETS,
    Count,
    Counts,
    Metrics,
    Timings,
    TimingsByValue,
)


def exposition(metrics: Metrics) -> dict[str, Metric]:
    """The metric families a scrape of this registry reads, by name (as /metrics serves it)."""
    text = generate_latest(metrics.registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(metrics: Metrics, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = exposition(metrics)[family]
    return {tuple(sorted(s.labels.items())): s.value for s in found.samples if s.name == family + "_total"}


def test_a_count_adds_what_it_is_given():
    count = Count()
    assert count.value == 0.0
    count.inc()
    count.inc(2.5)
    assert count.value == 3.5


def test_counts_keep_one_count_per_label_values():
    counts = Counts("test_things", "Things", ("route",), CollectorRegistry())
    assert counts.get("hr") is counts.get("hr")
    assert counts.get("hr") is not counts.get("wiki")
    assert set(counts.children) == {("hr",), ("wiki",)}


def test_counts_are_scraped_as_a_prometheus_counter():
    metrics = Metrics()
    metrics.requests.get("hr").inc(3)
    metrics.requests.get("wiki").inc()
    family = exposition(metrics)["session_gateway_requests"]
    assert family.type == "counter" and family.documentation == "Requests proxied, by route"
    assert samples(metrics, "session_gateway_requests") == {(("route", "hr"),): 3.0, (("route", "wiki"),): 1.0}
    assert metrics.value("session_gateway_requests_total", route="hr") == 3.0


def test_a_count_with_several_labels_is_read_back_by_all_of_them():
    metrics = Metrics()
    metrics.decisions.get("hr", "end", "unbound").inc()
    metrics.decisions.get("hr", "forward", "ok").inc(5)
    assert metrics.value("session_gateway_session_decisions_total", route="hr", action="end", reason="unbound") == 1.0
    assert metrics.value("session_gateway_session_decisions_total", route="hr", action="forward", reason="ok") == 5.0
    assert metrics.value("session_gateway_session_decisions_total", route="hr", action="end", reason="ok") == 0.0


def test_value_is_zero_for_a_sample_that_was_never_made():
    metrics = Metrics()
    assert metrics.value("session_gateway_requests_total", route="nowhere") == 0.0
    assert metrics.value("session_gateway_no_such_metric_total") == 0.0


def test_each_gateway_has_a_registry_of_its_own():
    first, second = Metrics(), Metrics()  # a second one registers the same names without a clash
    first.requests.get("hr").inc()
    first.revocations.labels("event_hook").inc()
    assert first.registry is not second.registry
    assert second.value("session_gateway_requests_total", route="hr") == 0.0
    assert second.value("session_gateway_revocations_total", source="event_hook") == 0.0
    assert first.value("session_gateway_revocations_total", source="event_hook") == 1.0


def test_a_counts_name_is_taken_once_per_registry():
    metrics = Metrics()
    with pytest.raises(ValueError):
        Counts("session_gateway_requests", "again", ("route",), metrics.registry)


def test_the_fixed_label_values_are_scraped_before_anything_happened():
    metrics = Metrics()
    assert set(metrics.lookups) == set(LOOKUP_RESULTS)
    assert set(metrics.okta_calls) == set(itertools.product(OKTA_OPERATIONS, OKTA_OUTCOMES))
    assert set(metrics.okta_latency) == set(OKTA_OPERATIONS)
    assert samples(metrics, "session_gateway_validation_lookups") == {(("result", r),): 0.0 for r in LOOKUP_RESULTS}
    assert samples(metrics, "session_gateway_okta_calls") == {
        (("operation", op), ("outcome", out)): 0.0 for op, out in itertools.product(OKTA_OPERATIONS, OKTA_OUTCOMES)}


def test_the_made_up_front_children_count_under_their_own_labels():
    metrics = Metrics()
    metrics.lookups["coalesced"].inc(2)
    metrics.okta_calls[("get_user", "gone")].inc()
    assert metrics.value("session_gateway_validation_lookups_total", result="coalesced") == 2.0
    assert metrics.value("session_gateway_validation_lookups_total", result="hit") == 0.0
    assert metrics.value("session_gateway_okta_calls_total", operation="get_user", outcome="gone") == 1.0
    assert metrics.value("session_gateway_okta_calls_total", operation="get_session", outcome="gone") == 0.0


def test_okta_latency_is_a_histogram_per_operation_with_its_buckets():
    metrics = Metrics()
    metrics.okta_latency["get_session"].observe(0.03)
    metrics.okta_latency["get_session"].observe(7)
    value = metrics.value
    assert value("session_gateway_okta_latency_seconds_bucket", operation="get_session", le="0.025") == 0
    assert value("session_gateway_okta_latency_seconds_bucket", operation="get_session", le="0.05") == 1
    assert value("session_gateway_okta_latency_seconds_bucket", operation="get_session", le="5.0") == 1
    assert value("session_gateway_okta_latency_seconds_bucket", operation="get_session", le="10.0") == 2
    assert value("session_gateway_okta_latency_seconds_bucket", operation="get_session", le="+Inf") == 2
    assert value("session_gateway_okta_latency_seconds_count", operation="get_session") == 2
    assert value("session_gateway_okta_latency_seconds_sum", operation="get_session") == pytest.approx(7.03)
    assert value("session_gateway_okta_latency_seconds_count", operation="get_user") == 0


def test_the_gauges_say_the_last_value_set():
    metrics = Metrics()
    metrics.rate_limit_remaining.set(42)
    metrics.rate_limit_limit.set(600)
    metrics.cache_entries.set(3)
    metrics.cache_entries.set(1)
    assert metrics.value("session_gateway_okta_rate_limit_remaining") == 42
    assert metrics.value("session_gateway_okta_rate_limit_limit") == 600
    assert metrics.value("session_gateway_validation_cache_entries") == 1


def test_every_metric_is_the_gateways_and_documented():
    assert PREFIX == "session_gateway_"
    families = exposition(Metrics())
    assert len(families) >= 20
    for name, family in families.items():
        assert name.startswith(PREFIX), name
        assert family.documentation, name


def test_a_timing_counts_each_observation_in_the_first_bucket_it_fits_and_adds_it_to_the_sum():
    timings = Timings("test_seconds", "Seconds", ("route",), (0.001, 0.01, 1), CollectorRegistry())
    timing = timings.get("hr")
    assert timings.get("hr") is timing and timings.get("wiki") is not timing
    for seconds in (0.0002, 0.001, 0.005, 0.01, 0.5, 3.0):  # a bound is its bucket's ("le": at most)
        timing.observe(seconds)
    assert timing.counts == [2, 2, 1, 1]
    assert timing.sum == pytest.approx(3.5162)


def test_timings_are_scraped_exactly_as_a_prometheus_client_histogram_of_the_same_observations():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    timings = Timings("x_seconds", "Seconds", ("route",), UPSTREAM_BUCKETS, ours)
    histogram = Histogram("x_seconds", "Seconds", ["route"], buckets=UPSTREAM_BUCKETS, registry=theirs)
    for route, seconds in itertools.product(("hr", "wiki"), (0.0001, 0.0005, 0.003, 0.04, 0.9, 12, 60, 75)):
        timings.get(route).observe(seconds)
        histogram.labels(route).observe(seconds)
    ignored = ("x_seconds_created",)
    assert next(iter(ours.collect())).samples == [
        s for s in next(iter(theirs.collect())).samples if s.name not in ignored]
    text = generate_latest(ours).decode()
    assert 'x_seconds_bucket{le="0.0005",route="hr"} 2.0' in text
    assert 'x_seconds_bucket{le="+Inf",route="wiki"} 8.0' in text
    assert 'x_seconds_count{route="wiki"} 8.0' in text


def test_timings_refuse_buckets_out_of_order():
    with pytest.raises(ValueError, match="increasing"):
        Timings("y_seconds", "Seconds", (), (1.0, 0.5), CollectorRegistry())


def test_upstream_latency_buckets_reach_from_under_a_millisecond_to_the_default_read_timeout():
    assert UPSTREAM_BUCKETS[0] < 0.001 and UPSTREAM_BUCKETS[-1] >= 60
    assert list(UPSTREAM_BUCKETS) == sorted(set(UPSTREAM_BUCKETS))


def test_upstream_latency_is_a_histogram_by_route_and_errors_a_counter():
    metrics = Metrics()
    metrics.upstream_latency.get("hr").observe(0.002)
    metrics.upstream_errors.get("hr", "timeout").inc()
    value = metrics.value
    assert value("session_gateway_upstream_latency_seconds_bucket", route="hr", le="0.001") == 0
    assert value("session_gateway_upstream_latency_seconds_bucket", route="hr", le="0.0025") == 1
    assert value("session_gateway_upstream_latency_seconds_count", route="hr") == 1
    assert value("session_gateway_upstream_latency_seconds_sum", route="hr") == pytest.approx(0.002)
    assert value("session_gateway_upstream_errors_total", route="hr", error="timeout") == 1


def test_timings_by_value_make_each_child_once_through_the_family():
    timings = Timings("z_seconds", "Seconds", ("route",), (1.0,), CollectorRegistry())
    by_route = TimingsByValue(timings)
    assert by_route["hr"] is by_route["hr"] is timings.get("hr")
    by_route["wiki"].observe(2.0)
    assert timings.get("wiki").counts == [0, 1]


def test_the_readme_lists_every_metric_by_the_name_a_scrape_shows():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in readme, name
