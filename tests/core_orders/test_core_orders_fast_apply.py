"""The fast event path (``apply``, ``OrderTable.apply_event``) against the plain reference model.

Random event sequences — duplicates, reordering, contradictions, amendments, futures-style
events without a quote amount, cancels by original client id, other symbols, a second venue
order id — must give the same orders, effects, fills and positions, or the same error.
Decimals are compared by their text too (exponents included): the stored amounts must not
change representation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import pytest
from core_orders_helpers import T0_MS, order
from core_orders_reference import ReferenceTable, reference_apply
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.core import orders as o
from spark.core.intents import Side
from spark.core.orders import Effects, Order, OrderError, OrderState, OrderTable, apply
from spark.exchange.events import ExecutionEvent

D = Decimal
S = OrderState

STATUSES = ["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "PENDING_CANCEL", "REJECTED",
            "EXPIRED", "EXPIRED_IN_MATCH", "NEW_INSURANCE"]
EXEC_TYPES = ["NEW", "TRADE", "CANCELED", "REPLACED", "AMENDMENT", "EXPIRED", "CALCULATED"]
AMOUNTS = ["0", "0.00000000", "0.001", "0.00100000", "0.25", "0.5", "1", "1.0", "2", "1E+1",
           "100", "100.5", "45000.00000000"]
CIDS = ["spk-a", "spk-b", "spk-c"]

amount = st.sampled_from(AMOUNTS).map(D)


@st.composite
def events(draw: st.DrawFn, cids: list[str] = CIDS) -> ExecutionEvent:
    cid = draw(st.sampled_from(cids))
    by_orig = draw(st.integers(0, 5)) == 0  # a spot cancel: c is the cancel's id, C the order's
    trade_id = draw(st.one_of(st.none(), st.integers(1, 6)))
    return ExecutionEvent(
        product=draw(st.sampled_from(["spot", "futures"])),
        symbol=draw(st.sampled_from(["BTCUSDT"] * 9 + ["ETHUSDT"])),
        client_order_id=f"cancel-{cid}" if by_orig else draw(st.sampled_from([cid] * 9 + ["x"])),
        order_id=draw(st.sampled_from([77] * 9 + [78])),
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=draw(amount),
        price=draw(amount),
        stop_price=D(0),
        execution_type=draw(st.sampled_from(EXEC_TYPES)),
        order_status=draw(st.sampled_from(STATUSES)),
        reject_reason="NONE",
        last_qty=draw(amount),
        cum_qty=draw(amount),
        last_price=draw(amount),
        commission=draw(amount),
        commission_asset=draw(st.sampled_from([None, "BNB"])),
        trade_id=trade_id,
        execution_id=f"e{draw(st.integers(1, 12))}",
        is_maker=draw(st.booleans()),
        event_time=T0_MS + draw(st.integers(-5, 5)),
        transaction_time=T0_MS + draw(st.integers(0, 5)),
        orig_client_order_id=cid if by_orig else None,
        cum_quote_qty=draw(st.one_of(st.none(), amount)),
        last_quote_qty=draw(st.one_of(st.none(), amount)),
        average_price=draw(st.one_of(st.none(), amount)),
    )


def start_order(cid: str, state: OrderState, side: Side = Side.BUY) -> Order:
    od = order("2", cid=cid, side=side, status=S.PARKED if state is S.PARKED else (
        S.DRY_RUN if state is S.DRY_RUN else S.PENDING))
    if state is S.UNKNOWN:
        od = o.mark_unknown(o.mark_sending(od, T0_MS, T0_MS + 5000), T0_MS)
    return od


def same_value(a: Any, b: Any) -> bool:
    """Equal, and for Decimals the same text (exponent included)."""
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return type(a) is type(b) and a == b and str(a) == str(b)
    if attrs.has(type(a)) and type(a) is type(b):
        return all(same_value(getattr(a, f.name), getattr(b, f.name))
                   for f in attrs.fields(type(a)))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OrderError as exc:
        return (type(exc), str(exc))


start_states = st.sampled_from([S.PENDING, S.PENDING, S.PENDING, S.UNKNOWN, S.PARKED, S.DRY_RUN])


@settings(max_examples=400, deadline=None)
@given(state=start_states, script=st.lists(events(cids=["spk-a"]), max_size=25),
       now=st.lists(st.one_of(st.none(), st.integers(T0_MS - 5, T0_MS + 10)), min_size=25,
                    max_size=25))
def test_apply_matches_the_reference_model(
    state: OrderState, script: list[ExecutionEvent], now: list[int | None]
) -> None:
    fast = ref = start_order("spk-a", state)
    for event, now_ms in zip(script, now, strict=False):
        got = outcome(apply, fast, event, now_ms)
        want = outcome(reference_apply, ref, event, now_ms)
        assert same_value(got, want), (event, got, want)
        if isinstance(got, tuple) and isinstance(got[0], Order):
            fast, ref = got[0], want[0]
            again = apply(fast, event, now_ms)  # applied once: now a duplicate
            assert again[0] is fast and again[1].duplicate


@settings(max_examples=300, deadline=None)
@given(states=st.lists(start_states, min_size=3, max_size=3),
       script=st.lists(events(), max_size=40),
       max_final=st.integers(0, 3), max_seen=st.integers(0, 6), known_position=st.booleans())
def test_table_matches_the_reference_model(
    states: list[OrderState], script: list[ExecutionEvent], max_final: int, max_seen: int,
    known_position: bool,
) -> None:
    positions = {"BTCUSDT": D("1.5")} if known_position else None
    fast = OrderTable(max_final=max_final, max_seen_ids=max_seen, positions=positions)
    ref = ReferenceTable(max_final=max_final, max_seen_ids=max_seen, positions=positions)
    for cid, state, side in zip(CIDS, states, [Side.BUY, Side.SELL, Side.BUY], strict=True):
        fast.add(start_order(cid, state, side))
        ref.add(start_order(cid, state, side))
    for event in script:
        got = outcome(fast.apply_event, event, T0_MS + 1)
        want = outcome(ref.apply_event, event, T0_MS + 1)
        assert same_value(got, want), (event, got, want)
        assert fast.positions == ref.positions
        for cid in CIDS:
            assert same_value(fast.get(cid), ref.get(cid))
        assert [x.client_order_id for x in fast] == [*ref.open, *ref.final]


def test_effects_without_fills_are_shared_values() -> None:
    a, ea = apply(order(cid="spk-x"), _new_event("spk-x", "n1"))
    _, eb = apply(order(cid="spk-y"), _new_event("spk-y", "n1"))
    assert ea == Effects(S.PENDING, S.NEW, changed=True) and ea is eb  # immutable: shared
    assert apply(a, _new_event("spk-x", "n1"))[1] == Effects(S.NEW, S.NEW, changed=False,
                                                             duplicate=True)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ea.changed = False  # type: ignore[misc]


def test_new_versions_are_frozen_and_leave_the_old_one_alone() -> None:
    first = order(cid="spk-x")
    new, _ = apply(first, _new_event("spk-x", "n1"))
    assert first.status is S.PENDING and first.execution_ids == frozenset()
    assert new.status is S.NEW and new.execution_ids == {"n1"} and new.version == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        new.status = S.FILLED  # type: ignore[misc]
    assert attrs.evolve(new, version=9) == attrs.evolve(new, version=9)  # still an attrs class
    assert new == attrs.evolve(first, status=S.NEW, venue_order_id=77, execution_ids={"n1"},
                               version=2, updated_ms=new.updated_ms)


def _new_event(cid: str, exec_id: str) -> ExecutionEvent:
    from core_orders_helpers import event

    return event("NEW", cid=cid, exec_id=exec_id)
