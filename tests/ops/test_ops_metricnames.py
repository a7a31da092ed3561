"""Extracting metric names from PromQL and matching them against an exposition."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spark.runtime.evidence.metricnames import (
    dashboard_exprs,
    exposed_names,
    metric_names,
    missing_names,
    rule_exprs,
    used_metric_names,
)
from spark.runtime.metrics import Metrics


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("spark_ws_connected == 0", {"spark_ws_connected"}),
        ('sum by (reason) (increase(spark_order_rejections_total{reason="kill_switch"}[5m]))',
         {"spark_order_rejections_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(spark_order_place_ack_seconds_bucket[5m])))",
         {"spark_order_place_ack_seconds_bucket"}),
        ("rate(process_cpu_seconds_total[1m]) / process_resident_memory_bytes",
         {"process_cpu_seconds_total", "process_resident_memory_bytes"}),
        # A label value that looks like a metric is not one.
        ('spark_actor_up{actor="spark_writer_x", job=~"spark_.*"}', {"spark_actor_up"}),
        ("label_values(spark_actor_up{job=~\"$job\"}, instance)", {"spark_actor_up"}),
        # Grafana variables, Prometheus' own series and functions are not runtime metrics.
        ('up{job="spark-runtime"} == 0 or absent(up{job="spark-runtime"})', set()),
        ("sum(rate(spark_live_fills_total[$__rate_interval])) * $spark_factor",
         {"spark_live_fills_total"}),
        ("time() - process_start_time_seconds", {"process_start_time_seconds"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exposed_names_cover_what_prometheus_stores() -> None:
    exposed = exposed_names(Metrics(process=True).exposition().decode())
    # Counters as _total, histograms as buckets/sum/count, gauges as they are ...
    assert {"spark_live_fills_total", "spark_order_place_ack_seconds_bucket",
            "spark_order_place_ack_seconds_sum", "spark_order_place_ack_seconds_count",
            "spark_ws_connected", "process_cpu_seconds_total",
            "process_resident_memory_bytes"} <= exposed
    # ... labelled families without a sample yet included ...
    assert "spark_order_rejections_total" in exposed
    assert "spark_actor_restarts_total" in exposed
    # ... and a counter's bare family name is not a series.
    assert "spark_live_fills" not in exposed


def test_missing_names_finds_typos() -> None:
    text = Metrics(process=False).exposition().decode()
    used = {"spark_live_fills_total", "spark_live_fill_total", "process_cpu_seconds_total"}
    # process=False: no process collector, so its metric is missing too.
    assert missing_names(used, text) == ["process_cpu_seconds_total", "spark_live_fill_total"]


def test_dashboard_and_rule_exprs() -> None:
    dashboard = {
        "panels": [
            {"id": 1, "type": "row", "title": "r", "panels": [
                {"id": 2, "title": "nested", "targets": [{"expr": "spark_a"}]}]},
            {"id": 3, "title": "p", "targets": [{"expr": "spark_b"}, {"refId": "no expr"}]},
        ],
        "templating": {"list": [
            {"name": "x", "type": "query", "query": {"query": "label_values(spark_c, job)"}},
            {"name": "y", "type": "query", "query": "label_values(spark_d, instance)"},
            {"name": "DS_PROMETHEUS", "type": "datasource", "query": "prometheus"},
        ]},
    }
    assert [expr for _, expr in dashboard_exprs(dashboard)] == [
        "spark_b", "spark_a", "label_values(spark_c, job)", "label_values(spark_d, instance)"]
    rules = {"groups": [{"rules": [{"alert": "A", "expr": "spark_a > 1"},
                                   {"record": "job:b", "expr": "sum(spark_b)"}]}]}
    assert list(rule_exprs(rules)) == [("A", "spark_a > 1"), ("job:b", "sum(spark_b)")]


def test_used_metric_names_of_the_dashboards_folder(dashboards: Path, exposition: str) -> None:
    found = used_metric_names(dashboards, yaml.safe_load)
    files = {where.split(":", 1)[0] for where in found}
    assert files == {"alerts.yml", *(p.name for p in dashboards.glob("*.json"))}
    assert "alerts_test.yml" not in files  # a test file, not rules
    assert missing_names(set().union(*found.values()), exposition) == []
    assert not any(where.startswith("alerts.yml") for where in used_metric_names(dashboards))
