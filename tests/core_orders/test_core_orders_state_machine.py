"""The order state machine: local moves, venue events (duplicates, reordering), queries."""

from __future__ import annotations

import itertools
from decimal import Decimal

import attrs
import pytest
from core_orders_helpers import T0_MS, event, fill_event, intent, order, venue_view
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.core import orders as o
from spark.core.intents import OrderType, Side
from spark.core.orders import (
    TRANSITIONS,
    DuplicateVenueOrder,
    IllegalTransition,
    Order,
    OrderMismatch,
    OrderState,
    QueryDecision,
    UnknownVenueStatus,
    apply,
    apply_query,
)
from spark.exchange.events import ExecutionEvent
from spark.exchange.models import Trade

D = Decimal
S = OrderState


# -- local moves ------------------------------------------------------------------------------


def test_new_order_from_intent() -> None:
    i = intent("0.5", cid="spk-new")
    od = o.new_order(i, S.PENDING, T0_MS)
    assert (od.client_order_id, od.symbol, od.side, od.quantity) == ("spk-new", "BTCUSDT",
                                                                     Side.BUY, D("0.5"))
    assert od.status is S.PENDING and od.version == 1 and od.created_ms == T0_MS
    assert od.executed_qty == 0 and od.venue_order_id is None and od.is_open
    with pytest.raises(IllegalTransition):
        o.new_order(i, S.NEW, T0_MS)


@pytest.mark.parametrize(("policy", "allowed", "state"), [
    ("auto", True, S.PENDING), ("confirm_required", True, S.PARKED), ("dry_run", True, S.DRY_RUN),
    ("auto", False, S.DRY_RUN), ("nonsense", True, S.DRY_RUN),
])
def test_initial_state(policy: str, allowed: bool, state: OrderState) -> None:
    assert o.initial_state(policy, allowed) is state


def test_every_pair_of_states_is_either_allowed_or_raises() -> None:
    for src, dst in itertools.product(S, S):
        od = Order(client_order_id="spk-x", symbol="BTCUSDT", side=Side.BUY,
                   type=OrderType.LIMIT, quantity=D(1), price=D(1), time_in_force=None,
                   status=src, version=3)
        if dst in TRANSITIONS[src]:
            moved = o.transition(od, dst, T0_MS + 1)
            assert moved.status is dst and moved.version == 4
            assert moved.updated_ms == T0_MS + 1
        else:
            with pytest.raises(IllegalTransition) as info:
                o.transition(od, dst, T0_MS)
            err = info.value
            assert (err.from_state, err.to_state, err.client_order_id) == (src, dst, "spk-x")
            assert "spk-x" in str(err) and err.reason == "illegal_transition"


def test_final_states_have_no_way_out() -> None:
    for s in o.FINAL_STATES:
        assert TRANSITIONS[s] == frozenset()
        assert s.is_final and not s.is_open


def test_parked_confirm_and_expiry() -> None:
    parked = order(status=S.PARKED)
    assert o.confirm(parked, T0_MS).status is S.PENDING
    assert o.expire_parked(parked, T0_MS).status is S.EXPIRED
    assert o.request_cancel(parked, T0_MS).status is S.CANCELED
    with pytest.raises(IllegalTransition):
        o.expire_parked(order(), T0_MS)
    with pytest.raises(IllegalTransition):
        o.confirm(order(), T0_MS)


def test_dry_run_orders_go_nowhere() -> None:
    dry = order(status=S.DRY_RUN)
    assert dry.is_final
    for move in (o.confirm, o.mark_unknown, o.request_cancel):
        with pytest.raises(IllegalTransition):
            move(dry, T0_MS)
    with pytest.raises(IllegalTransition):
        apply(dry, event("NEW"))


def test_send_ack_and_unknown() -> None:
    od = o.mark_sending(order(), T0_MS, T0_MS + 5000)
    assert od.attempts == 1 and od.send_deadline_ms == T0_MS + 5000 and od.status is S.PENDING
    unknown = o.mark_unknown(od, T0_MS + 10)
    assert unknown.status is S.UNKNOWN
    assert o.mark_unknown(unknown, T0_MS + 11) is unknown
    acked = o.apply_ack(od, 77, T0_MS + 1)
    assert acked.status is S.NEW and acked.venue_order_id == 77
    with pytest.raises(IllegalTransition):
        o.mark_sending(acked, T0_MS, None)
    with pytest.raises(DuplicateVenueOrder):
        o.apply_ack(acked, 78, T0_MS)


def test_ack_after_fill_event_does_not_regress() -> None:
    od, _ = apply(order(), fill_event(1, "0.4", "0.4"))
    assert o.apply_ack(od, 77, T0_MS) is od


def test_rejected_send() -> None:
    od = o.mark_rejected(order(), T0_MS, "-2010 insufficient balance")
    assert od.status is S.REJECTED and od.reject_reason == "-2010 insufficient balance"
    with pytest.raises(IllegalTransition):
        o.mark_rejected(od, T0_MS, "again")


def test_cancel_flow() -> None:
    new, _ = apply(order(), event("NEW", exec_id="n"))
    pc = o.request_cancel(new, T0_MS)
    assert pc.status is S.PENDING_CANCEL
    assert o.request_cancel(pc, T0_MS) is pc
    assert o.cancel_rejected(pc, T0_MS).status is S.NEW
    # a fill while the cancel is in flight is recorded; the cancel stays pending
    pcf, eff = apply(pc, fill_event(1, "0.3", "0.3"))
    assert pcf.status is S.PENDING_CANCEL and len(eff.new_fills) == 1
    assert o.cancel_rejected(pcf, T0_MS).status is S.PARTIALLY_FILLED
    done, eff = apply(pcf, event("CANCELED", exec_id="c", cum_qty="0.3", cum_quote="30"))
    assert done.status is S.CANCELED and eff.became_final
    assert o.cancel_rejected(done, T0_MS) is done  # the event won the race: nothing to undo
    with pytest.raises(IllegalTransition):
        o.request_cancel(order(), T0_MS)  # not at the venue yet: query first


# -- venue events -----------------------------------------------------------------------------


def test_in_order_lifecycle() -> None:
    od = order()
    od, e1 = apply(od, event("NEW", exec_id="n"))
    assert od.status is S.NEW and e1.status_changed and od.venue_order_id == 77
    od, e2 = apply(od, fill_event(1, "0.25", "0.25", price="100"))
    od, e3 = apply(od, fill_event(2, "0.75", "1", status="FILLED", price="104"))
    assert od.status is S.FILLED and e3.became_final
    assert od.executed_qty == 1 and od.fills_qty == 1 and od.missing_fill_qty == 0
    assert od.cum_quote == D("104") and od.avg_price == D("104")  # Z of the last event
    assert [f.trade_id for f in (*e2.new_fills, *e3.new_fills)] == [1001, 1002]
    assert od.version == 4
    assert od.execution_ids == {"n", "e1", "e2"} and od.trade_ids == {1001, 1002}


def test_duplicates_change_nothing() -> None:
    od, _ = apply(order(), fill_event(1, "0.5", "0.5"))
    again, eff = apply(od, fill_event(1, "0.5", "0.5"))
    assert again is od and eff.duplicate and not eff.changed and eff.new_fills == ()


def test_trade_before_new_and_stale_new_after() -> None:
    od, eff = apply(order(), fill_event(1, "0.4", "0.4"))
    assert od.status is S.PARTIALLY_FILLED and eff.before is S.PENDING
    od, eff = apply(od, event("NEW", exec_id="n"))
    assert od.status is S.PARTIALLY_FILLED and eff.stale and eff.changed  # seen, not applied
    assert "n" in od.execution_ids


def test_fill_events_out_of_order_keep_cum_and_record_each_fill() -> None:
    od = order()
    od, _ = apply(od, fill_event(2, "0.6", "1", status="FILLED"))
    assert od.status is S.FILLED and od.executed_qty == 1
    od, e1 = apply(od, fill_event(1, "0.4", "0.4"))
    assert od.status is S.FILLED and od.executed_qty == 1  # never decreases
    assert e1.stale and len(e1.new_fills) == 1  # the late fill is still a new fill
    assert od.fills_qty == 1


def test_contradicting_final_statuses_are_loud() -> None:
    od, _ = apply(order(), event("CANCELED", exec_id="c"))
    with pytest.raises(IllegalTransition):
        apply(od, event("FILLED", exec_id="f", x="TRADE", cum_qty="1", last_qty="1",
                        last_price="100", trade_id=5))


def test_event_for_another_order_or_venue_id() -> None:
    with pytest.raises(OrderMismatch):
        apply(order(), event("NEW", cid="spk-other"))
    with pytest.raises(OrderMismatch):
        apply(order(), event("NEW", symbol="ETHUSDT"))
    od, _ = apply(order(), event("NEW", exec_id="n", order_id=77))
    with pytest.raises(DuplicateVenueOrder):
        apply(od, event("PARTIALLY_FILLED", exec_id="x", order_id=78))
    with pytest.raises(UnknownVenueStatus):
        apply(order(), event("NEW_INSURANCE", exec_id="z"))


def test_spot_cancel_event_is_matched_by_original_client_id() -> None:
    od, _ = apply(order(), event("NEW", exec_id="n"))
    done, eff = apply(od, event("CANCELED", cid="web_cancel123", orig_cid="spk-o1", exec_id="c"))
    assert done.status is S.CANCELED and eff.became_final


def test_expired_in_match_and_amendment() -> None:
    od, _ = apply(order(), event("NEW", exec_id="n"))
    amended, _ = apply(od, event("NEW", exec_id="r", x="REPLACED", qty="0.5"))
    assert amended.quantity == D("0.5")
    stp, _ = apply(amended, event("EXPIRED_IN_MATCH", exec_id="s", x="TRADE_PREVENTION"))
    assert stp.status is S.EXPIRED


def test_futures_events_without_quote_use_average_price() -> None:
    ev = fill_event(1, "0.5", "0.5")._replace(product="futures", cum_quote_qty=None,
                                              last_quote_qty=None, average_price=D("101"))
    od, eff = apply(order(), ev)
    assert od.cum_quote == D("50.5") and od.avg_price == D("101")
    assert eff.new_fills[0].quote_qty == D("50")


def test_updated_ms_and_now() -> None:
    od, _ = apply(order(), event("NEW", exec_id="n", time_ms=T0_MS + 500))
    assert od.updated_ms == T0_MS + 500
    od2, _ = apply(od, event("CANCELED", exec_id="c", time_ms=T0_MS + 100), now_ms=T0_MS + 900)
    assert od2.updated_ms == T0_MS + 900


# -- trades and queries -----------------------------------------------------------------------


def trade(trade_id: int, qty: str, price: str = "100", order_id: int = 77) -> Trade:
    return Trade(symbol="BTCUSDT", trade_id=trade_id, order_id=order_id, price=D(price),
                 qty=D(qty), quote_qty=D(qty) * D(price), commission=D(0),
                 commission_asset="BNB", time=T0_MS, is_buyer=True, is_maker=False)


def test_fill_from_my_trades_is_not_counted_again_by_its_event() -> None:
    od, _ = apply(order(), event("NEW", exec_id="n"))
    od, eff = o.apply_trade(od, trade(1001, "0.4"), T0_MS)
    assert len(eff.new_fills) == 1 and od.fills_qty == D("0.4") and od.executed_qty == D("0.4")
    od, eff = apply(od, fill_event(1, "0.4", "0.4"))
    assert eff.new_fills == () and od.fills_qty == D("0.4")
    od2, eff = o.apply_trade(od, trade(1001, "0.4"), T0_MS)
    assert od2 is od and eff.duplicate
    with pytest.raises(OrderMismatch):
        o.apply_trade(od, trade(1002, "0.1", order_id=99), T0_MS)


def test_query_merges_status_and_reports_missing_fills() -> None:
    od, _ = apply(order(), event("NEW", exec_id="n"))
    new, res = apply_query(od, venue_view("PARTIALLY_FILLED", "0.6"), T0_MS + 1)
    assert res.decision is QueryDecision.APPLIED and res.changed
    assert new.status is S.PARTIALLY_FILLED and new.executed_qty == D("0.6")
    assert new.fills_qty == 0 and res.missing_fill_qty == D("0.6")  # no invented fills


def test_stale_query_does_not_regress() -> None:
    od, _ = apply(order(), fill_event(1, "0.5", "0.5"))
    same, res = apply_query(od, venue_view("NEW", "0"), T0_MS)
    assert same is od and res.stale and not res.changed
    assert "keeping ours" in res.detail


def test_query_resolves_unknown() -> None:
    unknown = o.mark_unknown(o.mark_sending(order(), T0_MS, T0_MS + 5000), T0_MS + 10)
    filled, res = apply_query(unknown, venue_view("FILLED", "1"), T0_MS + 20)
    assert filled.status is S.FILLED and filled.venue_order_id == 77
    assert res.decision is QueryDecision.APPLIED and res.missing_fill_qty == 1


def test_not_found_resend_only_after_the_send_deadline() -> None:
    unknown = o.mark_unknown(o.mark_sending(order(), T0_MS, T0_MS + 5000), T0_MS + 10)
    same, res = apply_query(unknown, None, T0_MS + 4999)
    assert res.decision is QueryDecision.QUERY_LATER and same is unknown
    pending, res = apply_query(unknown, None, T0_MS + 5000)
    assert res.decision is QueryDecision.RESEND_ALLOWED and pending.status is S.PENDING
    assert pending.client_order_id == unknown.client_order_id
    again = o.mark_sending(pending, T0_MS + 5001, T0_MS + 10001)
    assert again.attempts == 2


def test_an_inherited_order_is_never_resent() -> None:
    """Restored at restart: the previous process may have logged it at intake and never sent
    it (the guard may even have rejected it), so "no such order" ends it, never resends it —
    once a request it may have sent just before dying can no longer be placed."""
    inherited = o.inherit(order(), T0_MS + 100, T0_MS + 6100)
    assert inherited.status is S.UNKNOWN and not inherited.resend_allowed
    same, res = apply_query(inherited, None, T0_MS + 6099)
    assert res.decision is QueryDecision.QUERY_LATER and same is inherited
    ended, res = apply_query(inherited, None, T0_MS + 6100)
    assert res.decision is QueryDecision.NOT_SENT and res.changed
    assert ended.status is S.EXPIRED and ended.reject_reason == o.NOT_SENT_REASON
    assert ended.attempts == inherited.attempts  # nothing was sent
    found, res = apply_query(inherited, venue_view("FILLED", "1"), T0_MS + 200)
    assert res.decision is QueryDecision.APPLIED and found.status is S.FILLED
    acked = o.apply_ack(o.mark_sending(order(), T0_MS, T0_MS), 77, T0_MS)
    kept = o.inherit(acked, T0_MS + 100, T0_MS + 6100)  # an open order stays as it is
    assert kept.status is S.NEW and kept.version == acked.version


def test_an_inherited_unknown_order_waits_for_the_later_deadline() -> None:
    unknown = o.mark_unknown(o.mark_sending(order(), T0_MS, T0_MS + 9000), T0_MS + 10)
    inherited = o.inherit(unknown, T0_MS + 100, T0_MS + 6100)
    assert inherited.send_deadline_ms == T0_MS + 9000
    _, res = apply_query(inherited, None, T0_MS + 8999)
    assert res.decision is QueryDecision.QUERY_LATER
    stored = attrs.evolve(unknown, send_deadline_ms=None)  # as read back from the database
    inherited = o.inherit(stored, T0_MS + 100, T0_MS + 6100)
    _, res = apply_query(inherited, None, T0_MS + 6099)
    assert res.decision is QueryDecision.QUERY_LATER


def test_a_confirmed_inherited_parked_order_follows_the_usual_rule() -> None:
    parked = o.new_order(intent("0.5"), S.PARKED, T0_MS)
    inherited = o.inherit(parked, T0_MS + 100, T0_MS + 6100)
    assert inherited.status is S.PARKED and not inherited.resend_allowed
    confirmed = o.confirm(inherited, T0_MS + 200)
    assert confirmed.status is S.PENDING and confirmed.resend_allowed
    unknown = o.mark_unknown(o.mark_sending(confirmed, T0_MS + 200, T0_MS + 5200),
                             T0_MS + 300)
    _, res = apply_query(unknown, None, T0_MS + 5200)
    assert res.decision is QueryDecision.RESEND_ALLOWED


def test_not_found_never_allows_resend_once_the_venue_had_it() -> None:
    acked = o.apply_ack(o.mark_sending(order(), T0_MS, T0_MS), 77, T0_MS)
    unknown = o.mark_unknown(acked, T0_MS + 1)
    same, res = apply_query(unknown, None, T0_MS + 10**6)
    assert res.decision is QueryDecision.MISSING_AT_VENUE and same is unknown
    seen, _ = apply(o.mark_sending(order(), T0_MS, T0_MS), fill_event(1, "0.1", "0.1"))
    _, res = apply_query(o.mark_unknown(seen, T0_MS), None, T0_MS + 10**6)
    assert res.decision is QueryDecision.MISSING_AT_VENUE
    _, res = apply_query(order(), None, T0_MS)
    assert res.decision is QueryDecision.QUERY_LATER  # still PENDING: the send is in flight
    done, _ = apply(acked, event("CANCELED", exec_id="c"))
    _, res = apply_query(done, None, T0_MS)
    assert res.decision is QueryDecision.APPLIED and not res.changed  # purged at the venue


def test_query_contradiction_and_mismatch() -> None:
    done, _ = apply(order(), event("CANCELED", exec_id="c"))
    with pytest.raises(IllegalTransition):
        apply_query(done, venue_view("FILLED", "1"), T0_MS)
    with pytest.raises(OrderMismatch):
        apply_query(order(), venue_view("NEW", cid="spk-zzz"), T0_MS)
    with pytest.raises(IllegalTransition):
        apply_query(order(status=S.PARKED), venue_view("NEW"), T0_MS)


# -- properties: any delivery order, any duplicates, same result --------------------------------


@st.composite
def venue_script(draw: st.DrawFn) -> tuple[list[ExecutionEvent], str, Decimal, Decimal]:
    """What the venue emits for one order of quantity 1: NEW, some fills at different prices,
    maybe a final cancel/expiry. Returns the events, the final status and the final cumulative
    quantity and quote (``Z`` is the running sum of ``Y`` = ``l x L``, as on Binance)."""
    n_fills = draw(st.integers(0, 5))
    parts = [D(draw(st.integers(1, 5))) for _ in range(n_fills)]
    full = n_fills > 0 and draw(st.booleans())
    weight = sum(parts, D(0))
    total = D(1) if full else (weight / (weight + 1)).quantize(D("0.0001")) if parts else D(0)
    events = [event("NEW", exec_id="n", cum_qty="0")]
    cum = cum_quote = D(0)
    for k, part in enumerate(parts, start=1):
        last = (total * part / weight).quantize(D("0.0001")) if k < n_fills else total - cum
        price = D(100 + 3 * k)
        cum += last
        cum_quote += last * price
        status = "FILLED" if full and k == n_fills else "PARTIALLY_FILLED"
        events.append(fill_event(k, str(last), str(cum), status=status, price=str(price),
                                 cum_quote=str(cum_quote)))
    final = "FILLED" if full else draw(st.sampled_from(["PARTIALLY_FILLED" if parts else "NEW",
                                                        "CANCELED", "EXPIRED"]))
    if final in ("CANCELED", "EXPIRED"):
        events.append(event(final, exec_id="end", cum_qty=str(cum), cum_quote=str(cum_quote),
                            x=final))
    return events, final, cum, cum_quote


def as_trade(ev: ExecutionEvent) -> Trade:
    """The ``myTrades`` row of a fill event (no execution id, same trade id)."""
    assert ev.trade_id is not None and ev.last_quote_qty is not None
    return Trade(symbol=ev.symbol, trade_id=ev.trade_id, order_id=ev.order_id,
                 price=ev.last_price, qty=ev.last_qty, quote_qty=ev.last_quote_qty,
                 commission=ev.commission, commission_asset="USDT", time=ev.transaction_time,
                 is_buyer=True, is_maker=ev.is_maker)


@settings(max_examples=150, deadline=None)
@given(script=venue_script(), data=st.data())
def test_any_delivery_order_with_duplicates_gives_the_same_order(
    script: tuple[list[ExecutionEvent], str, Decimal, Decimal], data: st.DataObject
) -> None:
    """Events delivered in any order, some twice, some fills also fetched from ``myTrades``:
    the order ends the same, with every fill recorded exactly once."""
    events, final_status, final_cum, final_quote = script
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=4))
    trades = [as_trade(e) for e in events if e.trade_id is not None and data.draw(st.booleans())]
    items: list[ExecutionEvent | Trade] = [*events, *dupes, *trades]
    delivery = data.draw(st.permutations(items))

    od = o.mark_sending(order(), T0_MS, T0_MS + 5000)
    fills: list[o.Fill] = []
    last_cum = D(0)
    last_version = od.version
    for item in delivery:
        if isinstance(item, Trade):
            od, eff = o.apply_trade(od, item, T0_MS)
        else:
            od, eff = apply(od, item)
            again, eff2 = apply(od, item)  # re-applying what was just applied: a no-op
            assert again is od and eff2.duplicate
        fills += eff.new_fills
        assert od.executed_qty >= last_cum, "cumulative quantity never decreases"
        last_cum = od.executed_qty
        if eff.duplicate:
            assert not eff.changed and od.version == last_version
        else:
            assert od.version == last_version + 1
        last_version = od.version

    assert od.status == o.VENUE_STATUS[final_status]
    assert od.executed_qty == final_cum
    trade_ids = [f.trade_id for f in fills]
    assert len(trade_ids) == len(set(trade_ids)), "each fill recorded once"
    assert sum((f.qty for f in fills), D(0)) == final_cum == od.fills_qty
    assert od.cum_quote == final_quote == sum((f.quote_qty for f in fills), D(0))
    assert od.avg_price == (final_quote / final_cum if final_cum else None)
    assert od.missing_fill_qty == 0
    assert od.execution_ids == {e.execution_id for e in events}


@settings(max_examples=100, deadline=None)
@given(moves=st.lists(st.sampled_from(S), max_size=12))
def test_random_local_moves_follow_the_table(moves: list[OrderState]) -> None:
    od = order()
    for to in moves:
        if to in TRANSITIONS[od.status]:
            before = od.version
            od = o.transition(od, to, T0_MS)
            assert od.status is to and od.version == before + 1
        else:
            with pytest.raises(IllegalTransition):
                o.transition(od, to, T0_MS)
