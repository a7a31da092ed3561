"""Reconciliation rules: synthetic events from venue truth, never invented fills, discrepancies."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.core.reconcile import (
    DiscrepancyKind,
    KnownOrder,
    NotFound,
    ReconcileConfig,
    RouterView,
    VenueSnapshot,
    pending_mode,
    plan_queries,
    reconcile,
)
from spark.core.userdata_errors import ReconcileInputError
from spark.exchange.models import OrderStatus, Trade

D = Decimal
CFG = ReconcileConfig(client_id_prefix="spk")
NOW = 1_700_000_000_000


def known(cid: str = "spk-a", *, status: str = "NEW", executed: str = "0", oid: int | None = 11,
          qty: str = "1", side: str = "BUY", symbol: str = "BTCUSDT") -> KnownOrder:
    return KnownOrder(cid, symbol, side, "LIMIT", "GTC", D(qty), D("100"), status, D(executed),
                      D(executed) * 100, oid)


def venue_order(cid: str = "spk-a", *, status: str = "NEW", executed: str = "0", oid: int = 11,
                qty: str = "1", side: str = "BUY", symbol: str = "BTCUSDT") -> OrderStatus:
    return OrderStatus(symbol, oid, cid, D("100"), D(qty), D(executed), D(executed) * 100, status,
                       "GTC", "LIMIT", side, update_time=NOW - 5)


def trade(tid: int, qty: str, *, oid: int = 11, price: str = "100", buyer: bool = True,
          symbol: str = "BTCUSDT") -> Trade:
    return Trade(symbol, tid, oid, D(price), D(qty), D(price) * D(qty), D("0.001"), "BNB",
                 NOW - 1000 + tid, buyer, False)


def kinds(result: object) -> list[DiscrepancyKind]:
    return [e.kind for e in result.entries]  # type: ignore[attr-defined]


def test_missed_fills_become_synthetic_fills_in_trade_order() -> None:
    view = RouterView("spot", (known(),), last_trade_ids={"BTCUSDT": 100})
    snap = VenueSnapshot(
        NOW,
        queries={"spk-a": venue_order(status="FILLED", executed="1")},
        trades=(trade(103, "0.6"), trade(102, "0.4"), trade(99, "5"), trade(103, "0.6")),
    )
    result = reconcile(view, snap, CFG)
    assert [e.trade_id for e in result.events] == [102, 103]  # 99 is stored already; 103 once
    first, second = result.events
    assert (first.execution_type, first.order_status, first.last_qty, first.cum_qty) == (
        "TRADE", "PARTIALLY_FILLED", D("0.4"), D("0.4"))
    assert (second.order_status, second.cum_qty, second.cum_quote_qty) == ("FILLED", D(1), D(100))
    assert second.client_order_id == "spk-a" and second.order_id == 11
    assert second.execution_id.startswith("recon:") and second.is_trade
    assert second.transaction_time == NOW - 1000 + 103 and second.event_time == NOW
    assert kinds(result) == [DiscrepancyKind.MISSED_FILL, DiscrepancyKind.MISSED_FILL]
    assert result.absent_at_venue == () and result.unresolved == ()


def test_trades_already_applied_are_not_fed_again() -> None:
    view = RouterView("spot", (known(executed="0.4", status="PARTIALLY_FILLED"),),
                      last_trade_ids={"BTCUSDT": 100},
                      applied_trade_ids=frozenset({("BTCUSDT", 102)}))
    snap = VenueSnapshot(NOW, open_orders=(venue_order(status="PARTIALLY_FILLED",
                                                       executed="0.4"),),
                         trades=(trade(102, "0.4"),))
    result = reconcile(view, snap, CFG)
    assert result.events == () and result.entries == ()


def test_venue_cancel_becomes_a_status_event_without_fills() -> None:
    view = RouterView("spot", (known(executed="0.5", status="PARTIALLY_FILLED"),))
    snap = VenueSnapshot(NOW, queries={"spk-a": venue_order(status="CANCELED", executed="0.5")})
    result = reconcile(view, snap, CFG)
    (event,) = result.events
    assert (event.execution_type, event.order_status, event.cum_qty) == (
        "CANCELED", "CANCELED", D("0.5"))
    assert not event.is_trade and event.trade_id is None and event.last_qty == 0
    assert result.entries == ()


def test_fills_missing_from_my_trades_are_never_invented() -> None:
    view = RouterView("spot", (known(),))
    snap = VenueSnapshot(NOW, queries={"spk-a": venue_order(status="FILLED", executed="1")})
    result = reconcile(view, snap, CFG)
    assert result.events == ()  # no fill, and no FILLED status the fills cannot back
    (entry,) = result.entries
    assert entry.kind is DiscrepancyKind.MISSED_FILL and entry.client_order_id == "spk-a"
    # cancelled with missing fills: the status is reported, the quantity is ours, the gap recorded
    snap2 = VenueSnapshot(NOW, queries={"spk-a": venue_order(status="CANCELED", executed="0.3")})
    result2 = reconcile(view, snap2, CFG)
    (event,) = result2.events
    assert event.order_status == "CANCELED" and event.cum_qty == 0
    assert kinds(result2) == [DiscrepancyKind.MISSED_FILL]


def test_not_found_is_absent_for_uncertain_sends_and_never_rejected() -> None:
    pending = known("spk-u", status="PENDING_NEW", oid=None)
    view = RouterView("spot", (pending,), uncertain=frozenset({"spk-u"}))
    snap = VenueSnapshot(NOW, queries={"spk-u": NotFound("spk-u")})
    result = reconcile(view, snap, CFG)
    assert result.absent_at_venue == ("spk-u",)
    assert result.events == () and result.entries == ()
    # an order we believed acknowledged and open: a discrepancy, still no REJECTED
    acked = RouterView("spot", (known("spk-b"),))
    result2 = reconcile(acked, VenueSnapshot(NOW, queries={"spk-b": NotFound("spk-b")}), CFG)
    assert kinds(result2) == [DiscrepancyKind.ORDER_NOT_FOUND] and result2.events == ()
    assert result2.absent_at_venue == ()
    # finished orders get purged by Binance: not found is normal
    done = RouterView("spot", (known("spk-c", status="CANCELED"),))
    result3 = reconcile(done, VenueSnapshot(NOW, queries={"spk-c": NotFound("spk-c")}), CFG)
    assert result3.entries == () and result3.events == ()


def test_uncertain_send_found_at_venue_reports_the_missed_ack() -> None:
    pending = known("spk-u", status="PENDING_NEW", oid=None)
    view = RouterView("spot", (pending,), uncertain=frozenset({"spk-u"}))
    snap = VenueSnapshot(NOW, queries={"spk-u": venue_order("spk-u", oid=77)})
    (event,) = reconcile(view, snap, CFG).events
    assert (event.execution_type, event.order_status, event.order_id) == ("NEW", "NEW", 77)


def test_unknown_external_orders_and_unknown_fills() -> None:
    view = RouterView("spot", ())
    snap = VenueSnapshot(
        NOW,
        open_orders=(venue_order("spk-zzz", oid=5), venue_order("manual1", oid=6),
                     venue_order("spkx-1", oid=8)),
        trades=(trade(300, "0.2", oid=6), trade(301, "0.1", oid=999)),
    )
    result = reconcile(view, snap, CFG)
    assert kinds(result) == [
        DiscrepancyKind.EXTERNAL_ORDER,  # manual1
        DiscrepancyKind.UNKNOWN_ORDER,  # spk-zzz: our prefix
        DiscrepancyKind.EXTERNAL_ORDER,  # spkx-1: prefix must be followed by '-'
        DiscrepancyKind.UNKNOWN_FILL,
        DiscrepancyKind.UNKNOWN_FILL,
    ]
    assert result.events == ()


def test_status_conflict_when_we_think_finished_and_venue_has_it_open() -> None:
    view = RouterView("spot", (known(status="CANCELED"),))
    snap = VenueSnapshot(NOW, open_orders=(venue_order(),))
    result = reconcile(view, snap, CFG)
    assert kinds(result) == [DiscrepancyKind.STATUS_CONFLICT] and result.events == ()


def test_fill_excess() -> None:
    view = RouterView("spot", (known(executed="0.5", status="PARTIALLY_FILLED"),))
    snap = VenueSnapshot(NOW, open_orders=(venue_order(status="NEW", executed="0"),))
    result = reconcile(view, snap, CFG)
    assert kinds(result) == [DiscrepancyKind.FILL_EXCESS]
    assert result.events == ()  # never moves an order backwards


def test_open_order_the_snapshot_does_not_cover_is_unresolved() -> None:
    orders = (known("spk-a"), known("spk-b", oid=12), known("spk-c", status="FILLED", oid=13))
    view = RouterView("spot", orders, uncertain=frozenset({"spk-b"}))
    open_orders = (venue_order("spk-a"),)
    assert plan_queries(view, open_orders) == ("spk-b",)
    result = reconcile(view, VenueSnapshot(NOW, open_orders=open_orders), CFG)
    assert result.unresolved == ("spk-b",)


def test_position_mismatch_after_applying_synthetic_fills() -> None:
    view = RouterView("futures", (known(),), positions={"BTCUSDT": D("0.5"), "ETHUSDT": D(0)})
    snap = VenueSnapshot(NOW, open_orders=(venue_order(status="PARTIALLY_FILLED",
                                                       executed="0.2"),),
                         trades=(trade(1, "0.2"),),
                         positions={"BTCUSDT": D("0.7"), "ETHUSDT": D(0)})
    result = reconcile(view, snap, CFG)
    assert kinds(result) == [DiscrepancyKind.MISSED_FILL]
    assert result.events[0].product == "futures"
    snap_off = VenueSnapshot(NOW, open_orders=snap.open_orders, trades=snap.trades,
                             positions={"BTCUSDT": D("0.9")})
    result2 = reconcile(view, snap_off, CFG)
    assert kinds(result2) == [DiscrepancyKind.MISSED_FILL, DiscrepancyKind.POSITION_MISMATCH]
    tolerant = ReconcileConfig("spk", position_tolerance=D("0.25"))
    assert kinds(reconcile(view, snap_off, tolerant)) == [DiscrepancyKind.MISSED_FILL]


def test_entry_ids_are_stable_and_modes_configurable() -> None:
    view = RouterView("spot", (known(),))
    snap = VenueSnapshot(NOW, open_orders=(venue_order("manual", oid=2),),
                         queries={"spk-a": venue_order(status="FILLED", executed="1")})
    a = reconcile(view, snap, CFG)
    b = reconcile(view, snap, CFG)
    assert [e.id for e in a.entries] == [e.id for e in b.entries]
    assert len({e.id for e in a.entries}) == len(a.entries)
    assert a.mode == "halted"  # fail closed by default
    cfg = ReconcileConfig("spk", mode="reducing",
                          modes={DiscrepancyKind.EXTERNAL_ORDER: "halted"})
    c = reconcile(view, snap, cfg)
    assert {e.kind: e.mode for e in c.entries} == {
        DiscrepancyKind.EXTERNAL_ORDER: "halted", DiscrepancyKind.MISSED_FILL: "reducing"}
    assert c.mode == "halted"
    assert pending_mode([e for e in c.entries if e.mode == "reducing"]) == "reducing"
    assert pending_mode([]) is None


def test_inconsistent_inputs_raise() -> None:
    with pytest.raises(ReconcileInputError):
        reconcile(RouterView("spot", (known(), known())), VenueSnapshot(NOW), CFG)
    with pytest.raises(ReconcileInputError):
        reconcile(RouterView("spot", (), uncertain=frozenset({"spk-x"})), VenueSnapshot(NOW),
                  CFG)
    with pytest.raises(ReconcileInputError):
        reconcile(RouterView("spot", ()), VenueSnapshot(NOW, queries={"spk-x": NotFound("spk-x")}),
                  CFG)
    with pytest.raises(ReconcileInputError):
        reconcile(RouterView("spot", (known(),)),
                  VenueSnapshot(NOW, queries={"spk-a": venue_order("spk-other")}), CFG)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_orders=st.integers(1, 8))
def test_synthetic_fills_are_exactly_the_missed_venue_trades(seed: int, n_orders: int) -> None:
    """Venue ground truth: orders with trades. The router saw a random subset of the trades (and
    stored a prefix of them). Reconciliation must feed exactly the unseen trades, never anything
    else, bring every order's cumulative quantity to the venue's, and never emit REJECTED."""
    rng = random.Random(seed)
    next_tid = 1000
    orders, venue_states, all_trades, seen = [], [], [], set()
    uncertain, queries = set(), {}
    for i in range(n_orders):
        cid, oid = f"spk-{i}", 50 + i
        side = rng.choice(["BUY", "SELL"])
        qty = D(rng.randint(1, 5))
        n_fills = rng.randint(0, 4)
        fills = [D(1) * qty / max(n_fills, 1)] * n_fills
        trades_here = []
        for f in fills:
            trades_here.append(trade(next_tid, str(f), oid=oid, buyer=side == "BUY"))
            next_tid += rng.randint(1, 7)
        executed = sum((t.qty for t in trades_here), D(0))
        status = rng.choice(["NEW", "CANCELED", "EXPIRED"]) if n_fills == 0 else (
            "FILLED" if executed >= qty else rng.choice(["PARTIALLY_FILLED", "CANCELED"]))
        st_ = OrderStatus("BTCUSDT", oid, cid, D(100), qty, executed, executed * 100, status,
                          "GTC", "LIMIT", side)
        router_saw = [t for t in trades_here if rng.random() < 0.5]
        seen |= {t.trade_id for t in router_saw}
        seen_qty = sum((t.qty for t in router_saw), D(0))
        if router_saw:
            known_status = "FILLED" if seen_qty >= qty else "PARTIALLY_FILLED"
        else:
            known_status = rng.choice(["NEW", "PENDING_NEW"])
        ack_seen = known_status != "PENDING_NEW"
        orders.append(KnownOrder(cid, "BTCUSDT", side, "LIMIT", "GTC", qty, D(100), known_status,
                                 seen_qty, seen_qty * 100, oid if ack_seen else None))
        if not ack_seen:
            uncertain.add(cid)
        venue_states.append(st_)
        all_trades.extend(trades_here)
        if status in ("NEW", "PARTIALLY_FILLED"):
            continue
        queries[cid] = st_
    open_orders = tuple(s for s in venue_states if s.status in ("NEW", "PARTIALLY_FILLED"))
    view = RouterView("spot", tuple(orders), frozenset(uncertain),
                      applied_trade_ids=frozenset(("BTCUSDT", t) for t in seen))
    assert set(plan_queries(view, open_orders)) <= set(queries) | set(uncertain)
    rng.shuffle(all_trades)
    result = reconcile(view, VenueSnapshot(NOW, open_orders, queries, tuple(all_trades)), CFG)

    fed = [e for e in result.events if e.is_trade]
    assert sorted(e.trade_id for e in fed) == sorted(  # type: ignore[type-var]
        t.trade_id for t in all_trades if t.trade_id not in seen)
    by_id = {t.trade_id: t for t in all_trades}
    for e in fed:
        t = by_id[e.trade_id]  # type: ignore[index]
        assert (e.last_qty, e.last_price, e.order_id) == (t.qty, t.price, t.order_id)
    for order, st_ in zip(orders, venue_states, strict=True):
        events = [e for e in result.events if e.client_order_id == order.client_order_id]
        cum = events[-1].cum_qty if events else order.executed_qty
        assert cum == st_.executed_qty
        final = events[-1].order_status if events else order.status
        assert final == st_.status
    assert all(e.order_status != "REJECTED" for e in result.events)
    assert result.absent_at_venue == () and result.unresolved == ()
    missed = sum(1 for e in result.entries if e.kind is DiscrepancyKind.MISSED_FILL)
    assert missed == len(fed)
