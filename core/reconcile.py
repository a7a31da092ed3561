"""Reconciliation: what the router missed while it was not listening, as pure functions.

User-data events carry no sequence number, so after every (re)connect and at startup the router
cannot know what it missed except by asking the venue over REST (DESIGN invariants 3 and 4). The
actor gathers two frozen snapshots and calls :func:`reconcile`:

* :class:`RouterView` — what the router believes: its known orders (client id → last known
  status, executed quantity, venue order id, ...), the client ids it may have sent without seeing
  an acknowledgement (``uncertain``), the last trade id it stored per symbol, the trade ids it has
  applied since (not yet stored), and the net position per symbol its fills imply.
* :class:`VenueSnapshot` — what the venue says: open orders, one query result per client id the
  router asked about (:func:`plan_queries` says which; ``-2013`` is :class:`NotFound`),
  ``myTrades`` from the last stored trade id on, and (optionally) the venue's positions.

The result (:class:`ReconcileResult`) has three parts.

**(a) Synthetic events** — :class:`~spark.exchange.events.ExecutionEvent` values to feed through
the normal ingest path (dedup → order state machine → writer) *as if the missed events had
arrived*. Their ``execution_id`` starts with ``recon:`` so they are recognisable in the audit.

1. *Fills come only from venue trades.* Every ``myTrades`` row on an order we know, newer than
   the last stored trade id and not already applied, becomes a synthetic fill (``x=TRADE``) with
   the trade's price, quantity, commission, time and trade id — the trade id is the dedup key, so
   if the same fill also arrives over the socket it is counted once. Cumulative quantities run on
   from the router's known ``executed_qty``.
2. *No invented fills.* When the venue reports more executed quantity than our fills (known +
   synthetic) explain, no fill is made up: a ``missed_fill`` entry records the gap, and a status
   that only fills can reach (``PARTIALLY_FILLED``, ``FILLED``) is not asserted either.
3. *Status changes* the venue knows and we do not — ``NEW`` (ack missed), ``CANCELED``,
   ``EXPIRED``, ``EXPIRED_IN_MATCH``, ``REJECTED`` (the venue's own rejection) — become one
   synthetic status event after the order's fills, carrying our cumulative quantity.
4. *Not found is not rejected.* A ``-2013`` for a client id whose send was uncertain means the
   order is **absent at venue**: it is listed in ``absent_at_venue`` and nothing else happens, so
   the router may decide to resend (only with the same client id, per invariant 2). A ``-2013``
   for an order we believed acknowledged and still open is a ``order_not_found`` discrepancy; for
   one we already consider finished it is normal (Binance purges old orders) and ignored.
5. A known open order the snapshot says nothing about (not open, not queried) is listed in
   ``unresolved``: the router must query it and reconcile again. Nothing is assumed.

**(b) Discrepancies** — a :class:`ReconciliationEntry` each; the runtime writes them to the audit
trail and keeps trading ``REDUCING`` or ``HALTED`` (per :class:`ReconcileConfig`, by kind) until an
operator acknowledges them (``POST /api/private/reconciliation/{id}/ack``). Entry ids are
deterministic (kind + symbol + the order / trade concerned), so reconciling again after a further
reconnect yields the *same* id for the same problem and an acknowledged entry is not raised twice.

================== =============================================================================
kind               when
================== =============================================================================
unknown_order      an order at the venue with our client-id prefix that the router does not know
external_order     an order at the venue without our prefix (placed outside Spark)
missed_fill        a trade we had not seen (now fed as a synthetic fill), or venue executed
                   quantity that our fills cannot explain
fill_excess        our fills add up to more than the venue's executed quantity
unknown_fill       a trade on an order we do not know (no order id match)
status_conflict    we consider an order finished and the venue does not agree (or vice versa)
order_not_found    an order we believed acknowledged and open does not exist at the venue
position_mismatch  the venue's position differs from the one our fills imply (beyond tolerance)
================== =============================================================================

**(c)** ``absent_at_venue`` and ``unresolved`` client ids (rules 4, 5).

Events are grouped by order (client ids in sorted order), fills in trade-id order, then the
status event — the order in which Binance would have sent them.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final, Literal

import attrs

from spark.core.client_ids import is_ours
from spark.core.trading_state import ReconciliationMode
from spark.core.userdata_errors import ReconcileInputError
from spark.exchange.events import ExecutionEvent
from spark.exchange.models import OrderStatus, Trade

__all__ = [
    "TERMINAL_STATUSES",
    "DiscrepancyKind",
    "KnownOrder",
    "NotFound",
    "ReconcileConfig",
    "ReconcileResult",
    "ReconciliationEntry",
    "RouterView",
    "VenueSnapshot",
    "pending_mode",
    "plan_queries",
    "reconcile",
]

TERMINAL_STATUSES: Final = frozenset(
    {"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"}
)
"""Binance order statuses after which nothing changes. Anything else (including the router's
own pre-acknowledgement states) counts as open."""

_FILL_STATUSES: Final = frozenset({"PARTIALLY_FILLED", "FILLED"})
_EXECUTION_TYPE: Final = {
    "NEW": "NEW",
    "CANCELED": "CANCELED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",
    "REJECTED": "REJECTED",
}
_ZERO: Final = Decimal(0)
Product = Literal["spot", "futures"]


class DiscrepancyKind(enum.StrEnum):
    UNKNOWN_ORDER = "unknown_order"
    EXTERNAL_ORDER = "external_order"
    MISSED_FILL = "missed_fill"
    FILL_EXCESS = "fill_excess"
    UNKNOWN_FILL = "unknown_fill"
    STATUS_CONFLICT = "status_conflict"
    ORDER_NOT_FOUND = "order_not_found"
    POSITION_MISMATCH = "position_mismatch"


# --- inputs -------------------------------------------------------------------------------------


@attrs.frozen
class KnownOrder:
    """The router's last known state of one order."""

    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    order_type: str
    time_in_force: str
    quantity: Decimal  # 0 when the order was sized by quote quantity
    price: Decimal  # 0 for market orders
    status: str
    executed_qty: Decimal = _ZERO
    cum_quote_qty: Decimal = _ZERO
    venue_order_id: int | None = None


@attrs.frozen
class NotFound:
    """A query by ``origClientOrderId`` answered ``-2013 Order does not exist``."""

    client_order_id: str


@attrs.frozen(eq=False)
class RouterView:
    """What the router believes, taken at the moment it starts reconciling."""

    product: Product
    orders: tuple[KnownOrder, ...]
    uncertain: frozenset[str] = frozenset()
    last_trade_ids: Mapping[str, int] = attrs.field(factory=dict)
    applied_trade_ids: frozenset[tuple[str, int]] = frozenset()
    positions: Mapping[str, Decimal] | None = None


@attrs.frozen(eq=False)
class VenueSnapshot:
    """What the venue said; ``time_ms`` (epoch ms, venue time) stamps the synthetic events."""

    time_ms: int
    open_orders: tuple[OrderStatus, ...] = ()
    queries: Mapping[str, OrderStatus | NotFound] = attrs.field(factory=dict)
    trades: tuple[Trade, ...] = ()
    positions: Mapping[str, Decimal] | None = None


@attrs.frozen(eq=False)
class ReconcileConfig:
    """``client_id_prefix`` is ``[live] client_id_prefix``. ``mode`` is what a discrepancy does
    to trading until acknowledged (``"halted"`` by default: fail closed), ``modes`` overrides it
    per kind; ``position_tolerance`` absorbs dust (e.g. commission taken in the base asset)."""

    client_id_prefix: str
    mode: ReconciliationMode = "halted"
    modes: Mapping[DiscrepancyKind, ReconciliationMode] = attrs.field(factory=dict)
    position_tolerance: Decimal = _ZERO

    def mode_for(self, kind: DiscrepancyKind) -> ReconciliationMode:
        return self.modes.get(kind, self.mode)


# --- outputs ------------------------------------------------------------------------------------


@attrs.frozen
class ReconciliationEntry:
    """One discrepancy for the audit trail and the operator (see the module table)."""

    id: str
    kind: DiscrepancyKind
    symbol: str
    client_order_id: str | None
    detail: str
    mode: ReconciliationMode


@attrs.frozen
class ReconcileResult:
    events: tuple[ExecutionEvent, ...]
    entries: tuple[ReconciliationEntry, ...]
    absent_at_venue: tuple[str, ...]
    unresolved: tuple[str, ...]

    @property
    def mode(self) -> ReconciliationMode | None:
        """The most restrictive mode among the entries; None when there are none."""
        return pending_mode(self.entries)


def pending_mode(entries: Iterable[ReconciliationEntry]) -> ReconciliationMode | None:
    """``"halted"`` if any entry says so, else ``"reducing"`` if any, else None. The runtime
    passes this (over the entries not yet acknowledged) to
    :func:`spark.core.trading_state.derive`."""
    modes = {e.mode for e in entries}
    if "halted" in modes:
        return "halted"
    if "reducing" in modes:
        return "reducing"
    return None


# --- the rules ----------------------------------------------------------------------------------


def plan_queries(view: RouterView, open_orders: Iterable[OrderStatus]) -> tuple[str, ...]:
    """Client ids to query by ``origClientOrderId`` after fetching ``openOrders``: every
    uncertain send, and every order we believe open that the venue does not list as open (it was
    filled, canceled or expired meanwhile — or never placed)."""
    open_ids = {o.client_order_id for o in open_orders}
    wanted = set(view.uncertain)
    for order in view.orders:
        if order.status not in TERMINAL_STATUSES and order.client_order_id not in open_ids:
            wanted.add(order.client_order_id)
    return tuple(sorted(wanted))


def reconcile(view: RouterView, venue: VenueSnapshot, config: ReconcileConfig) -> ReconcileResult:
    """Apply the module's rules; pure and deterministic."""
    known = _index_known(view)
    states, not_found = _venue_states(view, venue, known)
    entries: list[ReconciliationEntry] = []

    def add(kind: DiscrepancyKind, symbol: str, cid: str | None, key: str, detail: str) -> None:
        entries.append(
            ReconciliationEntry(f"{kind.value}:{symbol}:{key}", kind, symbol, cid, detail,
                                config.mode_for(kind))
        )

    # Venue orders the router does not know.
    for cid in sorted(states):
        if cid in known:
            continue
        stray = states[cid]
        what = f"order {stray.order_id} {stray.side} {stray.orig_qty} {stray.status}"
        if is_ours(cid, config.client_id_prefix):
            add(DiscrepancyKind.UNKNOWN_ORDER, stray.symbol, cid, cid,
                f"{what} at the venue carries our prefix but the router does not know it")
        else:
            add(DiscrepancyKind.EXTERNAL_ORDER, stray.symbol, cid, cid,
                f"{what} was placed outside Spark")

    # Attribute trades to orders.
    by_order_id: dict[tuple[str, int], str] = {}
    for cid, venue_order in states.items():
        by_order_id[(venue_order.symbol, venue_order.order_id)] = cid
    for cid, order in known.items():
        if order.venue_order_id is not None:
            by_order_id[(order.symbol, order.venue_order_id)] = cid
    fills: dict[str, list[Trade]] = defaultdict(list)
    for trade in _new_trades(view, venue.trades):
        cid_or_none = by_order_id.get((trade.symbol, trade.order_id))
        if cid_or_none is None or cid_or_none not in known:
            owner = "an unknown order" if cid_or_none is None else f"order {cid_or_none}"
            add(DiscrepancyKind.UNKNOWN_FILL, trade.symbol, cid_or_none, str(trade.trade_id),
                f"trade {trade.trade_id} ({'BUY' if trade.is_buyer else 'SELL'} {trade.qty} @ "
                f"{trade.price}) belongs to {owner} (venue order {trade.order_id})")
            continue
        fills[cid_or_none].append(trade)

    events: list[ExecutionEvent] = []
    absent: list[str] = []
    unresolved: list[str] = []
    implied = dict(view.positions) if view.positions is not None else None

    for cid in sorted(known):
        order = known[cid]
        st = states.get(cid)
        order_fills = fills.get(cid, [])
        cum, cum_quote, status = order.executed_qty, order.cum_quote_qty, order.status
        order_id = (order.venue_order_id if order.venue_order_id is not None
                    else st.order_id if st is not None
                    else order_fills[0].order_id if order_fills else -1)
        for trade in order_fills:
            if trade.symbol != order.symbol:
                raise ReconcileInputError(f"trade {trade.trade_id} of {trade.symbol} attributed "
                                          f"to {cid} on {order.symbol}")
            cum += trade.qty
            cum_quote += trade.quote_qty
            status = _fill_status(cum, order, st)
            events.append(_fill_event(view.product, order, order_id, trade, cum, cum_quote,
                                      status, venue.time_ms))
            add(DiscrepancyKind.MISSED_FILL, order.symbol, cid, str(trade.trade_id),
                f"trade {trade.trade_id} ({trade.qty} @ {trade.price}) was missed; applied from "
                f"myTrades")
            if implied is not None:
                signed = trade.qty if order.side == "BUY" else -trade.qty
                implied[order.symbol] = implied.get(order.symbol, _ZERO) + signed

        if st is not None:
            gap = st.executed_qty - cum
            if gap > 0:
                add(DiscrepancyKind.MISSED_FILL, order.symbol, cid, f"{cid}:{st.executed_qty}",
                    f"venue executed {st.executed_qty}, our fills explain {cum}; the missing "
                    f"{gap} has no trade in the window (not invented)")
            elif gap < 0:
                add(DiscrepancyKind.FILL_EXCESS, order.symbol, cid, f"{cid}:{cum}",
                    f"our fills add up to {cum}, the venue executed only {st.executed_qty}")
            if st.status != status:
                if status in TERMINAL_STATUSES:
                    add(DiscrepancyKind.STATUS_CONFLICT, order.symbol, cid,
                        f"{cid}:{status}:{st.status}",
                        f"we have {status}, the venue says {st.status}")
                elif st.status == "NEW" and status == "PARTIALLY_FILLED":
                    pass  # would move the order backwards; fill_excess above says why
                elif st.status in _EXECUTION_TYPE:
                    events.append(_status_event(view.product, order, st, cum, cum_quote,
                                                venue.time_ms))
                elif gap <= 0:
                    # A fill status the fills do not support (should not happen at Binance).
                    add(DiscrepancyKind.STATUS_CONFLICT, order.symbol, cid,
                        f"{cid}:{status}:{st.status}",
                        f"we have {status} with {cum} executed, the venue says {st.status} "
                        f"with {st.executed_qty}")
                # else: PARTIALLY_FILLED/FILLED with missing fills: wait for them (rule 2).
        elif cid in not_found:
            if order_fills:
                add(DiscrepancyKind.STATUS_CONFLICT, order.symbol, cid, f"{cid}:not_found",
                    f"the venue says {cid} does not exist but reports trades on order "
                    f"{order_id}")
            elif cid in view.uncertain:
                absent.append(cid)
            elif order.status not in TERMINAL_STATUSES:
                add(DiscrepancyKind.ORDER_NOT_FOUND, order.symbol, cid, cid,
                    f"we have {cid} as {order.status} (venue order {order.venue_order_id}), the "
                    f"venue says it does not exist")
        elif status not in TERMINAL_STATUSES:
            unresolved.append(cid)

    if implied is not None and venue.positions is not None:
        for symbol in sorted(set(implied) | set(venue.positions)):
            ours = implied.get(symbol, _ZERO)
            theirs = venue.positions.get(symbol, _ZERO)
            if abs(theirs - ours) > config.position_tolerance:
                add(DiscrepancyKind.POSITION_MISMATCH, symbol, None, f"{theirs}:{ours}",
                    f"venue position {theirs}, our fills imply {ours}")

    return ReconcileResult(tuple(events), tuple(entries), tuple(absent), tuple(unresolved))


# --- helpers ------------------------------------------------------------------------------------


def _index_known(view: RouterView) -> dict[str, KnownOrder]:
    known: dict[str, KnownOrder] = {}
    for order in view.orders:
        if order.client_order_id in known:
            raise ReconcileInputError(f"client id {order.client_order_id} known twice")
        known[order.client_order_id] = order
    stray = view.uncertain - known.keys()
    if stray:
        raise ReconcileInputError(f"uncertain client ids without a known order: {sorted(stray)}")
    return known


def _progress(st: OrderStatus) -> tuple[bool, Decimal, int]:
    return (st.status in TERMINAL_STATUSES, st.executed_qty, st.update_time or 0)


def _venue_states(
    view: RouterView, venue: VenueSnapshot, known: Mapping[str, KnownOrder]
) -> tuple[dict[str, OrderStatus], set[str]]:
    """One venue state per client id (open orders and query answers; the further along wins,
    since both were read moments apart and an order only moves forward) and the not-found ids."""
    states: dict[str, OrderStatus] = {}
    for st in venue.open_orders:
        states[st.client_order_id] = st
    not_found: set[str] = set()
    for cid, answer in venue.queries.items():
        if cid not in known:
            raise ReconcileInputError(f"query answer for {cid}, which the router does not know")
        if isinstance(answer, NotFound):
            if answer.client_order_id != cid:
                raise ReconcileInputError(f"not-found answer for {answer.client_order_id} "
                                          f"filed under {cid}")
            if cid not in states:
                not_found.add(cid)
            continue
        if answer.client_order_id != cid:
            raise ReconcileInputError(f"query answer for {answer.client_order_id} filed under "
                                      f"{cid}")
        current = states.get(cid)
        if current is None or _progress(answer) >= _progress(current):
            states[cid] = answer
    return states, not_found


def _new_trades(view: RouterView, trades: Iterable[Trade]) -> list[Trade]:
    """Trades newer than the last stored one per symbol and not applied since, once each, in
    (symbol, trade id) order."""
    unique: dict[tuple[str, int], Trade] = {}
    for trade in trades:
        key = (trade.symbol, trade.trade_id)
        last = view.last_trade_ids.get(trade.symbol)
        if (last is not None and trade.trade_id <= last) or key in view.applied_trade_ids:
            continue
        unique.setdefault(key, trade)
    return [unique[k] for k in sorted(unique)]


def _fill_status(cum: Decimal, order: KnownOrder, st: OrderStatus | None) -> str:
    if st is not None and st.status == "FILLED" and cum >= st.executed_qty:
        return "FILLED"
    target = st.orig_qty if st is not None else order.quantity
    if target > 0 and cum >= target:
        return "FILLED"
    return "PARTIALLY_FILLED"


def _fill_event(
    product: Product, order: KnownOrder, order_id: int, trade: Trade, cum: Decimal,
    cum_quote: Decimal, status: str, now_ms: int,
) -> ExecutionEvent:
    return ExecutionEvent(
        product=product,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        order_id=order_id,
        side=order.side,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        quantity=order.quantity,
        price=order.price,
        stop_price=_ZERO,
        execution_type="TRADE",
        order_status=status,
        reject_reason="NONE",
        last_qty=trade.qty,
        cum_qty=cum,
        last_price=trade.price,
        commission=trade.commission,
        commission_asset=trade.commission_asset,
        trade_id=trade.trade_id,
        execution_id=f"recon:{order.symbol}:trade:{trade.trade_id}",
        is_maker=trade.is_maker,
        event_time=now_ms,
        transaction_time=trade.time,
        cum_quote_qty=cum_quote,
        last_quote_qty=trade.quote_qty,
        realized_pnl=trade.realized_pnl,
        position_side=trade.position_side,
    )


def _status_event(
    product: Product, order: KnownOrder, st: OrderStatus, cum: Decimal, cum_quote: Decimal,
    now_ms: int,
) -> ExecutionEvent:
    return ExecutionEvent(
        product=product,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        order_id=st.order_id,
        side=order.side,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        quantity=st.orig_qty,
        price=st.price,
        stop_price=st.stop_price if st.stop_price is not None else _ZERO,
        execution_type=_EXECUTION_TYPE[st.status],
        order_status=st.status,
        reject_reason="NONE",
        last_qty=_ZERO,
        cum_qty=cum,
        last_price=_ZERO,
        commission=_ZERO,
        commission_asset=None,
        trade_id=None,
        execution_id=f"recon:{order.symbol}:{st.order_id}:{st.status}:{cum}",
        is_maker=False,
        event_time=now_ms,
        transaction_time=st.update_time or st.transact_time or now_ms,
        cum_quote_qty=cum_quote,
        last_quote_qty=_ZERO,
    )
