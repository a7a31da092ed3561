"""The runbook SLOs from one scrape: pass, fail and "no data" (never a pass)."""

from __future__ import annotations

import math

import pytest

from spark.runtime.evidence import SloResult, SloTargets, compute_slos, histogram_quantile
from spark.runtime.metrics import Metrics

NAMES = ["order_place_ack_p95", "event_to_db_p95", "venue_5xx_ratio", "venue_429_ratio",
         "ingest_lag_p99", "websocket_connected", "circuit_breaker_closed", "kill_switch_off",
         "drift_gate_open"]
INF = math.inf


def by_name(results: list[SloResult]) -> dict[str, SloResult]:
    assert [r.name for r in results] == NAMES
    return {r.name: r for r in results}


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # All observations in (0.8, 1]: interpolate inside that bucket (promtool agrees: 990 ms).
        (0.95, [(0.5, 0), (0.8, 0), (1.0, 10), (INF, 10)], 0.99),
        # The lowest bucket interpolates from 0.
        (0.5, [(0.1, 10), (INF, 10)], 0.05),
        # A rank in +Inf answers the highest finite bound.
        (0.99, [(0.1, 1), (0.2, 2), (INF, 100)], 0.2),
        # Unordered input, several buckets.
        (0.5, [(INF, 4), (0.3, 3), (0.1, 1), (0.2, 2)], 0.2),
        (0.75, [(0.1, 1), (0.2, 2), (0.3, 3), (INF, 4)], 0.3),
        # A torn scrape where a higher bucket counts less: repaired like Prometheus.
        (0.5, [(0.1, 5), (0.2, 4), (INF, 10)], 0.1),
    ],
)
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]],
                            expected: float) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize("buckets", [[], [(INF, 0)], [(0.1, 0), (INF, 0)], [(0.1, 1), (0.2, 2)]])
def test_histogram_quantile_without_data(buckets: list[tuple[float, float]]) -> None:
    assert histogram_quantile(0.95, buckets) is None


def test_histogram_quantile_rejects_a_bad_quantile() -> None:
    with pytest.raises(ValueError):
        histogram_quantile(1.5, [(0.1, 1), (INF, 1)])


def healthy() -> Metrics:
    m = Metrics(process=False)
    for _ in range(100):
        m.order_place_ack_seconds.observe(0.15)
        m.event_to_db_seconds.observe(0.004)
        m.ingest_lag_seconds.observe(0.02)
    m.exchange_requests_total.labels("order", "200").inc(995)
    m.exchange_requests_total.labels("order", "503").inc(5)  # exactly 0.5 %: still within
    m.exchange_requests_total.labels("account", "429").inc(0)
    m.ws_connected.labels("user").set(1)
    m.ws_connected.labels("market").set(1)
    return m


def test_everything_passes() -> None:
    results = by_name(compute_slos(healthy().exposition().decode()))
    assert all(r.passed is True for r in results.values()), results
    ack = results["order_place_ack_p95"]
    assert (ack.target, ack.unit, ack.op) == (800.0, "ms", "<=")
    assert ack.measured is not None and 100 < ack.measured <= 200  # in the (0.1, 0.2] bucket
    assert "100 observations" in ack.note
    assert results["venue_5xx_ratio"].measured == pytest.approx(0.5)
    assert results["venue_5xx_ratio"].target == pytest.approx(0.5)
    assert results["venue_429_ratio"].measured == 0
    assert results["websocket_connected"].note == "all connected: market, user"


def test_everything_fails() -> None:
    m = Metrics(process=False)
    for _ in range(100):
        m.order_place_ack_seconds.observe(0.9)
        m.event_to_db_seconds.observe(0.4)
        m.ingest_lag_seconds.observe(30.0)  # beyond the last finite bucket (10 s)
    m.exchange_requests_total.labels("order", "200").inc(90)
    m.exchange_requests_total.labels("order", "502").inc(4)
    m.exchange_requests_total.labels("order", "429").inc(6)
    m.ws_connected.labels("user").set(0)
    m.ws_connected.labels("market").set(1)
    m.circuit_breaker_state.set(2)
    m.kill_switch_engaged.set(1)
    m.drift_gate_open.set(0)
    results = by_name(compute_slos(m.exposition().decode()))
    assert [name for name, r in results.items() if r.passed is not False] == []
    assert results["venue_5xx_ratio"].measured == pytest.approx(4.0)
    assert results["venue_429_ratio"].measured == pytest.approx(6.0)
    assert results["websocket_connected"].note == "disconnected: user"
    assert results["circuit_breaker_closed"].note == "half-open"
    assert results["kill_switch_off"].note == "engaged"
    assert results["drift_gate_open"].note == "closed"
    assert "highest finite bucket" in results["ingest_lag_p99"].note


def test_an_idle_runtime_has_no_data_rather_than_a_pass() -> None:
    results = by_name(compute_slos(Metrics(process=False).exposition().decode()))
    for name in ("order_place_ack_p95", "event_to_db_p95", "venue_5xx_ratio",
                 "venue_429_ratio", "ingest_lag_p99", "websocket_connected"):
        assert results[name].passed is None, name
        assert results[name].measured is None, name
        assert results[name].note.startswith("no data"), name
        assert results[name].verdict == "no data"


def test_missing_metrics_are_no_data() -> None:
    results = by_name(compute_slos("# nothing scraped\n"))
    assert all(r.passed is None for r in results.values())
    assert "spark_order_place_ack_seconds not in the scrape" in results["order_place_ack_p95"].note
    assert "spark_circuit_breaker_state not reported" in results["circuit_breaker_closed"].note


def test_garbage_is_no_data_with_the_reason() -> None:
    results = compute_slos("this is {not an exposition\n")
    assert all(r.passed is None for r in results)
    assert all("could not be parsed" in r.note for r in results)


HAND_MADE = """\
# HELP spark_order_place_ack_seconds From send to ACK.
# TYPE spark_order_place_ack_seconds histogram
spark_order_place_ack_seconds_bucket{venue="a",le="0.5"} 10.0
spark_order_place_ack_seconds_bucket{venue="a",le="1.0"} 10.0
spark_order_place_ack_seconds_bucket{venue="a",le="+Inf"} 10.0
spark_order_place_ack_seconds_bucket{venue="b",le="0.5"} 0.0
spark_order_place_ack_seconds_bucket{venue="b",le="1.0"} 10.0
spark_order_place_ack_seconds_bucket{venue="b",le="+Inf"} 10.0
spark_order_place_ack_seconds_count{venue="a"} 10.0
spark_order_place_ack_seconds_sum{venue="a"} 2.0
# TYPE spark_exchange_requests_total counter
spark_exchange_requests_total{endpoint="order",status="200"} 97.0
spark_exchange_requests_total{endpoint="order",status="429"} 3.0
# TYPE spark_circuit_breaker_state gauge
spark_circuit_breaker_state 1.0
# TYPE spark_ws_connected gauge
spark_ws_connected{stream="user"} NaN
"""


def test_hand_made_exposition() -> None:
    results = by_name(compute_slos(HAND_MADE))
    ack = results["order_place_ack_p95"]
    # Label sets are summed per bucket (sum by (le)): 10 at 0.5, 20 at 1.0; p95 rank 19 →
    # 0.5 + 0.5 * 9/10 = 0.95 s.
    assert ack.measured == pytest.approx(950.0)
    assert ack.passed is False
    assert results["venue_429_ratio"].measured == pytest.approx(3.0)
    assert results["venue_429_ratio"].passed is False
    assert results["venue_5xx_ratio"].passed is True
    assert results["circuit_breaker_closed"].passed is False
    assert results["circuit_breaker_closed"].note == "open"
    assert results["websocket_connected"].passed is None  # NaN is not a measurement
    assert results["event_to_db_p95"].passed is None


def test_targets_are_configurable() -> None:
    text = healthy().exposition().decode()
    strict = SloTargets(place_ack_p95_s=0.1, venue_5xx_ratio=0.001)
    results = by_name(compute_slos(text, strict))
    assert results["order_place_ack_p95"].passed is False
    assert results["order_place_ack_p95"].target == pytest.approx(100.0)
    assert results["venue_5xx_ratio"].passed is False


def test_json_shape() -> None:
    [first, *_] = compute_slos(healthy().exposition().decode())
    assert set(first.as_json()) == {"name", "target", "op", "measured", "unit", "passed", "note"}
