"""The order table (positions, open count, dedup in bounded memory) and the trading state."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest
from core_orders_helpers import T0_MS, event, fill_event, order, venue_view
from hypothesis import given
from hypothesis import strategies as st

from spark.core import orders as o
from spark.core.breaker import BreakerState
from spark.core.intents import Side
from spark.core.orders import DuplicateClientOrderId, OrderError, OrderState, OrderTable
from spark.core.trading_state import TradingState, TradingStatus, derive
from spark.exchange.models import Trade

D = Decimal
S = OrderState


# -- the table --------------------------------------------------------------------------------


def test_add_get_and_duplicate_ids() -> None:
    t = OrderTable(positions={"BTCUSDT": D(0)})
    t.add(order())
    assert "spk-o1" in t and t.get("spk-o1") is not None and len(t) == 1
    with pytest.raises(DuplicateClientOrderId):
        t.add(order())
    assert t.get("nope") is None


def test_fills_move_positions_and_orders_leave_the_open_set() -> None:
    t = OrderTable(positions={"BTCUSDT": D("0.5")})
    t.add(order("1", cid="spk-b"))
    t.add(order("0.3", cid="spk-s", side=Side.SELL))
    assert t.open_count() == 2
    r = t.apply_event(fill_event(1, "0.4", "0.4", cid="spk-b"))
    assert r.new_fills and t.position("BTCUSDT") == D("0.9")
    t.apply_event(event("FILLED", cid="spk-s", exec_id="s1", x="TRADE", qty="0.3",
                        last_qty="0.3", last_price="100", cum_qty="0.3", cum_quote="30",
                        trade_id=2001, side="SELL"))
    assert t.position("BTCUSDT") == D("0.6")
    assert t.open_count() == 1 and [x.client_order_id for x in t.open_orders()] == ["spk-b"]
    assert t.get("spk-s").status is S.FILLED  # type: ignore[union-attr]
    # a duplicate moves nothing
    dup = t.apply_event(fill_event(1, "0.4", "0.4", cid="spk-b"))
    assert dup.duplicate and not dup.new_fills and t.position("BTCUSDT") == D("0.6")


def test_unknown_positions_stay_unknown() -> None:
    t = OrderTable()
    t.add(order())
    t.apply_event(fill_event(1, "0.4", "0.4"))
    assert t.position("BTCUSDT") is None and t.positions == {}
    t.set_position("BTCUSDT", D(2))
    t.apply_event(fill_event(2, "0.1", "0.5"))
    assert t.position("BTCUSDT") == D("2.1")
    t.set_position("BTCUSDT", None)
    assert t.position("BTCUSDT") is None


def test_parked_orders_count_as_open_by_default() -> None:
    t = OrderTable()
    t.add(order(cid="spk-p", status=S.PARKED))
    t.add(order(cid="spk-q"))
    assert t.open_count() == 2 and t.open_count(include_parked=False) == 1


def test_put_requires_a_newer_version() -> None:
    t = OrderTable()
    parked = order(status=S.PARKED)
    t.add(parked)
    t.put(o.confirm(parked, T0_MS))
    assert t.get("spk-o1").status is S.PENDING  # type: ignore[union-attr]
    with pytest.raises(OrderError):
        t.put(parked)
    with pytest.raises(KeyError):
        t.put(order(cid="spk-unknown"))


def test_unknown_order_and_cancel_by_original_id() -> None:
    t = OrderTable()
    assert t.apply_event(event("NEW", cid="web_x")).unknown_order
    t.add(order())
    t.apply_event(event("NEW", exec_id="n"))
    r = t.apply_event(event("CANCELED", cid="cancel-req-1", orig_cid="spk-o1", exec_id="c"))
    assert r.order is not None and r.order.status is S.CANCELED and t.open_count() == 0


def test_final_orders_are_evicted_but_late_duplicates_still_recognised() -> None:
    t = OrderTable(max_final=2, max_seen_ids=100)
    for k in range(5):
        cid = f"spk-{k}"
        t.add(order(cid=cid))
        t.apply_event(event("CANCELED", cid=cid, exec_id=f"x{k}"))
    assert len(t) == 2 and t.get("spk-0") is None and t.get("spk-4") is not None
    late = t.apply_event(event("CANCELED", cid="spk-0", exec_id="x0"))
    assert late.duplicate and not late.unknown_order
    never = t.apply_event(event("NEW", cid="spk-0", exec_id="other"))
    assert never.unknown_order


def test_seen_ids_are_bounded() -> None:
    t = OrderTable(max_final=0, max_seen_ids=3)
    for k in range(6):
        t.add(order(cid=f"spk-{k}"))
        t.apply_event(event("CANCELED", cid=f"spk-{k}", exec_id=f"x{k}"))
    assert len(t) == 0
    assert t.apply_event(event("CANCELED", cid="spk-5", exec_id="x5")).duplicate
    assert t.apply_event(event("CANCELED", cid="spk-0", exec_id="x0")).unknown_order


def test_table_query_and_trade() -> None:
    t = OrderTable(positions={"BTCUSDT": D(0)})
    t.add(order())
    t.apply_event(event("NEW", exec_id="n"))
    od, res = t.apply_query("spk-o1", venue_view("PARTIALLY_FILLED", "0.5"), T0_MS)
    assert od.status is S.PARTIALLY_FILLED and res.missing_fill_qty == D("0.5")
    assert t.position("BTCUSDT") == 0  # no invented fills
    tr = Trade(symbol="BTCUSDT", trade_id=9, order_id=77, price=D(100), qty=D("0.5"),
               quote_qty=D(50), commission=D(0), commission_asset="USDT", time=T0_MS,
               is_buyer=True, is_maker=True)
    r = t.apply_trade("spk-o1", tr, T0_MS)
    assert len(r.new_fills) == 1 and t.position("BTCUSDT") == D("0.5")
    assert t.apply_trade("spk-o1", tr, T0_MS).duplicate
    assert t.apply_trade("spk-zz", tr, T0_MS).unknown_order
    with pytest.raises(KeyError):
        t.apply_query("spk-zz", None, T0_MS)
    assert [u.client_order_id for u in t.unknown_orders()] == []


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 9)), max_size=30),
       st.randoms(use_true_random=False))
def test_position_is_the_sum_of_distinct_fills(
    raw: list[tuple[int, int]], rnd: random.Random
) -> None:
    """Fills for several orders, each delivered one to three times in shuffled order: the
    position equals the signed sum of the distinct fills."""
    t = OrderTable(positions={"BTCUSDT": D(0)})
    for k in range(5):
        t.add(order("1000", cid=f"spk-{k}", side=Side.BUY if k % 2 == 0 else Side.SELL))
    fills = []
    cum = dict.fromkeys(range(5), D(0))
    for n, (k, qty) in enumerate(raw):
        cum[k] += qty
        fills.append(fill_event(n, str(qty), str(cum[k]), cid=f"spk-{k}", qty="1000"))
    deliveries = list(itertools.chain.from_iterable(
        [f] * (1 + (n % 3)) for n, f in enumerate(fills)))
    rnd.shuffle(deliveries)
    for f in deliveries:
        t.apply_event(f)
    expected = sum((D(q) if k % 2 == 0 else -D(q) for k, q in raw), D(0))
    assert t.position("BTCUSDT") == expected


# -- trading state ----------------------------------------------------------------------------


def test_derive_table() -> None:
    assert derive(False, BreakerState.CLOSED, True, False) == TradingStatus(TradingState.ACTIVE)
    assert derive(True, BreakerState.CLOSED, True, False).state is TradingState.HALTED
    assert derive(False, BreakerState.OPEN, True, False).reasons == ("circuit_breaker_open",)
    assert derive(False, BreakerState.OPEN, True, False,
                  breaker_dry_run=True).state is TradingState.ACTIVE
    assert derive(False, BreakerState.FORCED_OPEN, True, False,
                  breaker_dry_run=True).state is TradingState.HALTED
    assert derive(False, BreakerState.HALF_OPEN, True, False).state is TradingState.ACTIVE
    assert derive(False, BreakerState.CLOSED, False, False) == TradingStatus(
        TradingState.REDUCING, ("drift_gate",))
    assert derive(False, BreakerState.CLOSED, True, True, "reducing").state is \
        TradingState.REDUCING
    assert derive(False, BreakerState.CLOSED, True, True, "halted").state is TradingState.HALTED
    assert derive(False, BreakerState.CLOSED, True, True, "bogus").state is TradingState.HALTED
    both = derive(True, BreakerState.CLOSED, False, True, "reducing")
    assert both.state is TradingState.HALTED
    assert both.reasons == ("kill_switch", "drift_gate", "reconciliation_pending")


@given(kill=st.booleans(), breaker=st.sampled_from(BreakerState), gate=st.booleans(),
       pending=st.booleans(), mode=st.sampled_from(["reducing", "halted"]),
       dry=st.booleans())
def test_derive_is_the_most_restrictive_input(
    kill: bool, breaker: BreakerState, gate: bool, pending: bool, mode: str, dry: bool
) -> None:
    status = derive(kill, breaker, gate, pending, mode, breaker_dry_run=dry)
    halted = kill or breaker is BreakerState.FORCED_OPEN or (
        breaker is BreakerState.OPEN and not dry) or (pending and mode == "halted")
    reducing = not gate or (pending and mode == "reducing")
    expected = (TradingState.HALTED if halted else TradingState.REDUCING if reducing
                else TradingState.ACTIVE)
    assert status.state is expected
    assert bool(status.reasons) == (expected is not TradingState.ACTIVE)
    assert status.metric_value == {TradingState.ACTIVE: 0, TradingState.REDUCING: 1,
                                   TradingState.HALTED: 2}[expected]
    assert expected.allows_cancels
    assert expected.allows_new_orders is (expected is TradingState.ACTIVE)
