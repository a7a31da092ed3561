"""Helpers shared by the operations tests: a sample scrape and a package built from it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from spark.config.sample import render_sample
from spark.runtime.evidence import build_package, compute_slos
from spark.runtime.metrics import Metrics

BUILT_AT = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.UTC)


def sample_metrics() -> str:
    metrics = Metrics(process=False)
    for seconds in (0.05, 0.1, 0.2, 0.3):
        metrics.order_place_ack_seconds.observe(seconds)
        metrics.event_to_db_seconds.observe(seconds / 10)
    metrics.exchange_requests_total.labels("order", "200").inc(40)
    metrics.ws_connected.labels("user").set(1)
    return metrics.exposition().decode()


def make_package(out: Path, **overrides: object) -> Path:
    metrics_text = sample_metrics()
    inputs: dict[str, object] = {
        "health": {"status": "ok", "kill_switch": False, "database": {"ok": True}},
        "metrics_text": metrics_text,
        "audit": [{"time_ms": 1, "actor": "admin:fp-1a2b", "action": "POST /api/private/orders",
                   "target": "spk-1", "result": "200", "detail": {}}],
        "trades_csv_chunks": [b"id,symbol,price,qty\r\n", b"1,BTCUSDT,45000.5,0.001\r\n",
                              b"2,ETHUSDT,2500,0.01\r\n"],
        "config_redacted_toml": render_sample(),
        "slo": compute_slos(metrics_text),
        "now": BUILT_AT,
    }
    inputs.update(overrides)
    return build_package(out, **inputs)  # type: ignore[arg-type]
