"""The gateway's metrics (gateway/metrics.py): lock-free Counts collected as Prometheus counters, a registry per
gateway, the fixed label values made up front, and what `value()` and the text exposition say."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import LOOKUP_RESULTS, OKTA_OPERATIONS, OKTA_OUTCOMES, PREFIX, Count, Counts, Metrics


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
