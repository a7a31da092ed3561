"""The drift gate: paper shadow, signed drift, PnL delta, thresholds, hysteresis, operator."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.config.schema import DriftGateConfig
from spark.core.drift import DriftGate, GateCause, GateState, paper_price
from spark.core.userdata_errors import DriftInputError
from spark.exchange.events import ExecutionEvent

D = Decimal


def gate(**kw: object) -> DriftGate:
    base: dict[str, object] = {"max_drift_bps": D(50), "max_pnl_delta": D(5),
                               "recovery_observations": 3, "paper_slippage_bps": D(0)}
    base.update(kw)
    return DriftGate(DriftGateConfig(**base))  # type: ignore[arg-type]


def test_paper_price_moves_against_the_taker() -> None:
    assert paper_price("BUY", D(100), D(10)) == D("100.1")
    assert paper_price("SELL", D(100), D(10)) == D("99.9")
    with pytest.raises(DriftInputError):
        paper_price("HOLD", D(100), D(0))
    with pytest.raises(DriftInputError):
        paper_price("BUY", D(0), D(0))
    g = gate(paper_slippage_bps=D(10))
    shadow = g.on_order_sent("spk-1", "BTCUSDT", "BUY", D(100), 1, D(1))
    assert shadow.paper_price == D("100.1") and g.shadow("spk-1") == shadow


def test_drift_is_positive_when_worse_than_paper_for_both_sides() -> None:
    g = gate()
    g.on_order_sent("b", "BTCUSDT", "BUY", D(100), 1)
    g.on_order_sent("s", "BTCUSDT", "SELL", D(100), 1)
    buy = g.on_fill("b", D("100.2"), D(2), 2).observation
    sell = g.on_fill("s", D("99.9"), D(1), 3).observation
    assert buy is not None and sell is not None
    assert buy.drift_bps == D(20) and sell.drift_bps == D(10)
    assert buy.pnl_delta == D("0.4") and sell.pnl_delta == D("0.1")
    assert g.pnl_delta == D("0.5")
    better = g.on_fill("b", D("99.6"), D(2), 4).observation  # average now 99.9: better
    assert better is not None and better.live_avg_price == D("99.9")
    assert better.drift_bps == D(-10) and better.pnl_delta == D("-0.8")
    m = g.metrics()
    assert (m.price_bps, m.pnl_delta, m.gate_open, m.close_total) == (D(-10), D("-0.3"), 1, 0)


def test_drift_threshold_closes_and_exact_limit_is_healthy() -> None:
    g = gate()
    g.on_order_sent("a", "BTCUSDT", "BUY", D(100), 1)
    at_limit = g.on_fill("a", D("100.5"), D("0.01"), 2)  # exactly 50 bps
    assert at_limit.observation is not None and at_limit.observation.healthy
    assert at_limit.transition is None
    g.on_order_sent("b", "BTCUSDT", "BUY", D(100), 3)
    over = g.on_fill("b", D("100.51"), D("0.01"), 4)
    assert over.transition is not None
    t = over.transition
    assert (t.previous, t.state, t.cause, t.at_ms) == (GateState.OPEN, GateState.CLOSED,
                                                        GateCause.DRIFT, 4)
    assert t.observation == over.observation
    assert g.close_total == 1 and not g.is_open and g.metrics().gate_open == 0


def test_pnl_threshold_closes_on_the_window_sum() -> None:
    g = gate(max_drift_bps=D(1000))
    for i in range(5):
        g.on_order_sent(f"o{i}", "BTCUSDT", "SELL", D(100), i)
    updates = [g.on_fill(f"o{i}", D(99), D(2), 10 + i) for i in range(3)]  # +2 each
    assert [u.transition is None for u in updates] == [True, True, False]
    t = updates[2].transition
    assert t is not None and t.cause is GateCause.PNL_DELTA
    assert g.window_pnl_delta == 0 and g.pnl_delta == D(6)  # window restarts at the transition


def test_reopens_only_after_n_consecutive_healthy_observations() -> None:
    g = gate(recovery_observations=3)
    g.on_order_sent("bad", "X", "BUY", D(100), 0)
    assert g.on_fill("bad", D(102), D(1), 1).transition is not None
    for i in range(10):
        g.on_order_sent(f"h{i}", "X", "BUY", D(100), 0)
    assert g.on_fill("h0", D(100), D(1), 2).transition is None
    assert g.on_fill("h1", D(100), D(1), 3).transition is None
    g.on_order_sent("bad2", "X", "BUY", D(100), 0)
    assert g.on_fill("bad2", D(102), D(1), 4).transition is None  # unhealthy: streak resets
    assert g.state is GateState.CLOSED and g.close_total == 1
    assert g.on_fill("h2", D(100), D(1), 5).transition is None
    assert g.on_fill("h3", D(100), D(1), 6).transition is None
    reopened = g.on_fill("h4", D(100), D(1), 7).transition
    assert reopened is not None and reopened.cause is GateCause.RECOVERED
    assert g.is_open


def test_operator_close_latches_and_operator_open_reopens() -> None:
    g = gate(recovery_observations=1)
    t = g.force_close(1, "alice", "venue incident")
    assert (t.state, t.cause, t.operator, t.detail) == (
        GateState.CLOSED, GateCause.OPERATOR_CLOSE, "alice", "venue incident")
    assert g.latched and g.close_total == 1
    for i in range(5):
        g.on_order_sent(f"h{i}", "X", "BUY", D(100), 0)
        assert g.on_fill(f"h{i}", D(100), D(1), 2 + i).transition is None
    assert g.state is GateState.CLOSED
    again = g.force_close(8, "bob")  # no-op on the state, still a record
    assert again.previous is again.state is GateState.CLOSED and g.close_total == 1
    opened = g.force_open(9, "alice")
    assert opened.cause is GateCause.OPERATOR_OPEN and g.is_open and not g.latched


def test_unshadowed_fills_disabled_gate_and_reload() -> None:
    g = gate()
    assert g.on_fill("never-sent", D(100), D(1), 1).observation is None
    assert g.unshadowed_fills == 1
    with pytest.raises(DriftInputError):
        g.on_fill("x", D(-1), D(1), 1)
    g.on_order_sent("a", "X", "BUY", D(100), 0, quantity=D(1))
    assert g.on_fill("a", D(110), D(1), 1).transition is not None
    assert g.shadow("a") is None  # fully filled: forgotten
    t = g.reconfigure(DriftGateConfig(enabled=False), 2)
    assert t is not None and t.cause is GateCause.DISABLED and g.is_open
    g.on_order_sent("b", "X", "BUY", D(100), 0)
    assert g.on_fill("b", D(200), D(1), 3).observation is None


def test_execution_events_feed_fills_only() -> None:
    g = gate()
    g.on_order_sent("spk-1", "BTCUSDT", "BUY", D(100), 0)

    def ev(x: str, trade_id: int | None, qty: str) -> ExecutionEvent:
        return ExecutionEvent("spot", "BTCUSDT", "spk-1", 1, "BUY", "MARKET", "GTC", D(1), D(0),
                              D(0), x, "NEW", "NONE", D(qty), D(qty), D("100.1"), D(0), None,
                              trade_id, "7", False, 5, 6)

    assert g.on_execution(ev("NEW", None, "0")).observation is None
    obs = g.on_execution(ev("TRADE", 9, "1")).observation
    assert obs is not None and obs.drift_bps == D(10) and obs.at_ms == 6


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 6),
    fills=st.lists(
        st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(-120, 120),
                  st.integers(1, 5)),
        min_size=1, max_size=80,
    ),
)
def test_gate_closes_on_every_breach_and_never_reopens_early(
    n: int, fills: list[tuple[str, int, int]]
) -> None:
    """Random fills around the paper price (offset in bps): whenever an observation is unhealthy
    while the gate is open it closes at that observation; it reopens only at an observation that
    completes n consecutive healthy observations after the close."""
    g = gate(recovery_observations=n, max_drift_bps=D(50), max_pnl_delta=D(3))
    healthy_since_close: int | None = None  # None while open
    for i, (side, bps, qty) in enumerate(fills):
        cid = f"o{i}"
        g.on_order_sent(cid, "X", side, D(100), i)
        sign = 1 if side == "BUY" else -1
        price = D(100) * (D(10000) + sign * bps) / D(10000)
        was_open = g.is_open
        update = g.on_fill(cid, price, D(qty) / 10, i)
        obs = update.observation
        assert obs is not None
        assert obs.drift_bps == D(bps)
        assert obs.healthy == (bps <= 50 and obs.window_pnl_delta <= 3)
        if was_open:
            if not obs.healthy:
                assert update.transition is not None
                assert update.transition.state is GateState.CLOSED
                healthy_since_close = 0
            else:
                assert update.transition is None
        else:
            assert healthy_since_close is not None
            healthy_since_close = healthy_since_close + 1 if obs.healthy else 0
            if update.transition is not None:
                assert update.transition.cause is GateCause.RECOVERED
                assert healthy_since_close == n
                healthy_since_close = None
            else:
                assert healthy_since_close < n
        assert g.is_open == (healthy_since_close is None)
    assert g.metrics().gate_open == int(g.is_open)
