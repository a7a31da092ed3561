"""The sans-IO matching engine: filters, matching, commissions, balances, events, determinism.

Default book (BTCUSDT): last 45000.00, bid 45000.00 / ask 45000.01, 10 levels of 0.5 BTC one
tick apart; the price only moves when a test steps or sets it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from venue_helpers import d, quiet_config

from spark.config.schema import VenueSymbolConfig
from spark.venue import VenueCore
from spark.venue.errors import (
    BadSymbol,
    CancelRejected,
    FilterFailure,
    NewOrderRejected,
    NoSuchOrder,
    VenueError,
)
from spark.venue.orders import NewOrder
from spark.venue.outbox import MarketEvent, UserEvent

T0 = 1_790_000_000_000


def make_core(**changes: Any) -> VenueCore:
    return VenueCore(quiet_config(**changes), api_secret="sim-secret")


def user_events(core: VenueCore, market: str = "spot") -> list[dict[str, Any]]:
    return [i.payload for i in core.outbox.drain() if isinstance(i, UserEvent)
            and i.market == market]


def reports(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["e"] == "executionReport"]


def buy(symbol: str = "BTCUSDT", qty: str = "0.1", **kw: Any) -> NewOrder:
    return NewOrder(symbol=symbol, side="BUY", type=kw.pop("type", "MARKET"),
                    quantity=d(qty), **kw)


def limit(side: str, qty: str, price: str, tif: str = "GTC", symbol: str = "BTCUSDT",
          **kw: Any) -> NewOrder:
    return NewOrder(symbol=symbol, side=side, type="LIMIT", time_in_force=tif, quantity=d(qty),
                    price=d(price), **kw)


# -- matching -------------------------------------------------------------------------------------
def test_market_buy_slips_over_successive_levels_and_reports_new_trade_filled() -> None:
    core = make_core()
    order, trades = core.spot.place(buy(qty="1.2"), T0)
    assert order.status == "FILLED"
    assert [(t.price, t.qty) for t in trades] == [
        (d("45000.01"), d("0.5")), (d("45000.02"), d("0.5")), (d("45000.03"), d("0.2"))]
    events = user_events(core)
    ers = reports(events)
    assert [(e["x"], e["X"]) for e in ers] == [
        ("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "FILLED")]
    assert events[-1]["e"] == "outboundAccountPosition"
    assert [e["t"] for e in ers] == [-1, trades[0].id, trades[1].id, trades[2].id]
    assert len({e["I"] for e in ers}) == 4
    assert ers[-1]["z"] == "1.20000000"
    assert ers[-1]["Z"] == "54000.02100000"
    assert ers[1]["Y"] == "22500.00500000"
    assert all(e["m"] is False and e["w"] is False for e in ers)
    assert ers[1]["n"] == "0.00050000" and ers[1]["N"] == "BTC"
    assert ers[0]["n"] == "0" and ers[0]["N"] is None


def test_consumed_liquidity_makes_the_next_order_slip_further_until_the_next_step() -> None:
    core = make_core()
    _, first = core.spot.place(buy(qty="0.5"), T0)
    _, second = core.spot.place(buy(qty="0.1"), T0)
    assert first[0].price == d("45000.01")
    assert second[0].price == d("45000.02")
    core.markets["BTCUSDT"].set_price(d("45000"))
    _, third = core.spot.place(buy(qty="0.1"), T0)
    assert third[0].price == d("45000.01")


def test_market_order_larger_than_the_book_fills_what_is_there_and_expires() -> None:
    core = make_core()
    order, trades = core.spot.place(
        NewOrder(symbol="ETHUSDT", side="SELL", type="MARKET", quantity=d(60)), T0)
    assert order.status == "EXPIRED"
    assert order.executed_qty == d(50) and len(trades) == 10
    ers = reports(user_events(core))
    assert ers[0]["x"] == "NEW" and ers[-1]["x"] == "EXPIRED"
    assert [e["x"] for e in ers[1:-1]] == ["TRADE"] * 10
    assert core.balances.free["ETH"] == d(50) and core.balances.locked["ETH"] == 0


def test_limit_order_rests_then_fills_as_maker_when_the_price_crosses() -> None:
    core = make_core()
    order, trades = core.spot.place(limit("BUY", "0.3", "44990"), T0)
    assert trades == [] and order.status == "NEW" and order.on_book
    assert core.balances.locked["USDT"] == d("13497.000")
    core.outbox.drain()
    core.set_price("BTCUSDT", d("44980"), T0 + 1)
    assert order.status == "FILLED"
    ers = reports(user_events(core))
    assert [(e["x"], e["X"], e["m"], e["L"]) for e in ers] == [
        ("TRADE", "FILLED", True, "44990.00000000")]
    assert core.balances.locked["USDT"] == 0
    assert core.balances.free["USDT"] == d(100000) - d("13497")
    assert core.balances.free["BTC"] == d(10) + d("0.3") - d("0.0003")


def test_resting_order_larger_than_the_touch_fills_partially_then_completes() -> None:
    core = make_core()
    order, _ = core.spot.place(limit("BUY", "2", "44990"), T0)
    core.outbox.drain()
    core.set_price("BTCUSDT", d("44989.99"), T0 + 1)  # asks 44990.00 (0.5) and up
    assert order.status == "PARTIALLY_FILLED" and order.executed_qty == d("0.5")
    ers = reports(user_events(core))
    assert [(e["X"], e["w"]) for e in ers] == [("PARTIALLY_FILLED", True)]
    assert [o.order_id for o in core.spot.open_orders("BTCUSDT")] == [order.order_id]
    core.set_price("BTCUSDT", d("44989"), T0 + 2)  # ten levels at or below 44990
    assert order.status == "FILLED" and order.executed_qty == d(2)
    assert core.spot.open_orders("BTCUSDT") == []
    assert core.balances.locked["USDT"] == 0


def test_ioc_fills_what_it_can_at_or_better_than_its_price_and_expires_the_rest() -> None:
    core = make_core()
    order, trades = core.spot.place(limit("BUY", "2", "45000.02", tif="IOC"), T0)
    assert [t.price for t in trades] == [d("45000.01"), d("45000.02")]
    assert order.status == "EXPIRED" and order.executed_qty == d(1)
    assert [e["x"] for e in reports(user_events(core))] == ["NEW", "TRADE", "TRADE", "EXPIRED"]
    assert core.balances.locked["USDT"] == 0


def test_fok_is_all_or_nothing() -> None:
    core = make_core()
    order, trades = core.spot.place(limit("BUY", "2", "45000.02", tif="FOK"), T0)
    assert trades == [] and order.status == "EXPIRED"
    assert core.balances.free["USDT"] == d(100000) and core.balances.locked["USDT"] == 0
    order, trades = core.spot.place(limit("BUY", "1", "45000.02", tif="FOK"), T0)
    assert order.status == "FILLED" and len(trades) == 2


def test_limit_taker_gets_price_improvement_and_the_lock_difference_back() -> None:
    core = make_core()
    order, trades = core.spot.place(limit("BUY", "0.1", "45100"), T0)
    assert order.status == "FILLED" and trades[0].price == d("45000.01")
    assert core.balances.free["USDT"] == d(100000) - d("4500.001")
    assert core.balances.locked["USDT"] == 0


def test_limit_maker_is_rejected_when_it_would_take_and_rests_otherwise() -> None:
    core = make_core()
    maker = NewOrder(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity=d("0.1"),
                     price=d("45000.01"))
    with pytest.raises(NewOrderRejected, match=r"Order would immediately match and take\."):
        core.spot.place(maker, T0)
    order, _ = core.spot.place(attrs.evolve(maker, price=d("44999")), T0)
    assert order.status == "NEW" and order.on_book


def test_sell_commission_is_charged_in_the_quote_asset() -> None:
    core = make_core()
    _, trades = core.spot.place(
        NewOrder(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=d("0.1")), T0)
    assert trades[0].commission == d("4.5") and trades[0].commission_asset == "USDT"
    assert core.balances.free["USDT"] == d(100000) + d("4500") - d("4.5")
    assert core.balances.free["BTC"] == d("9.9")


def test_quote_order_qty_buys_as_much_as_the_budget_allows_on_the_step() -> None:
    core = make_core()
    order, _ = core.spot.place(
        NewOrder(symbol="BTCUSDT", side="BUY", type="MARKET", quote_order_qty=d(1000)), T0)
    assert order.executed_qty == d("0.02222")
    assert order.cum_quote <= d(1000)
    assert order.status == "FILLED"


# -- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("req", "filter_type"),
    [
        (limit("BUY", "0.1", "45000.005"), "PRICE_FILTER"),
        (limit("BUY", "0.1", "2000000"), "PRICE_FILTER"),
        (limit("BUY", "0.000015", "45000"), "LOT_SIZE"),
        (limit("BUY", "10000", "1"), "LOT_SIZE"),
        (limit("BUY", "0.0001", "45000"), "NOTIONAL"),
        (buy(qty="0.00001"), "NOTIONAL"),
    ],
)
def test_filters_refuse_with_binance_messages(req: NewOrder, filter_type: str) -> None:
    core = make_core()
    with pytest.raises(FilterFailure) as caught:
        core.spot.place(req, T0)
    assert caught.value.code == -1013
    assert caught.value.msg == f"Filter failure: {filter_type}"
    assert core.spot.orders == {}


def test_max_num_orders_counts_open_orders_per_symbol() -> None:
    symbols = {"BTCUSDT": VenueSymbolConfig(price=d(45000), max_num_orders=2)}
    core = make_core(symbols=symbols)
    for _ in range(2):
        core.spot.place(limit("BUY", "0.1", "44000"), T0)
    with pytest.raises(FilterFailure, match="MAX_NUM_ORDERS"):
        core.spot.place(limit("BUY", "0.1", "44000"), T0)


def test_insufficient_balance_is_refused_and_changes_nothing() -> None:
    core = make_core()
    with pytest.raises(NewOrderRejected) as caught:
        core.spot.place(limit("BUY", "5", "45000"), T0)
    assert caught.value.code == -2010
    assert caught.value.msg == "Account has insufficient balance for requested action."
    assert core.balances.free["USDT"] == d(100000) and core.spot.orders == {}
    assert len(core.outbox) == 0


def test_duplicate_client_order_id_is_refused_while_the_first_is_open() -> None:
    core = make_core()
    first, _ = core.spot.place(limit("BUY", "0.1", "44000", client_order_id="abc"), T0)
    with pytest.raises(NewOrderRejected, match=r"Duplicate order sent\."):
        core.spot.place(limit("BUY", "0.1", "44000", client_order_id="abc"), T0)
    core.spot.cancel("BTCUSDT", first.order_id, None, None, T0)
    again, _ = core.spot.place(limit("BUY", "0.1", "44000", client_order_id="abc"), T0)
    assert core.spot.query("BTCUSDT", None, "abc").order_id == again.order_id


def test_cancel_unlocks_and_reports_the_cancel_id_in_c_and_the_original_in_C() -> None:
    core = make_core()
    order, _ = core.spot.place(limit("SELL", "1", "46000", client_order_id="mine"), T0)
    assert core.balances.locked["BTC"] == 1
    core.outbox.drain()
    cancelled, cancel_id = core.spot.cancel("BTCUSDT", None, "mine", "undo-1", T0 + 5)
    assert cancelled.status == "CANCELED" and cancel_id == "undo-1"
    assert core.balances.locked["BTC"] == 0 and core.balances.free["BTC"] == 10
    report = reports(user_events(core))[0]
    assert (report["x"], report["X"], report["c"], report["C"]) == (
        "CANCELED", "CANCELED", "undo-1", "mine")
    with pytest.raises(CancelRejected, match=r"Unknown order sent\."):
        core.spot.cancel("BTCUSDT", order.order_id, None, None, T0)
    with pytest.raises(NoSuchOrder, match=r"Order does not exist\."):
        core.spot.query("BTCUSDT", 999, None)
    with pytest.raises(BadSymbol):
        core.spot.query("DOGEUSDT", 1, None)


def test_history_queries_follow_binance_paging() -> None:
    core = make_core()
    for _ in range(5):
        core.spot.place(buy(qty="0.1"), T0)
    ids = [t.id for t in core.spot.trades]
    assert [t.id for t in core.spot.my_trades("BTCUSDT", limit=2)] == ids[-2:]
    assert [t.id for t in core.spot.my_trades("BTCUSDT", from_id=ids[1], limit=2)] == ids[1:3]
    assert len(core.spot.my_trades("BTCUSDT", limit=5000)) == 5
    assert [o.order_id for o in core.spot.all_orders("BTCUSDT", order_id=2, limit=2)] == [2, 3]


# -- futures --------------------------------------------------------------------------------------
def test_futures_position_pnl_and_events() -> None:
    core = make_core()
    fut = core.futures
    order, _ = fut.place(NewOrder(symbol="BTCUSDT", side="BUY", type="MARKET",
                                  quantity=d("0.1")), T0)
    assert order.status == "FILLED" and fut.positions["BTCUSDT"].amount == d("0.1")
    events = user_events(core, "futures")
    assert [e["e"] for e in events] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE",
                                        "ACCOUNT_UPDATE"]
    assert [(e["o"]["x"], e["o"]["X"]) for e in events[:2]] == [("NEW", "NEW"),
                                                               ("TRADE", "FILLED")]
    assert events[1]["o"]["N"] == "USDT" and "n" not in events[0]["o"]
    assert events[2]["a"]["P"][0]["pa"] == "0.1"
    core.set_price("BTCUSDT", d(46000), T0)
    _, closing = fut.place(NewOrder(symbol="BTCUSDT", side="SELL", type="MARKET",
                                    quantity=d("0.1"), reduce_only=True), T0)
    assert closing[0].realized_pnl == (d(46000) - d("45000.01")) * d("0.1")
    assert fut.positions["BTCUSDT"].amount == 0
    with pytest.raises(VenueError) as caught:
        fut.place(NewOrder(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=d("0.1"),
                           reduce_only=True), T0)
    assert caught.value.body()["code"] == -2022


def test_futures_post_only_that_would_take_and_oversized_orders_are_refused() -> None:
    core = make_core()
    with pytest.raises(VenueError) as caught:
        core.futures.place(limit("BUY", "0.1", "45001", tif="GTX"), T0)
    assert caught.value.body()["code"] == -5022
    with pytest.raises(VenueError) as caught:
        core.futures.place(limit("BUY", "100", "45000"), T0)
    assert caught.value.body() == {"code": -2019, "msg": "Margin is insufficient."}


# -- determinism ----------------------------------------------------------------------------------
def run_script(seed: int) -> list[tuple[Any, ...]]:
    core = make_core(seed=seed)
    now = T0
    core.spot.place(limit("BUY", "0.4", "44950"), now)
    core.spot.place(limit("SELL", "0.7", "45060", symbol="BTCUSDT"), now)
    for i in range(200):
        now += 250
        core.step(now)
        if i % 20 == 0:
            core.spot.place(buy(qty="0.05"), now)
    return [(t.id, t.order_id, t.price, t.qty, t.commission, t.time) for t in core.spot.trades]


def test_same_seed_and_same_orders_give_identical_fills() -> None:
    first = run_script(7)
    assert first == run_script(7)
    assert first != run_script(8)


def test_price_steps_stay_on_the_tick() -> None:
    core = make_core()
    for i in range(50):
        core.step(T0 + i)
    for market in core.markets.values():
        assert market.last % market.spec.tick_size == 0
        assert market.ask - market.bid == market.spec.tick_size


# -- properties -----------------------------------------------------------------------------------
operation = st.one_of(
    st.tuples(st.just("market"), st.sampled_from(["BUY", "SELL"]),
              st.integers(min_value=1, max_value=300)),
    st.tuples(st.just("limit"), st.sampled_from(["BUY", "SELL"]),
              st.integers(min_value=1, max_value=300), st.integers(min_value=-40, max_value=40),
              st.sampled_from(["GTC", "IOC", "FOK"])),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("step")),
    st.tuples(st.just("price"), st.integers(min_value=-60, max_value=60)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=40), st.integers(0, 3))
def test_invariants_hold_for_any_sequence_of_orders(ops: list[tuple[Any, ...]], seed: int) -> None:
    core = make_core(seed=seed)
    now = T0
    placed = []
    for op in ops:
        now += 100
        try:
            if op[0] == "market":
                placed.append(core.spot.place(
                    NewOrder(symbol="BTCUSDT", side=op[1], type="MARKET",
                             quantity=Decimal(op[2]) / 100), now)[0])
            elif op[0] == "limit":
                price = core.markets["BTCUSDT"].last + Decimal(op[3])
                placed.append(core.spot.place(
                    limit(op[1], str(Decimal(op[2]) / 100), str(price), tif=op[4]), now)[0])
            elif op[0] == "cancel" and placed:
                victim = placed[op[1] % len(placed)]
                core.spot.cancel("BTCUSDT", victim.order_id, None, None, now)
            elif op[0] == "step":
                core.step(now)
            elif op[0] == "price":
                core.set_price("BTCUSDT", core.markets["BTCUSDT"].last + op[1], now)
        except VenueError:
            pass
        for asset in core.balances.free:
            assert core.balances.free[asset] >= 0, asset
            assert core.balances.locked[asset] >= 0, asset
        open_orders = core.spot.open_orders(None)
        assert core.balances.locked["USDT"] == sum(o.locked for o in open_orders if o.is_buy)
        assert core.balances.locked["BTC"] == sum(o.locked for o in open_orders if not o.is_buy)

    # Conservation: every unit of each asset is accounted for by trades and commissions.
    btc, usdt = Decimal(10), Decimal(100000)
    for t in core.spot.trades:
        sign = 1 if t.side == "BUY" else -1
        btc += sign * t.qty - (t.commission if t.commission_asset == "BTC" else 0)
        usdt -= sign * t.quote_qty + (t.commission if t.commission_asset == "USDT" else 0)
    bal = core.balances
    assert bal.free["BTC"] + bal.locked["BTC"] == btc
    assert bal.free["USDT"] + bal.locked["USDT"] == usdt

    seen: dict[int, list[str]] = {}
    for item in core.outbox.drain():
        if isinstance(item, UserEvent) and item.payload["e"] == "executionReport":
            seen.setdefault(item.payload["i"], []).append(item.payload["X"])
        elif isinstance(item, MarketEvent):
            assert item.stream.startswith("btcusdt@") or item.stream.endswith("@bookTicker")
    for order in core.spot.orders.values():
        assert order.executed_qty <= order.orig_qty
        fills = [t for t in core.spot.trades if t.order_id == order.order_id]
        assert sum((t.qty for t in fills), Decimal(0)) == order.executed_qty
        statuses = seen[order.order_id]
        assert statuses[0] == "NEW"
        terminal = [i for i, s in enumerate(statuses) if s in ("FILLED", "CANCELED", "EXPIRED")]
        assert terminal in ([], [len(statuses) - 1])
        assert statuses[-1] == order.status
