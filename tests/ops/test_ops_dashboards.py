"""The Grafana dashboards: importable anywhere (datasource only through ``${DS_PROMETHEUS}``),
structurally sound, and built on metrics the runtime really exposes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spark.runtime.evidence.metricnames import dashboard_exprs, metric_names, missing_names

DS = "${DS_PROMETHEUS}"
FILES = sorted((Path(__file__).resolve().parents[2] / "dashboards").glob("*.json"))
# What the issue asks each dashboard to show, by metric.
REQUIRED = {
    "spark-runtime.json": {"spark_actor_up", "spark_actor_restarts_total",
                           "spark_mailbox_depth", "spark_loop_lag_seconds",
                           "process_cpu_seconds_total", "process_resident_memory_bytes"},
    "spark-orders.json": {"spark_live_orders_placed_total", "spark_live_fills_total",
                          "spark_live_partial_fills_total", "spark_order_rejections_total",
                          "spark_order_place_ack_seconds_bucket",
                          "spark_exchange_requests_total", "spark_exchange_used_weight"},
    "spark-streams.json": {"spark_ws_messages_total", "spark_ws_reconnect_total",
                           "spark_ws_connection_uptime_seconds", "spark_ingest_lag_seconds_bucket",
                           "spark_listenkey_keepalive_total", "spark_listenkey_renewals_total"},
    "spark-safety.json": {"spark_circuit_breaker_state", "spark_circuit_breaker_trips_total",
                          "spark_kill_switch_engaged", "spark_drift_price_bps",
                          "spark_paper_live_pnl_delta", "spark_drift_gate_open",
                          "spark_trading_state"},
    "spark-persistence.json": {"spark_event_to_db_seconds_bucket", "spark_writer_spooled_events",
                               "spark_export_rows_total"},
}


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        yield panel


def walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def test_the_five_dashboards_are_there() -> None:
    assert {p.name for p in FILES} == set(REQUIRED)


@pytest.fixture(params=FILES, ids=[p.name for p in FILES])
def dashboard(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    path: Path = request.param
    return path.name, load(path)


def test_current_schema_and_identity(dashboard: tuple[str, dict[str, Any]]) -> None:
    name, doc = dashboard
    assert doc["schemaVersion"] >= 39
    assert doc["uid"] == name.removesuffix(".json")
    assert doc["title"].startswith("Spark / ")
    assert doc["id"] is None  # an id would clash with whatever the target Grafana has
    assert "spark" in doc["tags"]


def test_datasource_is_an_input(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    [source] = [i for i in doc["__inputs"] if i["name"] == "DS_PROMETHEUS"]
    assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
    # Provisioned files skip __inputs; a datasource variable of the same name resolves it.
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"


def test_no_datasource_is_hard_coded(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    seen = 0
    for path, node in walk(doc):
        if isinstance(node, dict) and "datasource" in node:
            seen += 1
            source = node["datasource"]
            assert source == {"type": "prometheus", "uid": DS} or source == DS, (path, source)
        if path.endswith(".datasource.uid"):
            assert node == DS, (path, node)
    assert seen > 0


def test_every_panel_queries_prometheus(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    for panel in panels(doc):
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": DS}, where
        assert panel["targets"], where
        assert panel.get("description"), f"{where}: say what it shows"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": DS}, where
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), where


def test_panel_ids_are_unique(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    ids = [panel["id"] for panel in panels(doc)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_panels_do_not_overlap(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    cells: dict[tuple[int, int], int] = {}
    for panel in panels(doc):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["id"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {panel['id']}"
                cells[(x, y)] = panel["id"]


def test_panel_types_are_required(dashboard: tuple[str, dict[str, Any]]) -> None:
    _, doc = dashboard
    required = {r["id"] for r in doc["__requires"] if r["type"] == "panel"}
    used = {p["type"] for p in panels(doc) if p["type"] != "row"}
    assert used == required


def test_uses_the_required_metrics(dashboard: tuple[str, dict[str, Any]]) -> None:
    name, doc = dashboard
    used = set().union(*(metric_names(expr) for _, expr in dashboard_exprs(doc)))
    assert REQUIRED[name] <= used, REQUIRED[name] - used


def test_every_metric_is_exposed(dashboard: tuple[str, dict[str, Any]], exposition: str) -> None:
    _, doc = dashboard
    for where, expr in dashboard_exprs(doc):
        names = metric_names(expr)
        assert names, f"{where}: no runtime metric in {expr!r}"
        assert missing_names(names, exposition) == [], f"{where}: {expr}"
    for annotation in doc["annotations"]["list"]:
        assert annotation["datasource"] == {"type": "prometheus", "uid": DS}


def test_uids_and_titles_are_unique() -> None:
    docs = [load(path) for path in FILES]
    assert len({d["uid"] for d in docs}) == len(docs)
    assert len({d["title"] for d in docs}) == len(docs)


def test_readme_lists_every_dashboard(dashboards: Path) -> None:
    readme = (dashboards / "README.md").read_text()
    for path in FILES:
        assert f"`{path.name}`" in readme


def test_provisioning_points_at_the_mounted_folder(dashboards: Path) -> None:
    doc = yaml.safe_load((dashboards / "provisioning" / "dashboards.yml").read_text())
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    readme = (dashboards / "README.md").read_text()
    assert f"./dashboards:{path}" in readme, "README's mount example must match the provider"
    sources = yaml.safe_load(
        (dashboards / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert source["type"] == "prometheus"
