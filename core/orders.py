"""The order state machine and the table of orders the router owns: sans-IO, time passed in.

Why a strict machine: the order path must never lose a fill, never count one twice, and never
send an order twice (DESIGN invariants 2-4), while the venue delivers events duplicated, out of
order, or not at all (reconnects). So every change goes through one place that knows which moves
exist, and an impossible one raises :class:`IllegalTransition` — loudly, with the client order
id — instead of quietly corrupting the book.

States (:class:`OrderState`)::

    PARKED ──confirm──▶ PENDING ──send──▶ NEW ──▶ PARTIALLY_FILLED ──▶ FILLED
      │                  │  ▲  │           │            │
      │ confirm timeout  │  │  │ timeout,  ├──▶ PENDING_CANCEL ──▶ CANCELED
      ▼                  │  │  ▼ 5xx,-1007 │                        EXPIRED
    EXPIRED              │  └─UNKNOWN◀─────┘ (any request whose outcome is unknown)
                         ▼    (venue: "no such order" → resend allowed → PENDING)
                      REJECTED
    DRY_RUN: recorded, never sent (final).

* ``PENDING`` - approved and being sent; the client order id is fixed before the first attempt.
* ``UNKNOWN`` - a request about the order ended without an answer (timeout, 5xx, 503, -1007). The
  router must ask the venue (:func:`apply_query`) before doing anything else with it.
* ``PARKED`` - ``LIVE_POLICY=confirm_required``: waiting for ``ctl confirm``; confirm → ``PENDING``,
  timeout → ``EXPIRED``, cancel → ``CANCELED`` (it never reached the venue).
* ``PENDING_CANCEL`` - a cancel was sent; fills may still arrive and are recorded.
* Final: ``FILLED``, ``CANCELED``, ``REJECTED``, ``EXPIRED``, ``DRY_RUN``.

Venue events (:func:`apply`) are merged, not replayed:

* **Idempotent.** An execution id already applied changes nothing (``Effects.duplicate``). A fill
  is new only if its trade id is new, so a fill learned from ``myTrades`` (:func:`apply_trade`) is
  not counted again when its event arrives.
* **Tolerant of reordering.** Statuses only move forward (``PENDING``/``UNKNOWN`` <  ``NEW`` <
  ``PARTIALLY_FILLED`` < ``PENDING_CANCEL`` < final). A TRADE before its NEW moves ``PENDING``
  straight to ``PARTIALLY_FILLED``/``FILLED``; a stale NEW after that is ignored
  (``Effects.stale``) but still recorded as seen. Cumulative quantity never decreases. Fills that
  arrive after a final status are still recorded (they happened); the status stays.
* **Contradictions are loud.** Two different final statuses, an event for an order that was never
  sent, a second venue order id for one client id (a double send): exceptions, not guesses.

Spot cancel events carry the cancel request's id in ``c`` and the order's in ``C``; the order is
found by ``C`` when present.

Reconciliation (:func:`apply_query`): the venue's answer is the truth for status and cumulative
quantity, but fills are never invented — a venue ``executedQty`` above the fills we have recorded
is reported as ``missing_fill_qty`` so the router fetches the trades. "No such order" for an
``UNKNOWN`` order that never reached the venue as far as we know (no venue id, no event, no fill)
is the one case where a resend is allowed (DESIGN invariant 2), and only once the send's deadline
has passed: an order request carries ``timestamp`` + ``recvWindow`` and the venue (the matching
engine too, for USD-M futures) refuses it after that, so a copy still in flight can no longer be
placed once ``now_ms >= send_deadline_ms``. Before that the answer is ``QUERY_LATER``.
An order this process inherited from a previous one (:func:`inherit`: restored at restart) is
never resent: the previous process's intent may be stale, or one the risk guard rejected (the
write-ahead record starts before the guard decides), so "no such order" ends it ``EXPIRED``
with reason ``not_sent_before_restart`` (``NOT_SENT``) and a trader decides again.

:class:`OrderTable` holds the orders by client id, counts open ones, keeps signed positions from
fills, and bounds its memory: open orders always, final ones in an LRU, and the execution ids of
evicted orders in a second bounded LRU so late duplicates are still recognised.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Protocol

import attrs

from spark.core.intents import OrderIntent, OrderType, Side, TimeInForce, signed_quantity
from spark.exchange.events import (
    EV_AVERAGE_PRICE,
    EV_CLIENT_ORDER_ID,
    EV_COMMISSION,
    EV_COMMISSION_ASSET,
    EV_CUM_QTY,
    EV_CUM_QUOTE_QTY,
    EV_EVENT_TIME,
    EV_EXECUTION_ID,
    EV_EXECUTION_TYPE,
    EV_IS_MAKER,
    EV_LAST_PRICE,
    EV_LAST_QTY,
    EV_LAST_QUOTE_QTY,
    EV_ORDER_ID,
    EV_ORDER_STATUS,
    EV_ORIG_CLIENT_ORDER_ID,
    EV_PRICE,
    EV_QUANTITY,
    EV_SYMBOL,
    EV_TRADE_ID,
    EV_TRANSACTION_TIME,
    ExecutionEvent,
)
from spark.exchange.models import Trade

__all__ = [
    "FINAL_STATES",
    "OPEN_STATES",
    "TRANSITIONS",
    "VENUE_STATUS",
    "DuplicateClientOrderId",
    "DuplicateVenueOrder",
    "Effects",
    "EventResult",
    "Fill",
    "IllegalTransition",
    "Order",
    "OrderError",
    "OrderMismatch",
    "OrderState",
    "OrderTable",
    "QueryDecision",
    "QueryResult",
    "UnknownVenueStatus",
    "VenueOrderView",
    "apply",
    "apply_ack",
    "apply_query",
    "apply_trade",
    "cancel_rejected",
    "confirm",
    "expire_parked",
    "initial_state",
    "mark_rejected",
    "mark_sending",
    "mark_unknown",
    "new_order",
    "request_cancel",
    "transition",
    "venue_state",
]

_ZERO: Final = Decimal(0)
NOT_SENT_REASON: Final = "not_sent_before_restart"
"""Why an inherited order the venue never had ended ``EXPIRED`` (:func:`inherit`)."""


class OrderState(StrEnum):
    PARKED = "PARKED"
    DRY_RUN = "DRY_RUN"
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATES


_O = OrderState
FINAL_STATES: Final = frozenset({_O.FILLED, _O.CANCELED, _O.REJECTED, _O.EXPIRED, _O.DRY_RUN})
OPEN_STATES: Final = frozenset(set(_O) - FINAL_STATES)
"""Not final: may still reach (or be at) the venue. Includes ``PARKED``."""

TRANSITIONS: Final[Mapping[OrderState, frozenset[OrderState]]] = {
    _O.PARKED: frozenset({_O.PENDING, _O.EXPIRED, _O.CANCELED}),
    _O.DRY_RUN: frozenset(),
    _O.PENDING: frozenset({
        _O.NEW, _O.PARTIALLY_FILLED, _O.FILLED, _O.CANCELED, _O.REJECTED, _O.EXPIRED, _O.UNKNOWN,
    }),
    _O.UNKNOWN: frozenset({
        _O.PENDING, _O.NEW, _O.PARTIALLY_FILLED, _O.FILLED, _O.CANCELED, _O.REJECTED, _O.EXPIRED,
    }),
    _O.NEW: frozenset({
        _O.PARTIALLY_FILLED, _O.FILLED, _O.CANCELED, _O.EXPIRED, _O.PENDING_CANCEL, _O.UNKNOWN,
    }),
    _O.PARTIALLY_FILLED: frozenset({
        _O.FILLED, _O.CANCELED, _O.EXPIRED, _O.PENDING_CANCEL, _O.UNKNOWN,
    }),
    _O.PENDING_CANCEL: frozenset({
        _O.NEW, _O.PARTIALLY_FILLED, _O.FILLED, _O.CANCELED, _O.EXPIRED, _O.UNKNOWN,
    }),
    _O.FILLED: frozenset(),
    _O.CANCELED: frozenset(),
    _O.REJECTED: frozenset(),
    _O.EXPIRED: frozenset(),
}
"""Every move an order can make. Anything else raises :class:`IllegalTransition`."""

# How far along an order is; venue information never moves an order backwards.
_RANK: Final = {
    _O.PARKED: -1, _O.DRY_RUN: -1, _O.PENDING: 0, _O.UNKNOWN: 0, _O.NEW: 1,
    _O.PARTIALLY_FILLED: 2, _O.PENDING_CANCEL: 3,
    _O.FILLED: 4, _O.CANCELED: 4, _O.REJECTED: 4, _O.EXPIRED: 4,
}

VENUE_STATUS: Final[Mapping[str, OrderState]] = {
    "NEW": _O.NEW,
    "PARTIALLY_FILLED": _O.PARTIALLY_FILLED,
    "FILLED": _O.FILLED,
    "CANCELED": _O.CANCELED,
    "PENDING_CANCEL": _O.PENDING_CANCEL,
    "REJECTED": _O.REJECTED,
    "EXPIRED": _O.EXPIRED,
    "EXPIRED_IN_MATCH": _O.EXPIRED,  # spot self-trade prevention
}
"""Binance order statuses (spot ``X``/``status``, futures ``X``) → :class:`OrderState`."""

_AMENDING: Final = frozenset({"REPLACED", "AMENDMENT"})
_NEVER_SENT: Final = frozenset({_O.PARKED, _O.DRY_RUN})
_NO_FILL_EFFECTS: dict[tuple[OrderState, OrderState, bool], Effects] = {}
"""Effects without new fills, by (before, after, stale): immutable values, shared (see apply)."""
_NEW_STATE: Final = _O.NEW
_PARTIAL_STATE: Final = _O.PARTIALLY_FILLED


# -- errors -----------------------------------------------------------------------------------


class OrderError(Exception):
    """Base of the order state machine's errors; ``reason`` is a stable code."""

    reason = "order_error"


class IllegalTransition(OrderError):
    """A move that :data:`TRANSITIONS` does not allow, or venue information that contradicts
    what is already known (two different final statuses)."""

    reason = "illegal_transition"

    def __init__(
        self,
        from_state: OrderState | None,
        to_state: OrderState,
        client_order_id: str,
        why: str = "",
    ) -> None:
        text = f"order {client_order_id}: illegal transition {from_state} -> {to_state}"
        super().__init__(f"{text} ({why})" if why else text)
        self.from_state = from_state
        self.to_state = to_state
        self.client_order_id = client_order_id


class OrderMismatch(OrderError):
    """An event or venue answer about a different order (client id or symbol differs)."""

    reason = "order_mismatch"


class DuplicateVenueOrder(OrderError):
    """One client order id, two venue order ids: the order may have been placed twice."""

    reason = "duplicate_venue_order"

    def __init__(self, client_order_id: str, known: int, seen: int) -> None:
        super().__init__(
            f"order {client_order_id}: venue order id {seen} but {known} is known; "
            "the order may exist twice at the venue"
        )
        self.client_order_id = client_order_id
        self.known = known
        self.seen = seen


class DuplicateClientOrderId(OrderError):
    """A new order reuses a client order id the table already holds."""

    reason = "duplicate_client_order_id"


class UnknownVenueStatus(OrderError):
    """The venue reported an order status this module does not know."""

    reason = "unknown_venue_status"


def venue_state(status: str) -> OrderState:
    try:
        return VENUE_STATUS[status]
    except KeyError:
        raise UnknownVenueStatus(f"unknown venue order status {status!r}") from None


# -- values -----------------------------------------------------------------------------------


@attrs.frozen(slots=False)
class Fill:
    """One execution of an order, as recorded once. ``trade_id`` is the dedup key for fills
    (``t`` in events, ``id`` in ``myTrades``); ``execution_id`` is set when an event said so."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    trade_id: int | None
    execution_id: str | None
    is_maker: bool | None
    time_ms: int

    @property
    def signed_qty(self) -> Decimal:
        return signed_quantity(self.side, self.qty)


@attrs.frozen(slots=False)
class Order:
    """One order as the runtime knows it. Immutable: every change makes a new value with
    ``version`` one higher. Times are epoch ms. ``executed_qty``/``cum_quote`` are the venue's
    cumulative figures (never decreasing); ``fills_qty``/``fills_quote`` sum the fills recorded,
    so ``executed_qty - fills_qty`` is what the router still has to fetch as trades. When the
    recorded fills show more than the venue's last cumulative figure (a late event, trades
    fetched first), the fills' sums are used: they are facts too.

    Not slotted on purpose: a new version is built for every venue event, and with a
    ``__dict__`` that is one C-level dict copy plus the changed fields (:func:`_evolve`),
    where a slotted frozen class costs one ``object.__setattr__`` per field (23) and
    ``attrs.evolve`` several times that. Still frozen: readers (other actors get these as
    snapshots) cannot change a field.
    """

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    time_in_force: TimeInForce | None
    status: OrderState
    venue_order_id: int | None = None
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    avg_price: Decimal | None = None
    fills_qty: Decimal = _ZERO
    fills_quote: Decimal = _ZERO
    version: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    execution_ids: frozenset[str] = frozenset()
    trade_ids: frozenset[int] = frozenset()
    source: str = ""
    attempts: int = 0
    send_deadline_ms: int | None = None
    reject_reason: str | None = None
    #: False for an order inherited from a previous process (:func:`inherit`).
    resend_allowed: bool = True

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def remaining_qty(self) -> Decimal:
        return max(self.quantity - self.executed_qty, _ZERO)

    @property
    def missing_fill_qty(self) -> Decimal:
        """Executed at the venue but not yet recorded as fills (fetch the trades)."""
        return max(self.executed_qty - self.fills_qty, _ZERO)

    @property
    def ever_at_venue(self) -> bool:
        """Whether anything shows the venue has (had) this order."""
        return bool(self.venue_order_id is not None or self.execution_ids or self.trade_ids
                    or self.executed_qty > 0)


@attrs.frozen(slots=False)
class Effects:
    """What applying one event did. ``new_fills`` are fills never recorded before: write them."""

    before: OrderState
    after: OrderState
    changed: bool
    duplicate: bool = False
    stale: bool = False
    new_fills: tuple[Fill, ...] = ()

    @property
    def status_changed(self) -> bool:
        return self.before != self.after

    @property
    def became_final(self) -> bool:
        return not self.before.is_final and self.after.is_final


class QueryDecision(StrEnum):
    """What the router should do after :func:`apply_query`."""

    APPLIED = "APPLIED"  # the venue's answer is merged (maybe nothing changed)
    RESEND_ALLOWED = "RESEND_ALLOWED"  # venue: no such order, and it cannot appear any more
    QUERY_LATER = "QUERY_LATER"  # venue: no such order, but a copy may still be in flight
    MISSING_AT_VENUE = "MISSING_AT_VENUE"  # reached the venue once, now unknown: escalate
    NOT_SENT = "NOT_SENT"  # inherited, no such order, and it cannot appear any more: EXPIRED


@attrs.frozen
class QueryResult:
    decision: QueryDecision
    before: OrderState
    after: OrderState
    changed: bool
    stale: bool = False
    missing_fill_qty: Decimal = _ZERO
    detail: str = ""


class VenueOrderView(Protocol):
    """What the venue says about one order: :class:`spark.exchange.models.OrderStatus`
    (``GET``/``DELETE /order``, ``openOrders``) and ``OrderResult`` (RESULT/FULL) both fit."""

    @property
    def symbol(self) -> str: ...
    @property
    def order_id(self) -> int: ...
    @property
    def client_order_id(self) -> str: ...
    @property
    def executed_qty(self) -> Decimal: ...
    @property
    def cum_quote_qty(self) -> Decimal: ...
    @property
    def status(self) -> str: ...


# -- creation and local moves -----------------------------------------------------------------


def initial_state(policy: str, send_allowed: bool) -> OrderState:
    """Where an approved intent starts: ``DRY_RUN`` when sending is not allowed (see
    :func:`spark.core.live_gate.live_gate`) or the policy is ``dry_run`` (or unknown: fail
    closed), ``PARKED`` under ``confirm_required``, ``PENDING`` under ``auto``."""
    if not send_allowed:
        return OrderState.DRY_RUN
    if policy == "auto":
        return OrderState.PENDING
    if policy == "confirm_required":
        return OrderState.PARKED
    return OrderState.DRY_RUN


def new_order(intent: OrderIntent, status: OrderState, now_ms: int) -> Order:
    """An order for an approved intent, starting in ``PENDING``, ``PARKED`` or ``DRY_RUN``."""
    if status not in (OrderState.PENDING, OrderState.PARKED, OrderState.DRY_RUN):
        raise IllegalTransition(None, status, intent.client_order_id,
                                "orders start PENDING, PARKED or DRY_RUN")
    return Order(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        type=intent.type,
        quantity=intent.quantity,
        price=intent.price,
        time_in_force=intent.time_in_force,
        status=status,
        version=1,
        created_ms=now_ms,
        updated_ms=now_ms,
        source=intent.source,
    )


def transition(order: Order, to: OrderState, now_ms: int, why: str = "") -> Order:
    """Move ``order`` to ``to`` if :data:`TRANSITIONS` allows it; raises otherwise."""
    if to not in TRANSITIONS[order.status]:
        raise IllegalTransition(order.status, to, order.client_order_id, why)
    return _bump(order, now_ms, status=to)


def confirm(order: Order, now_ms: int) -> Order:
    """``ctl confirm``: a parked order may now be sent (by this process: an inherited one too,
    so its sends follow the usual resend rule)."""
    order = transition(order, OrderState.PENDING, now_ms, "confirm")
    return order if order.resend_allowed else _bump(order, now_ms, version_step=0,
                                                    resend_allowed=True)


def expire_parked(order: Order, now_ms: int) -> Order:
    """The confirm did not come within ``live.confirm_timeout_s``."""
    if order.status != OrderState.PARKED:
        raise IllegalTransition(order.status, OrderState.EXPIRED, order.client_order_id,
                                "only parked orders expire for lack of a confirm")
    return transition(order, OrderState.EXPIRED, now_ms, "confirm timeout")


def mark_sending(order: Order, now_ms: int, deadline_ms: int | None) -> Order:
    """Record a send attempt of a ``PENDING`` order. ``deadline_ms`` is the last venue time at
    which the request can still be accepted (its ``timestamp`` + ``recvWindow``)."""
    if order.status != OrderState.PENDING:
        raise IllegalTransition(order.status, OrderState.PENDING, order.client_order_id,
                                "only a PENDING order is sent")
    return _bump(order, now_ms, attempts=order.attempts + 1, send_deadline_ms=deadline_ms)


def inherit(order: Order, now_ms: int, deadline_ms: int) -> Order:
    """An order a previous process may have sent, restored at restart: an open one stays as it
    is, a ``PENDING`` one becomes ``UNKNOWN`` (only the venue can tell), and none is ever resent
    by this process (see the module docstring).

    ``deadline_ms``: until when a request the previous process may have sent just before it
    died can still reach the venue and be placed (now + recvWindow + a margin: its timestamp
    was no later than now).  "No such order" before then means "ask again", never "not sent"."""
    if order.status == OrderState.PENDING:
        order = mark_unknown(mark_sending(order, now_ms, deadline_ms), now_ms)
    elif order.status == OrderState.UNKNOWN:
        deadline_ms = max(deadline_ms, order.send_deadline_ms or 0)
        order = _bump(order, now_ms, version_step=0, send_deadline_ms=deadline_ms)
    return _bump(order, now_ms, version_step=0, resend_allowed=False)


def apply_ack(order: Order, venue_order_id: int, now_ms: int) -> Order:
    """An ACK response: the venue has the order. Never moves an order backwards (its NEW or a
    fill event may have arrived first)."""
    _check_venue_id(order, venue_order_id)
    if order.status in (OrderState.PENDING, OrderState.UNKNOWN):
        return _bump(order, now_ms, status=OrderState.NEW, venue_order_id=venue_order_id)
    if order.status in (OrderState.PARKED, OrderState.DRY_RUN):
        raise IllegalTransition(order.status, OrderState.NEW, order.client_order_id,
                                "acknowledged but never sent")
    if order.venue_order_id is None:
        return _bump(order, now_ms, venue_order_id=venue_order_id)
    return order


def mark_unknown(order: Order, now_ms: int) -> Order:
    """A request about this order ended without an answer: ask the venue before anything else.
    Already ``UNKNOWN`` stays as it is."""
    if order.status == OrderState.UNKNOWN:
        return order
    return transition(order, OrderState.UNKNOWN, now_ms, "request outcome unknown")


def mark_rejected(order: Order, now_ms: int, reason: str) -> Order:
    """The venue refused to place the order (nothing was executed)."""
    if order.status not in (OrderState.PENDING, OrderState.UNKNOWN):
        raise IllegalTransition(order.status, OrderState.REJECTED, order.client_order_id,
                                "only an order being sent can be refused")
    return _bump(transition(order, OrderState.REJECTED, now_ms), now_ms, version_step=0,
                 reject_reason=reason)


def request_cancel(order: Order, now_ms: int) -> Order:
    """A cancel is being sent (``NEW``/``PARTIALLY_FILLED`` → ``PENDING_CANCEL``); a parked order
    is cancelled on the spot (it never reached the venue). Repeated requests change nothing."""
    if order.status == OrderState.PENDING_CANCEL:
        return order
    if order.status == OrderState.PARKED:
        return transition(order, OrderState.CANCELED, now_ms, "cancelled before confirm")
    if order.status not in (OrderState.NEW, OrderState.PARTIALLY_FILLED):
        raise IllegalTransition(order.status, OrderState.PENDING_CANCEL, order.client_order_id,
                                "only an order open at the venue can be cancelled")
    return transition(order, OrderState.PENDING_CANCEL, now_ms, "cancel requested")


def cancel_rejected(order: Order, now_ms: int) -> Order:
    """The venue refused the cancel (-2011): back to ``NEW``/``PARTIALLY_FILLED``. If an event
    already finished the order, nothing changes."""
    if order.status != OrderState.PENDING_CANCEL:
        return order
    to = OrderState.PARTIALLY_FILLED if order.executed_qty > 0 else OrderState.NEW
    return transition(order, to, now_ms, "cancel rejected")


# -- venue information ------------------------------------------------------------------------


_DUPLICATE_EFFECTS: Final = {state: Effects(state, state, False, True) for state in OrderState}


def apply(order: Order, event: ExecutionEvent, now_ms: int | None = None) -> tuple[Order, Effects]:
    """Merge one execution report into ``order`` (see the module docstring for the rules).

    ``now_ms`` stamps ``updated_ms``; by default the event's own time.

    This runs for every execution report, so it is written straight-line: the checks of
    :func:`_check_same_order`, :func:`_check_venue_id`, :func:`venue_state`,
    :func:`_merge_status`, :func:`_consistent` and :func:`_check_move` are inlined for the
    common case, and their own code runs only to raise. ``tests/core_orders`` holds the
    plain version of this function as a reference model and checks both give the same
    result (or the same exception) for random event sequences.
    """
    # The order's fields are read from its instance dictionary (one lookup each, where an
    # attribute read of an attrs instance is a generic lookup; see _evolve).
    old = order.__dict__ if _FAST_EVOLVE else _field_values(order)
    cid: str = old["client_order_id"]
    symbol = event[EV_SYMBOL]
    alt = event[EV_CLIENT_ORDER_ID]
    orig = event[EV_ORIG_CLIENT_ORDER_ID]
    if ((orig or alt) != cid and alt != cid) or symbol != old["symbol"]:
        _check_same_order(order, orig or alt, symbol, alt_client_id=alt)  # raises
    current: OrderState = old["status"]
    execution_id = event[EV_EXECUTION_ID]
    execution_ids: frozenset[str] = old["execution_ids"]
    if execution_id in execution_ids:
        return order, _DUPLICATE_EFFECTS[current]
    venue_order_id = event[EV_ORDER_ID]
    known_venue_id: int | None = old["venue_order_id"]
    if known_venue_id is not None and venue_order_id != known_venue_id:
        raise DuplicateVenueOrder(cid, known_venue_id, venue_order_id)
    venue = VENUE_STATUS.get(event[EV_ORDER_STATUS])
    if venue is None:
        venue_state(event[EV_ORDER_STATUS])  # raises UnknownVenueStatus
        raise AssertionError("unreachable")  # pragma: no cover
    # _merge_status, inlined
    stale = False
    if venue == current:
        target = current
    elif current in _NEVER_SENT:
        _merge_status(order, venue, "event")  # raises
        raise AssertionError("unreachable")  # pragma: no cover
    elif current in FINAL_STATES:
        if venue in FINAL_STATES:
            _merge_status(order, venue, "event")  # raises
        target, stale = current, True
    elif _RANK[venue] < _RANK[current]:
        target, stale = current, True
    else:
        target = venue

    trade_ids: frozenset[int] = old["trade_ids"]
    fills_qty: Decimal = old["fills_qty"]
    fills_quote: Decimal = old["fills_quote"]
    trade_id = event[EV_TRADE_ID]
    last_qty = event[EV_LAST_QTY]
    new_fills: tuple[Fill, ...] = ()
    fill_quote: Decimal | None = None
    if trade_id is not None and last_qty > _ZERO and trade_id not in trade_ids:  # is_trade
        last_price = event[EV_LAST_PRICE]
        fill_quote = event[EV_LAST_QUOTE_QTY]
        if fill_quote is None:
            fill_quote = last_qty * last_price
        new_fills = (Fill(cid, old["symbol"], old["side"], last_qty, last_price, fill_quote,
                          event[EV_COMMISSION], event[EV_COMMISSION_ASSET], trade_id,
                          execution_id, event[EV_IS_MAKER], event[EV_TRANSACTION_TIME]),)
        trade_ids = trade_ids | {trade_id}
        fills_qty = fills_qty + last_qty
        fills_quote = fills_quote + fill_quote

    executed: Decimal = old["executed_qty"]
    cum_quote: Decimal = old["cum_quote"]
    avg: Decimal | None = old["avg_price"]
    cum_qty = event[EV_CUM_QTY]
    if cum_qty > executed:
        executed = cum_qty
        cum_quote_qty = event[EV_CUM_QUOTE_QTY]
        average_price = event[EV_AVERAGE_PRICE]
        if cum_quote_qty is not None:
            cum_quote = cum_quote_qty
        elif average_price is not None and average_price > 0:
            cum_quote = average_price * executed
        else:  # the new fills' quote, summed from zero as sum(..., _ZERO) does
            cum_quote = cum_quote + (_ZERO if fill_quote is None else _ZERO + fill_quote)
        avg = cum_quote / executed
    if fills_qty > executed:  # fills are facts: the cumulative figure cannot be below them
        executed, cum_quote = fills_qty, fills_quote
        avg = cum_quote / executed
    if target == _NEW_STATE and executed > 0:  # _consistent: a NEW that overtook its fill
        target = _PARTIAL_STATE
    if target != current and target not in TRANSITIONS[current]:
        _check_move(order, target, "event")  # raises

    updated: int = old["updated_ms"]
    stamp = event[EV_EVENT_TIME] if now_ms is None else now_ms
    values = old.copy()  # _evolve, inlined: the new version's fields
    values["status"] = target
    values["venue_order_id"] = venue_order_id
    values["executed_qty"] = executed
    values["cum_quote"] = cum_quote
    values["avg_price"] = avg
    values["fills_qty"] = fills_qty
    values["fills_quote"] = fills_quote
    values["execution_ids"] = execution_ids | {execution_id}
    values["trade_ids"] = trade_ids
    values["version"] = old["version"] + 1
    values["updated_ms"] = stamp if stamp > updated else updated
    if event[EV_EXECUTION_TYPE] in _AMENDING and not stale:
        values["quantity"] = event[EV_QUANTITY]
        price = event[EV_PRICE]
        if old["type"] == OrderType.LIMIT and price > 0:
            values["price"] = price
    if not _FAST_EVOLVE:  # pragma: no cover
        new = attrs.evolve(order, **values)
    else:
        new = _new_instance(order.__class__)
        _object_setattr(new, "__dict__", values)
    if new_fills:
        return new, Effects(current, target, True, False, stale, new_fills)
    effects = _NO_FILL_EFFECTS.get((current, target, stale))
    if effects is None:  # a value object: one per outcome is shared
        effects = _NO_FILL_EFFECTS[current, target, stale] = Effects(current, target, True,
                                                                     False, stale)
    return new, effects


def apply_trade(order: Order, trade: Trade, now_ms: int) -> tuple[Order, Effects]:
    """Record a fill learned from ``myTrades``/``userTrades`` (after a reconnect). A trade id
    already recorded changes nothing. The status is not touched: ask :func:`apply_query`."""
    before = order.status
    if trade.symbol != order.symbol:
        raise OrderMismatch(f"order {order.client_order_id}: trade for {trade.symbol}")
    if order.venue_order_id is not None and trade.order_id != order.venue_order_id:
        raise OrderMismatch(
            f"order {order.client_order_id}: trade of venue order {trade.order_id}, "
            f"not {order.venue_order_id}")
    if order.status in (OrderState.PARKED, OrderState.DRY_RUN):
        raise IllegalTransition(order.status, order.status, order.client_order_id,
                                "a fill for an order that was never sent")
    if trade.trade_id in order.trade_ids:
        return order, Effects(before, before, changed=False, duplicate=True)
    fill = Fill(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=trade.qty,
        price=trade.price,
        quote_qty=trade.quote_qty,
        commission=trade.commission,
        commission_asset=trade.commission_asset,
        trade_id=trade.trade_id,
        execution_id=None,
        is_maker=trade.is_maker,
        time_ms=trade.time,
    )
    fills_qty = order.fills_qty + trade.qty
    fills_quote = order.fills_quote + trade.quote_qty
    executed, cum_quote, avg = order.executed_qty, order.cum_quote, order.avg_price
    if fills_qty > executed:  # the trades show more than the venue's last cumulative figure
        executed, cum_quote = fills_qty, fills_quote
        avg = cum_quote / executed
    new = _bump(order, now_ms, trade_ids=order.trade_ids | {trade.trade_id},
                fills_qty=fills_qty, fills_quote=fills_quote, venue_order_id=trade.order_id,
                executed_qty=executed,
                cum_quote=cum_quote, avg_price=avg)
    return new, Effects(before, before, changed=True, new_fills=(fill,))


def apply_query(
    order: Order, venue: VenueOrderView | None, now_ms: int
) -> tuple[Order, QueryResult]:
    """Merge what the venue says about the order (``None`` = "no such order", -2013).

    Also the way to apply a RESULT/FULL order response. See the module docstring for when a
    resend is allowed.
    """
    before = order.status
    if venue is None:
        return _not_found(order, now_ms)
    orig = getattr(venue, "orig_client_order_id", None)
    _check_same_order(order, orig or venue.client_order_id, venue.symbol,
                      alt_client_id=venue.client_order_id)
    _check_venue_id(order, venue.order_id)
    target, stale = _merge_status(order, venue_state(venue.status), "query")
    executed, cum_quote, avg = order.executed_qty, order.cum_quote, order.avg_price
    detail = ""
    if venue.executed_qty > executed:
        executed, cum_quote = venue.executed_qty, venue.cum_quote_qty
        avg = cum_quote / executed
    elif venue.executed_qty < executed:
        detail = (f"venue reports executedQty {venue.executed_qty} below the {executed} already "
                  "seen; keeping ours")
    target = _consistent(target, executed)
    if target != order.status:
        _check_move(order, target, "query")
    changed = (target != order.status or executed != order.executed_qty
               or order.venue_order_id != venue.order_id)
    new = order
    if changed:
        new = _bump(order, now_ms, status=target, venue_order_id=venue.order_id,
                    executed_qty=executed, cum_quote=cum_quote, avg_price=avg)
    return new, QueryResult(QueryDecision.APPLIED, before, new.status, changed, stale,
                            new.missing_fill_qty, detail)


def _not_found(order: Order, now_ms: int) -> tuple[Order, QueryResult]:
    before = order.status
    if order.status == OrderState.UNKNOWN and not order.ever_at_venue:
        deadline = order.send_deadline_ms
        if deadline is not None and now_ms < deadline:
            return order, QueryResult(
                QueryDecision.QUERY_LATER, before, before, False,
                detail=f"not found, but the request is valid until {deadline}; ask again then")
        if not order.resend_allowed:
            new = _bump(transition(order, OrderState.EXPIRED, now_ms, "inherited, not sent"),
                        now_ms, version_step=0, reject_reason=NOT_SENT_REASON)
            return new, QueryResult(
                QueryDecision.NOT_SENT, before, new.status, True,
                detail="the venue has no such order; from before the restart: not resent")
        new = transition(order, OrderState.PENDING, now_ms, "not at venue: resend")
        return new, QueryResult(QueryDecision.RESEND_ALLOWED, before, new.status, True,
                                detail="the venue has no such order; resend with the same id")
    if order.status == OrderState.PENDING:
        return order, QueryResult(QueryDecision.QUERY_LATER, before, before, False,
                                  detail="the send is still in progress")
    if order.is_final or order.status == OrderState.PARKED:
        return order, QueryResult(QueryDecision.APPLIED, before, before, False,
                                  detail="not at the venue (never sent, or no longer listed)")
    return order, QueryResult(
        QueryDecision.MISSING_AT_VENUE, before, before, False,
        detail="the venue had this order but now says it does not exist")


# -- internals --------------------------------------------------------------------------------


def _bump(order: Order, now_ms: int, *, version_step: int = 1, **changes: object) -> Order:
    changes["version"] = order.version + version_step
    changes["updated_ms"] = max(order.updated_ms, now_ms)
    return _evolve(order, changes)


def _check_fast_evolve() -> bool:
    """Whether :class:`Order` is a plain frozen attrs class with a ``__dict__``: every field
    set by ``__init__`` as given (no converter, validator or ``init=False``), so copying the
    instance dictionary and overwriting fields builds what ``attrs.evolve`` would."""
    return "__slots__" not in Order.__dict__ and all(
        f.init and f.converter is None and f.validator is None and f.alias == f.name
        for f in attrs.fields(Order)
    )


_FAST_EVOLVE: Final = _check_fast_evolve()
_ORDER_FIELDS: Final = tuple(f.name for f in attrs.fields(Order))


def _field_values(order: Order) -> dict[str, Any]:  # pragma: no cover - see _check_fast_evolve
    return {name: getattr(order, name) for name in _ORDER_FIELDS}
_new_instance = object.__new__
_object_setattr = object.__setattr__


def _evolve(order: Order, changes: dict[str, object]) -> Order:
    """``attrs.evolve(order, **changes)`` for the hot path: copy the instance dictionary (one C
    call), overwrite the changed fields, and give it to a new instance. Only for known field
    names (the callers here)."""
    if not _FAST_EVOLVE:  # pragma: no cover - a future Order with slots or converters
        return attrs.evolve(order, **changes)  # type: ignore[arg-type]
    values = order.__dict__.copy()
    values.update(changes)
    new = _new_instance(order.__class__)
    _object_setattr(new, "__dict__", values)
    return new


def _check_same_order(order: Order, client_id: str, symbol: str, *, alt_client_id: str) -> None:
    if order.client_order_id not in (client_id, alt_client_id):
        raise OrderMismatch(f"order {order.client_order_id}: information about {client_id}")
    if symbol != order.symbol:
        raise OrderMismatch(f"order {order.client_order_id}: {order.symbol}, not {symbol}")


def _check_venue_id(order: Order, venue_order_id: int) -> None:
    if order.venue_order_id is not None and venue_order_id != order.venue_order_id:
        raise DuplicateVenueOrder(order.client_order_id, order.venue_order_id, venue_order_id)


def _check_move(order: Order, to: OrderState, source: str) -> None:
    if to not in TRANSITIONS[order.status]:
        raise IllegalTransition(order.status, to, order.client_order_id,
                                f"{source} contradicts what is known")


def _merge_status(order: Order, venue: OrderState, source: str) -> tuple[OrderState, bool]:
    """The status after hearing ``venue`` from the venue, and whether that news was stale."""
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
    if _RANK[venue] < _RANK[current]:
        return current, True
    return venue, False


def _consistent(status: OrderState, executed: Decimal) -> OrderState:
    """An order with executed quantity is not merely NEW (a NEW that overtook its fill)."""
    if status == OrderState.NEW and executed > 0:
        return OrderState.PARTIALLY_FILLED
    return status


# -- the table --------------------------------------------------------------------------------


@attrs.frozen(slots=False)
class EventResult:
    """What :meth:`OrderTable.apply_event` did. ``order`` is ``None`` for an unknown order."""

    order: Order | None
    effects: Effects | None
    duplicate: bool = False
    unknown_order: bool = False

    @property
    def new_fills(self) -> tuple[Fill, ...]:
        return self.effects.new_fills if self.effects is not None else ()


class OrderTable:
    """The router's orders by client id, open-order count, positions from fills, dedup.

    Positions are signed base quantities per symbol: seeded by reconciliation
    (:meth:`set_position`) and moved by every new fill. A symbol never seeded is *unknown*
    (``None``), and stays unknown through fills, so the risk guard fails closed on it.
    """

    def __init__(
        self,
        *,
        max_final: int = 10_000,
        max_seen_ids: int = 100_000,
        positions: Mapping[str, Decimal] | None = None,
    ) -> None:
        if max_final < 0 or max_seen_ids < 0:
            raise ValueError("bounds must be >= 0")
        self._max_final = max_final
        self._max_seen = max_seen_ids
        self._open: dict[str, Order] = {}
        self._final: OrderedDict[str, Order] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()  # execution ids of evicted orders
        self._positions: dict[str, Decimal] = dict(positions or {})

    # -- reading ---------------------------------------------------------------------------
    def get(self, client_order_id: str) -> Order | None:
        order = self._open.get(client_order_id)
        if order is None:
            order = self._final.get(client_order_id)
        return order

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._open or client_order_id in self._final

    def __len__(self) -> int:
        return len(self._open) + len(self._final)

    def __iter__(self) -> Iterator[Order]:
        yield from self._open.values()
        yield from self._final.values()

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def open_count(self, *, include_parked: bool = True) -> int:
        """Orders not final. Parked ones count by default: a confirm can send them at any
        time, so the risk guard's ``max_open_orders`` must include them."""
        if include_parked:
            return len(self._open)
        return sum(1 for o in self._open.values() if o.status != OrderState.PARKED)

    def unknown_orders(self) -> list[Order]:
        return [o for o in self._open.values() if o.status == OrderState.UNKNOWN]

    def position(self, symbol: str) -> Decimal | None:
        return self._positions.get(symbol)

    @property
    def positions(self) -> Mapping[str, Decimal]:
        """A copy: the known positions by symbol."""
        return dict(self._positions)

    def set_position(self, symbol: str, quantity: Decimal | None) -> None:
        """Seed (reconciliation) or forget (``None``) the position in ``symbol``."""
        if quantity is None:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = quantity

    # -- writing ---------------------------------------------------------------------------
    def add(self, order: Order) -> None:
        if order.client_order_id in self:
            raise DuplicateClientOrderId(f"client order id {order.client_order_id} is in use")
        self._store(order)

    def put(self, order: Order) -> None:
        """Store a newer version of a known order (after a local move such as :func:`confirm`)."""
        old = self.get(order.client_order_id)
        if old is None:
            raise KeyError(order.client_order_id)
        if order.version <= old.version:
            raise OrderError(f"order {order.client_order_id}: version {order.version} is not "
                             f"newer than {old.version}")
        self._store(order)

    def apply_event(self, event: ExecutionEvent, now_ms: int | None = None) -> EventResult:
        """Merge one execution report; new fills move the position."""
        orig = event[EV_ORIG_CLIENT_ORDER_ID]
        client_id = orig or event[EV_CLIENT_ORDER_ID]
        open_orders = self._open
        order = open_orders.get(client_id)
        open_key = None if order is None else client_id  # orders are keyed by their own id
        if order is None:
            order = self._final.get(client_id)
            if order is None and orig:
                order = self.get(event[EV_CLIENT_ORDER_ID])
                if order is not None and order.client_order_id in open_orders:
                    open_key = order.client_order_id
            if order is None:
                execution_id = event[EV_EXECUTION_ID]
                if execution_id in self._seen:
                    self._seen.move_to_end(execution_id)
                    return EventResult(None, None, duplicate=True)
                return EventResult(None, None, unknown_order=True)
        new, effects = apply(order, event, now_ms)
        if new is order:  # a duplicate: apply returns the order itself only then
            return EventResult(order, effects, duplicate=True)
        if open_key is not None and effects.after not in FINAL_STATES:
            open_orders[open_key] = new  # _store's open case (an open order is not in _final)
        else:
            self._store(new)
        fills = effects.new_fills
        if fills:
            self._move_position(fills)
        return EventResult(new, effects)

    def apply_trade(self, client_order_id: str, trade: Trade, now_ms: int) -> EventResult:
        order = self.get(client_order_id)
        if order is None:
            return EventResult(None, None, unknown_order=True)
        new, effects = apply_trade(order, trade, now_ms)
        if effects.duplicate:
            return EventResult(order, effects, duplicate=True)
        self._store(new)
        self._move_position(effects.new_fills)
        return EventResult(new, effects)

    def apply_query(
        self, client_order_id: str, venue: VenueOrderView | None, now_ms: int
    ) -> tuple[Order, QueryResult]:
        order = self.get(client_order_id)
        if order is None:
            raise KeyError(client_order_id)
        new, result = apply_query(order, venue, now_ms)
        if new is not order:
            self._store(new)
        return new, result

    # -- internals -------------------------------------------------------------------------
    def _move_position(self, fills: tuple[Fill, ...]) -> None:
        for fill in fills:
            current = self._positions.get(fill.symbol)
            if current is not None:
                self._positions[fill.symbol] = current + fill.signed_qty

    def _store(self, order: Order) -> None:
        cid = order.client_order_id
        if order.is_final:
            self._open.pop(cid, None)
            self._final[cid] = order
            self._final.move_to_end(cid)
            while len(self._final) > self._max_final:
                _, evicted = self._final.popitem(last=False)
                self._remember(evicted.execution_ids)
        else:
            self._final.pop(cid, None)
            self._open[cid] = order

    def _remember(self, execution_ids: frozenset[str]) -> None:
        seen = self._seen
        for eid in execution_ids:
            seen[eid] = None
            seen.move_to_end(eid)
        while len(seen) > self._max_seen:
            seen.popitem(last=False)
