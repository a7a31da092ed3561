"""The runbook's SLOs, measured from one Prometheus scrape of the runtime (``slo.json``).

An evidence package must say, without a Prometheus server at hand, whether the runtime met its
service levels: place→ACK p95 ≤ 800 ms, event→DB p95 ≤ 300 ms, venue 5xx ≤ 0.5 %, 429 ≤ 2 %,
ingest lag p99, websocket connected, circuit breaker closed, kill switch off, drift gate open.
Everything is computed from the text exposition alone (parsed with
``prometheus_client.parser``), so it is exactly what ``metrics.txt`` in the same package shows
and anybody can recompute it.

Counters and histograms in one scrape are cumulative since the runtime started, so latencies
and ratios here are over the process lifetime, not over a recent window like the alert rules.
Quantiles interpolate linearly inside a bucket, like PromQL's ``histogram_quantile``.

"No data" (a histogram without observations, no requests, a metric missing) is reported as
such — ``passed=None`` with a note — never as a pass: an idle runtime has not shown that it
meets its latency targets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["SloResult", "SloTargets", "compute_slos", "histogram_quantile"]

# A sample: its labels and value.
Sample = tuple[Mapping[str, str], float]

_STATUS_5XX = re.compile(r"^5\d\d$")
_CUMULATIVE = "cumulative since the runtime started (one scrape)"


@attrs.frozen
class SloResult:
    """One SLO: what was measured against which target, and whether it held.

    ``passed`` is None when there was nothing to measure; ``op`` says how ``measured`` is
    compared with ``target`` (``<=`` for latencies and ratios, ``==`` for states).
    """

    name: str
    target: float
    measured: float | None
    unit: str
    passed: bool | None
    note: str = ""
    op: str = "<="

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "op": self.op,
            "measured": self.measured,
            "unit": self.unit,
            "passed": self.passed,
            "note": self.note,
        }

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL`` or ``no data`` — for tables meant for people."""
        return "no data" if self.passed is None else ("pass" if self.passed else "FAIL")


@attrs.frozen
class SloTargets:
    """The runbook's targets.  Latencies in seconds, ratios as fractions (0.005 = 0.5 %).

    ``ingest_lag_p99_s`` has no runbook number yet; 1 s is this package's working value
    (exchange event time → frame received, so it includes clock offset to the venue).
    """

    place_ack_p95_s: float = 0.8
    event_to_db_p95_s: float = 0.3
    venue_5xx_ratio: float = 0.005
    venue_429_ratio: float = 0.02
    ingest_lag_p99_s: float = 1.0


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a cumulative histogram, as PromQL's ``histogram_quantile`` does it.

    ``buckets`` are ``(upper_bound, cumulative_count)`` pairs in any order and must include the
    ``+Inf`` bucket.  Returns None when there is nothing to compute (no ``+Inf`` bucket, fewer
    than two buckets, no observations).  A rank in the ``+Inf`` bucket returns the highest
    finite bound, the lowest bucket interpolates from 0 — both as Prometheus does.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Counts must not decrease with the bound (they can, across a torn scrape); Prometheus
    # repairs that the same way.
    fixed: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        fixed.append((bound, highest))
    total = fixed[-1][1]
    if total <= 0 or math.isnan(total):
        return None
    rank = q * total
    index = next((i for i, (_, c) in enumerate(fixed[:-1]) if c >= rank), len(fixed) - 1)
    if index == len(fixed) - 1:
        return fixed[-2][0]
    if index == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, below = (0.0, 0.0) if index == 0 else fixed[index - 1]
    end, count = fixed[index]
    in_bucket = count - below
    if in_bucket <= 0:
        return start
    return start + (end - start) * (rank - below) / in_bucket


class _Scrape:
    """Samples of one exposition, by sample name."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[Sample]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def get(self, name: str) -> list[Sample]:
        return [(labels, value) for labels, value in self.samples.get(name, [])
                if not math.isnan(value)]

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """Buckets summed over every label set but ``le`` (PromQL's ``sum by (le)``)."""
        summed: dict[float, float] = {}
        for labels, value in self.get(f"{histogram}_bucket"):
            bound = float(labels["le"])
            summed[bound] = summed.get(bound, 0.0) + value
        return list(summed.items())


def compute_slos(metrics_text: str, targets: SloTargets = SloTargets()) -> list[SloResult]:
    """Every runbook SLO from one scrape; each result says pass, fail or no data.

    A text that is not a Prometheus exposition yields "no data" for everything, with the
    parser's complaint as the note, rather than an exception: the package is still built and
    says why it cannot vouch for the SLOs.
    """
    try:
        scrape = _Scrape(metrics_text)
    except ValueError as exc:
        note = f"metrics text could not be parsed: {exc}"[:300]
        return [attrs.evolve(r, measured=None, passed=None, note=note)
                for r in compute_slos("", targets)]
    return [check(scrape, targets) for check in _CHECKS]


def _latency(name: str, histogram: str, q: float,
             target_s: Callable[[SloTargets], float]) -> Callable[[_Scrape, SloTargets], SloResult]:
    def check(scrape: _Scrape, targets: SloTargets) -> SloResult:
        target_ms = target_s(targets) * 1000.0
        buckets = scrape.buckets(histogram)
        value = histogram_quantile(q, buckets)
        if value is None:
            why = "no observations" if buckets else f"{histogram} not in the scrape"
            return SloResult(name, target_ms, None, "ms", None, f"no data: {why}")
        observations = int(max(count for _, count in buckets))
        note = f"{observations} observations, {_CUMULATIVE}"
        if value >= max(bound for bound, _ in buckets if not math.isinf(bound)):
            note += "; at or above the highest finite bucket, the true value may be higher"
        measured = round(value * 1000.0, 3)
        return SloResult(name, target_ms, measured, "ms", measured <= target_ms, note)

    return check


def _ratio(name: str, matches: Callable[[str], bool], what: str,
           target: Callable[[SloTargets], float]) -> Callable[[_Scrape, SloTargets], SloResult]:
    def check(scrape: _Scrape, targets: SloTargets) -> SloResult:
        target_pct = target(targets) * 100.0
        samples = scrape.get("spark_exchange_requests_total")
        total = sum(value for _, value in samples)
        if total <= 0:
            return SloResult(name, target_pct, None, "%", None,
                             "no data: no venue requests in the scrape")
        bad = sum(value for labels, value in samples if matches(labels.get("status", "")))
        measured = round(100.0 * bad / total, 4)
        note = f"{int(bad)} {what} of {int(total)} requests, {_CUMULATIVE}"
        return SloResult(name, target_pct, measured, "%", measured <= target_pct, note)

    return check


def _state(name: str, metric: str, want: float, labels_of: Mapping[float, str],
           ) -> Callable[[_Scrape, SloTargets], SloResult]:
    def check(scrape: _Scrape, targets: SloTargets) -> SloResult:
        samples = scrape.get(metric)
        if not samples:
            return SloResult(name, want, None, "state", None, f"no data: {metric} not reported",
                             "==")
        value = samples[0][1]
        note = labels_of.get(value, f"unknown state {value:g}")
        return SloResult(name, want, value, "state", value == want, note, "==")

    return check


def _websockets(scrape: _Scrape, targets: SloTargets) -> SloResult:
    samples = scrape.get("spark_ws_connected")
    if not samples:
        return SloResult("websocket_connected", 1.0, None, "state", None,
                         "no data: no websocket reported spark_ws_connected", "==")
    states = sorted((labels.get("stream", "?"), value) for labels, value in samples)
    down = [stream for stream, value in states if value != 1.0]
    measured = min(value for _, value in states)
    note = ("all connected: " if not down else "disconnected: ") + ", ".join(
        down or [stream for stream, _ in states])
    return SloResult("websocket_connected", 1.0, measured, "state", not down, note, "==")


_CHECKS: Sequence[Callable[[_Scrape, SloTargets], SloResult]] = (
    _latency("order_place_ack_p95", "spark_order_place_ack_seconds", 0.95,
             lambda t: t.place_ack_p95_s),
    _latency("event_to_db_p95", "spark_event_to_db_seconds", 0.95,
             lambda t: t.event_to_db_p95_s),
    _ratio("venue_5xx_ratio", lambda s: _STATUS_5XX.match(s) is not None, "5xx",
           lambda t: t.venue_5xx_ratio),
    _ratio("venue_429_ratio", lambda s: s == "429", "429", lambda t: t.venue_429_ratio),
    _latency("ingest_lag_p99", "spark_ingest_lag_seconds", 0.99,
             lambda t: t.ingest_lag_p99_s),
    _websockets,
    _state("circuit_breaker_closed", "spark_circuit_breaker_state", 0.0,
           {0.0: "closed", 1.0: "open", 2.0: "half-open"}),
    _state("kill_switch_off", "spark_kill_switch_engaged", 0.0,
           {0.0: "off", 1.0: "engaged"}),
    _state("drift_gate_open", "spark_drift_gate_open", 1.0, {1.0: "open", 0.0: "closed"}),
)
