"""A plain reference model of the order state machine's event path, for property tests.

This is how :func:`spark.core.orders.apply` and :meth:`OrderTable.apply_event` were written
before they were made fast (``attrs.evolve``, one helper per rule, attribute access): slower,
but easy to check against the module docstring. The fast versions must give the same result —
the same orders, effects, fills, positions — or raise the same error, for any event sequence.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

import attrs

from spark.core.intents import OrderType, signed_quantity
from spark.core.orders import (
    TRANSITIONS,
    VENUE_STATUS,
    DuplicateVenueOrder,
    Effects,
    EventResult,
    Fill,
    IllegalTransition,
    Order,
    OrderMismatch,
    OrderState,
    UnknownVenueStatus,
)
from spark.exchange.events import ExecutionEvent

ZERO = Decimal(0)
RANK = {
    OrderState.PARKED: -1, OrderState.DRY_RUN: -1, OrderState.PENDING: 0, OrderState.UNKNOWN: 0,
    OrderState.NEW: 1, OrderState.PARTIALLY_FILLED: 2, OrderState.PENDING_CANCEL: 3,
    OrderState.FILLED: 4, OrderState.CANCELED: 4, OrderState.REJECTED: 4, OrderState.EXPIRED: 4,
}
AMENDING = frozenset({"REPLACED", "AMENDMENT"})


def venue_state(status: str) -> OrderState:
    try:
        return VENUE_STATUS[status]
    except KeyError:
        raise UnknownVenueStatus(f"unknown venue order status {status!r}") from None


def check_same_order(order: Order, client_id: str, symbol: str, *, alt_client_id: str) -> None:
    if order.client_order_id not in (client_id, alt_client_id):
        raise OrderMismatch(f"order {order.client_order_id}: information about {client_id}")
    if symbol != order.symbol:
        raise OrderMismatch(f"order {order.client_order_id}: {order.symbol}, not {symbol}")


def check_venue_id(order: Order, venue_order_id: int) -> None:
    if order.venue_order_id is not None and venue_order_id != order.venue_order_id:
        raise DuplicateVenueOrder(order.client_order_id, order.venue_order_id, venue_order_id)


def check_move(order: Order, to: OrderState, source: str) -> None:
    if to not in TRANSITIONS[order.status]:
        raise IllegalTransition(order.status, to, order.client_order_id,
                                f"{source} contradicts what is known")


def merge_status(order: Order, venue: OrderState, source: str) -> tuple[OrderState, bool]:
    current = order.status
    if venue == current:
        return current, False
    if current in (OrderState.PARKED, OrderState.DRY_RUN):
        raise IllegalTransition(current, venue, order.client_order_id,
                                f"{source} for an order that was never sent")
    if current.is_final:
        if venue.is_final:
            raise IllegalTransition(current, venue, order.client_order_id,
                                    f"{source} says {venue} but the order is {current}")
        return current, True
    if RANK[venue] < RANK[current]:
        return current, True
    return venue, False


def consistent(status: OrderState, executed: Decimal) -> OrderState:
    if status == OrderState.NEW and executed > 0:
        return OrderState.PARTIALLY_FILLED
    return status


def bump(order: Order, now_ms: int, **changes: object) -> Order:
    return attrs.evolve(order, version=order.version + 1,
                        updated_ms=max(order.updated_ms, now_ms), **changes)  # type: ignore[arg-type]


def reference_apply(order: Order, event: ExecutionEvent,
                    now_ms: int | None = None) -> tuple[Order, Effects]:
    check_same_order(order, event.orig_client_order_id or event.client_order_id, event.symbol,
                     alt_client_id=event.client_order_id)
    before = order.status
    if event.execution_id in order.execution_ids:
        return order, Effects(before, before, changed=False, duplicate=True)
    check_venue_id(order, event.order_id)
    target, stale = merge_status(order, venue_state(event.order_status), "event")

    new_fills: tuple[Fill, ...] = ()
    trade_ids = order.trade_ids
    fills_qty, fills_quote = order.fills_qty, order.fills_quote
    if event.is_trade and event.trade_id is not None and event.trade_id not in trade_ids:
        quote = (event.last_quote_qty if event.last_quote_qty is not None
                 else event.last_qty * event.last_price)
        new_fills = (Fill(
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            qty=event.last_qty, price=event.last_price, quote_qty=quote,
            commission=event.commission, commission_asset=event.commission_asset,
            trade_id=event.trade_id, execution_id=event.execution_id, is_maker=event.is_maker,
            time_ms=event.transaction_time,
        ),)
        trade_ids = trade_ids | {event.trade_id}
        fills_qty = fills_qty + event.last_qty
        fills_quote = fills_quote + quote

    executed, cum_quote, avg = order.executed_qty, order.cum_quote, order.avg_price
    if event.cum_qty > executed:
        executed = event.cum_qty
        if event.cum_quote_qty is not None:
            cum_quote = event.cum_quote_qty
        elif event.average_price is not None and event.average_price > 0:
            cum_quote = event.average_price * executed
        else:
            cum_quote = cum_quote + sum((f.quote_qty for f in new_fills), ZERO)
        avg = cum_quote / executed
    if fills_qty > executed:
        executed, cum_quote = fills_qty, fills_quote
        avg = cum_quote / executed
    target = consistent(target, executed)
    if target != order.status:
        check_move(order, target, "event")

    quantity, price = order.quantity, order.price
    if event.execution_type in AMENDING and not stale:
        quantity = event.quantity
        if order.type == OrderType.LIMIT and event.price > 0:
            price = event.price

    stamp = now_ms if now_ms is not None else max(order.updated_ms, event.event_time)
    new = bump(order, stamp, status=target, venue_order_id=event.order_id,
               executed_qty=executed, cum_quote=cum_quote, avg_price=avg, fills_qty=fills_qty,
               fills_quote=fills_quote, execution_ids=order.execution_ids | {event.execution_id},
               trade_ids=trade_ids, quantity=quantity, price=price)
    return new, Effects(before, target, changed=True, stale=stale, new_fills=new_fills)


class ReferenceTable:
    """The order table's event path as it was: open dict, final LRU, evicted ids LRU."""

    def __init__(self, *, max_final: int, max_seen_ids: int,
                 positions: dict[str, Decimal] | None = None) -> None:
        self.max_final = max_final
        self.max_seen = max_seen_ids
        self.open: dict[str, Order] = {}
        self.final: OrderedDict[str, Order] = OrderedDict()
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.positions = dict(positions or {})

    def get(self, client_order_id: str) -> Order | None:
        order = self.open.get(client_order_id)
        return self.final.get(client_order_id) if order is None else order

    def add(self, order: Order) -> None:
        self.store(order)

    def apply_event(self, event: ExecutionEvent, now_ms: int | None = None) -> EventResult:
        client_id = event.orig_client_order_id or event.client_order_id
        order = self.get(client_id)
        if order is None and event.orig_client_order_id:
            order = self.get(event.client_order_id)
        if order is None:
            if event.execution_id in self.seen:
                self.seen.move_to_end(event.execution_id)
                return EventResult(None, None, duplicate=True)
            return EventResult(None, None, unknown_order=True)
        new, effects = reference_apply(order, event, now_ms)
        if effects.duplicate:
            return EventResult(order, effects, duplicate=True)
        self.store(new)
        for fill in effects.new_fills:
            current = self.positions.get(fill.symbol)
            if current is not None:
                self.positions[fill.symbol] = current + signed_quantity(fill.side, fill.qty)
        return EventResult(new, effects)

    def store(self, order: Order) -> None:
        cid = order.client_order_id
        if order.is_final:
            self.open.pop(cid, None)
            self.final[cid] = order
            self.final.move_to_end(cid)
            while len(self.final) > self.max_final:
                _, evicted = self.final.popitem(last=False)
                for eid in evicted.execution_ids:
                    self.seen[eid] = None
                    self.seen.move_to_end(eid)
                while len(self.seen) > self.max_seen:
                    self.seen.popitem(last=False)
        else:
            self.final.pop(cid, None)
            self.open[cid] = order
