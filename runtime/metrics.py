"""Every Prometheus metric the runtime exposes, on a registry the runtime owns.

The names are fixed by CONTRACT §6 (dashboards and alert rules rely on them), so they are
declared in one place.  Each runtime instance builds one :class:`Metrics` on its own
:class:`~prometheus_client.CollectorRegistry` (never the global default registry), which keeps
tests that build several runtimes in one process independent.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

# Latency buckets in seconds: sub-millisecond resolution for in-process hops, up to the
# multi-second tail of a slow venue.
FAST_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
VENUE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0, 10.0,
)


class Metrics:
    """The runtime's metrics; attribute names mirror the metric names without ``spark_``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        # Orders
        self.live_orders_placed_total = Counter(
            "spark_live_orders_placed_total", "Orders acknowledged by the venue.", registry=r
        )
        self.live_fills_total = Counter(
            "spark_live_fills_total", "Fills (trades) received, each counted once.", registry=r
        )
        self.live_partial_fills_total = Counter(
            "spark_live_partial_fills_total",
            "Fills that left their order partially filled, each counted once.",
            registry=r,
        )
        self.order_rejections_total = Counter(
            "spark_order_rejections_total",
            "Orders rejected before or by the venue, by stable reason code.",
            ["reason"],
            registry=r,
        )
        self.order_place_ack_seconds = Histogram(
            "spark_order_place_ack_seconds",
            "From the router sending an order to the venue's acknowledgement.",
            buckets=VENUE_BUCKETS,
            registry=r,
        )
        self.trading_state = Gauge(
            "spark_trading_state", "0 active, 1 reducing, 2 halted.", registry=r
        )
        self.kill_switch_engaged = Gauge(
            "spark_kill_switch_engaged", "1 while the kill switch is engaged.", registry=r
        )

        # Persistence
        self.event_to_db_seconds = Histogram(
            "spark_event_to_db_seconds",
            "From an event entering the process to its database commit.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.writer_spooled_events = Gauge(
            "spark_writer_spooled_events",
            "Events waiting in the on-disk spool for the database.",
            registry=r,
        )
        self.export_rows_total = Counter(
            "spark_export_rows_total", "Rows streamed by trade exports.", registry=r
        )
        self.export_bytes_total = Counter(
            "spark_export_bytes_total", "Bytes streamed by trade exports.", registry=r
        )
        self.export_duration_seconds = Histogram(
            "spark_export_duration_seconds",
            "Duration of a trade export.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=r,
        )

        # Streams
        self.ingest_lag_seconds = Histogram(
            "spark_ingest_lag_seconds",
            "From the exchange's event time to the frame being received.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.ws_messages_total = Counter(
            "spark_ws_messages_total", "Websocket frames received, by stream.", ["stream"],
            registry=r,
        )
        self.ws_malformed_total = Counter(
            "spark_ws_malformed_total", "Websocket frames that could not be decoded.", ["stream"],
            registry=r,
        )
        self.ws_reconnect_total = Counter(
            "spark_ws_reconnect_total", "Websocket reconnects.", ["stream"], registry=r
        )
        self.ws_connected = Gauge(
            "spark_ws_connected", "1 while the websocket is connected.", ["stream"], registry=r
        )
        self.ws_connection_uptime_seconds = Gauge(
            "spark_ws_connection_uptime_seconds",
            "Seconds since the current websocket connection opened.",
            ["stream"],
            registry=r,
        )
        self.listenkey_keepalive_total = Counter(
            "spark_listenkey_keepalive_total",
            "Futures listenKey PUTs and spot re-subscriptions.",
            registry=r,
        )
        self.listenkey_renewals_total = Counter(
            "spark_listenkey_renewals_total",
            "New listenKeys and new spot subscriptions.",
            registry=r,
        )

        # Exchange
        self.exchange_requests_total = Counter(
            "spark_exchange_requests_total",
            "REST requests to the venue by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.exchange_used_weight = Gauge(
            "spark_exchange_used_weight",
            "Request weight used in the current minute, as the venue reports it.",
            registry=r,
        )

        # Safety
        self.circuit_breaker_state = Gauge(
            "spark_circuit_breaker_state", "0 closed, 1 open, 2 half-open.", registry=r
        )
        self.circuit_breaker_trips_total = Counter(
            "spark_circuit_breaker_trips_total", "Transitions into the open state.", registry=r
        )
        self.drift_price_bps = Gauge(
            "spark_drift_price_bps", "Last live-vs-paper fill price drift in bps.", registry=r
        )
        self.paper_live_pnl_delta = Gauge(
            "spark_paper_live_pnl_delta",
            "Running PnL of the live fills minus the paper shadow (quote currency).",
            registry=r,
        )
        self.drift_gate_open = Gauge(
            "spark_drift_gate_open", "1 while the drift gate is open.", registry=r
        )
        self.drift_gate_close_total = Counter(
            "spark_drift_gate_close_total", "Times the drift gate closed.", registry=r
        )
        self.drift_decision_seconds = Histogram(
            "spark_drift_decision_seconds",
            "From a live fill arriving to the drift gate's decision.",
            buckets=FAST_BUCKETS,
            registry=r,
        )

        # Process and actors
        self.actor_up = Gauge(
            "spark_actor_up", "1 while the actor is running.", ["actor"], registry=r
        )
        self.actor_restarts_total = Counter(
            "spark_actor_restarts_total", "Actor restarts by its supervisor.", ["actor"],
            registry=r,
        )
        self.mailbox_depth = Gauge(
            "spark_mailbox_depth", "Messages waiting in an actor's inbox.", ["actor"], registry=r
        )
        self.loop_lag_seconds = Gauge(
            "spark_loop_lag_seconds",
            "How late the event loop ran a task scheduled to wake now (last sample).",
            registry=r,
        )
        self.loop_lag_max_seconds = Histogram(
            "spark_loop_lag_sample_seconds",
            "Distribution of loop-lag samples.",
            buckets=FAST_BUCKETS,
            registry=r,
        )

        self.kill_switch_engaged.set(0)
        self.drift_gate_open.set(1)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


@attrs.frozen
class HistogramParts:
    """The counters inside an unlabelled ``prometheus_client`` histogram: its upper bounds
    (the last is +Inf), one counter per bucket, and the sum."""

    bounds: list[float]
    buckets: list[Any]
    total: Any


def histogram_parts(histogram: Any) -> HistogramParts | None:
    """What a bulk update adds to, or None when ``histogram`` is not what this expects.

    prometheus_client has no bulk observe and ``Histogram.observe`` takes a lock per counter;
    the hot paths (ingest lag per event, event→DB per record) count per bucket themselves and
    add the counts here.  These are the client library's private attributes, so anything else
    — a labelled parent, another version's layout, a stand-in — gets None and is observed
    value by value by the caller."""
    if not isinstance(histogram, Histogram) or getattr(histogram, "_labelnames", True):
        return None
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if not (
        isinstance(bounds, list) and isinstance(buckets, list) and bounds
        and len(bounds) == len(buckets) and bounds[-1] == math.inf
        and all(hasattr(b, "inc") for b in buckets) and hasattr(total, "inc")
    ):
        return None
    return HistogramParts(list(bounds), list(buckets), total)
