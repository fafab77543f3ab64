"""conf/grafana/session-gateway.json: an importable Grafana dashboard whose every query parses as PromQL and names
only metrics the gateway's registry has (a histogram's `_bucket`/`_count`/`_sum`, a counter's `_total`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.metrics_core import Metric

from gateway.metrics import PREFIX, Metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "conf" / "grafana" / "session-gateway.json"
# What Grafana puts in a query before it reaches Prometheus
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$route": ".*"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
            "summary": ("_count", "_sum", "")}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [p for p in found if p["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def served_names() -> set[str]:
    """Every sample name a scrape of a gateway's registry can show, by each family's type."""
    families: list[Metric] = list(Metrics().registry.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def metric_names(query: str) -> list[str]:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    names: list[str] = []
    promql_parser.walk(promql_parser.parse(query),
                       lambda node: names.append(node.name) if isinstance(node, promql_parser.VectorSelector) else None)
    return names


def test_the_dashboard_is_importable_json_for_a_prometheus_datasource():
    board = dashboard()
    assert board["title"] == "Session Gateway" and board["uid"] == "session-gateway"
    assert isinstance(board["schemaVersion"], int) and "id" not in board  # an import makes its own id
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["title"] and panel["description"] and panel["targets"], panel
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("query", queries())
def test_every_query_parses_and_names_only_the_gateways_metrics(query):
    names = metric_names(query)
    assert names, query
    served = served_names()
    for name in names:
        assert name.startswith(PREFIX) and name in served, (name, query)


def test_the_dashboard_shows_what_an_operator_watches():
    used = {name for query in queries() for name in metric_names(query)}
    for name in ("requests_total", "upstream_latency_seconds_bucket", "okta_latency_seconds_bucket",
                 "okta_calls_total", "okta_rate_limit_remaining", "okta_rate_limit_limit",
                 "validation_lookups_total", "session_decisions_total", "revocations_total",
                 "revoked_session_served_seconds_bucket", "store_up", "store_buffered_revocations",
                 "config_reloads_total"):
        assert PREFIX + name in used, name


def test_the_metric_names_seen_by_the_test_are_the_registrys():
    served = served_names()
    assert PREFIX + "upstream_latency_seconds_bucket" in served and PREFIX + "requests_total" in served
    assert PREFIX + "store_up" in served and PREFIX + "requests" not in served
    assert metric_names("sum(rate(a_total[$__rate_interval])) / on () b") == ["a_total", "b"]
