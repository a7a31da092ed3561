"""Order bookkeeping and matching shared by the spot and the futures engine.

The base class owns the order and trade records, the lookups Binance offers (by ``orderId`` or
``origClientOrderId``, open orders, history with ``fromId``/``startTime``/``endTime``/``limit``)
and the life cycle of an order: NEW -> TRADE ... -> FILLED, or -> CANCELED / EXPIRED.  What
differs between the markets (filters and their error codes, how funds are reserved and settled,
which events are sent) is in the subclasses' hooks.

Sans-IO: every method takes ``now`` (venue wall-clock ms) and returns or emits; nothing blocks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from decimal import Decimal

import attrs

from spark.venue.book import Fill, Market
from spark.venue.errors import BadSymbol, CancelRejected, NewOrderRejected, NoSuchOrder
from spark.venue.events import book_ticker
from spark.venue.numbers import ZERO
from spark.venue.orders import Ids, NewOrder, Order, Trade
from spark.venue.outbox import MarketEvent, Outgoing

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


@attrs.frozen
class Plan:
    """What an order will do right now: its quantity, price and immediate fills."""

    qty: Decimal
    price: Decimal
    fills: list[Fill]
    rests: bool
    """True when an unfilled remainder goes on the book (GTC / LIMIT_MAKER)."""

    @property
    def filled(self) -> Decimal:
        return sum((q for _, q in self.fills), ZERO)

    @property
    def cost(self) -> Decimal:
        return sum((p * q for p, q in self.fills), ZERO)


class Engine(ABC):
    """One market's (spot or futures) orders and trades for the venue's account."""

    def __init__(
        self,
        *,
        markets: Mapping[str, Market],
        ids: Ids,
        commission_rate: Decimal,
        emit: Callable[[Outgoing], None],
        account: str = "main",
    ) -> None:
        self.markets = markets
        self.ids = ids
        self.commission_rate = commission_rate
        self.account = account
        self._emit = emit
        self.orders: dict[int, Order] = {}
        self.open: dict[str, dict[int, Order]] = {s: {} for s in markets}
        self._by_client: dict[tuple[str, str], int] = {}
        self.trades: list[Trade] = []
        self._trades_by_symbol: dict[str, list[Trade]] = {s: [] for s in markets}

    # -- hooks ------------------------------------------------------------------------------
    @abstractmethod
    def plan(self, req: NewOrder, market: Market) -> Plan:
        """Check filters and order syntax rules; work out the immediate fills."""

    @abstractmethod
    def reserve(self, order: Order, plan: Plan) -> None:
        """Lock funds / margin for ``order`` or raise (nothing changed on refusal)."""

    @abstractmethod
    def settle(self, order: Order, market: Market, price: Decimal, qty: Decimal, *,
               maker: bool, now: int) -> Trade:
        """Book one fill: balances, order totals; return the trade."""

    @abstractmethod
    def release(self, order: Order) -> None:
        """Give back whatever ``order`` still holds (it is finished)."""

    @abstractmethod
    def report(self, order: Order, exec_type: str, now: int, trade: Trade | None = None,
               *, cancel_client_id: str | None = None) -> None:
        """Emit the order's event for ``exec_type``."""

    @abstractmethod
    def account_changed(self, symbols: set[str], now: int) -> None:
        """Emit the account event after balances moved (one per batch)."""

    def on_trades(self, trades: list[Trade], now: int) -> None:  # noqa: B027 - optional hook
        """Market-stream side effects of fills (spot publishes ``@trade``)."""

    # -- lookups ----------------------------------------------------------------------------
    def market(self, symbol: str) -> Market:
        try:
            return self.markets[symbol]
        except KeyError:
            raise BadSymbol() from None

    def find(self, symbol: str, order_id: int | None, orig_client_id: str | None) -> Order | None:
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.symbol != symbol:
                return None
            if orig_client_id is not None and order.client_order_id != orig_client_id:
                return None
            return order
        if orig_client_id is not None:
            found = self._by_client.get((symbol, orig_client_id))
            return self.orders.get(found) if found is not None else None
        return None

    def query(self, symbol: str, order_id: int | None, orig_client_id: str | None) -> Order:
        self.market(symbol)
        order = self.find(symbol, order_id, orig_client_id)
        if order is None:
            raise NoSuchOrder()
        return order

    def open_orders(self, symbol: str | None) -> list[Order]:
        if symbol is not None:
            self.market(symbol)
            return list(self.open[symbol].values())
        return sorted((o for book in self.open.values() for o in book.values()),
                      key=lambda o: o.order_id)

    def all_orders(
        self, symbol: str, *, order_id: int | None = None, start: int | None = None,
        end: int | None = None, limit: int = DEFAULT_LIMIT,
    ) -> list[Order]:
        self.market(symbol)
        rows = [o for o in self.orders.values() if o.symbol == symbol]
        if order_id is not None:
            rows = [o for o in rows if o.order_id >= order_id]
        if start is not None:
            rows = [o for o in rows if o.time >= start]
        if end is not None:
            rows = [o for o in rows if o.time <= end]
        limit = min(max(limit, 1), MAX_LIMIT)
        return rows[:limit] if order_id is not None or start is not None else rows[-limit:]

    def my_trades(
        self, symbol: str, *, order_id: int | None = None, from_id: int | None = None,
        start: int | None = None, end: int | None = None, limit: int = DEFAULT_LIMIT,
    ) -> list[Trade]:
        self.market(symbol)
        rows = self._trades_by_symbol[symbol]
        if order_id is not None:
            rows = [t for t in rows if t.order_id == order_id]
        if from_id is not None:
            rows = [t for t in rows if t.id >= from_id]
        if start is not None:
            rows = [t for t in rows if t.time >= start]
        if end is not None:
            rows = [t for t in rows if t.time <= end]
        limit = min(max(limit, 1), MAX_LIMIT)
        oldest_first = from_id is not None or start is not None
        return rows[:limit] if oldest_first else rows[-limit:]

    # -- life cycle -------------------------------------------------------------------------
    def validate(self, req: NewOrder) -> Plan:
        """Everything placing would check, without placing (``order/test``)."""
        market = self.market(req.symbol)
        plan = self.plan(req, market)
        self.check_open_limits(req, market)
        return plan

    def check_open_limits(self, req: NewOrder, market: Market) -> None:
        if req.client_order_id is not None:
            existing = self._by_client.get((req.symbol, req.client_order_id))
            if existing is not None and self.orders[existing].is_open:
                raise NewOrderRejected(NewOrderRejected.DUPLICATE)

    def place(self, req: NewOrder, now: int) -> tuple[Order, list[Trade]]:
        market = self.market(req.symbol)
        plan = self.validate(req)
        order = Order(
            symbol=req.symbol,
            order_id=0,
            client_order_id=req.client_order_id or "",
            side=req.side,
            type=req.type,
            time_in_force=req.time_in_force or "GTC",
            orig_qty=plan.qty,
            price=plan.price,
            quote_order_qty=req.quote_order_qty or ZERO,
            time=now,
            update_time=now,
            reduce_only=req.reduce_only,
        )
        self.reserve(order, plan)  # may refuse; nothing recorded yet
        order.order_id = self.ids.order_id()
        if not order.client_order_id:
            order.client_order_id = self.ids.client_order_id()
        self.orders[order.order_id] = order
        self._by_client[(order.symbol, order.client_order_id)] = order.order_id
        order.on_book = plan.rests
        self.report(order, "NEW", now)

        trades: list[Trade] = []
        for price, qty in plan.fills:
            market.consume([(price, qty)])
            if order.remaining == qty:
                order.on_book = False
            trades.append(self.settle(order, market, price, qty, maker=False, now=now))
            self.report(order, "TRADE", now, trades[-1])
        if order.remaining > 0 and plan.rests:
            self.open[order.symbol][order.order_id] = order
        elif order.remaining > 0:
            order.on_book = False
            order.status = "EXPIRED"
            order.update_time = now
            self.release(order)
            self.report(order, "EXPIRED", now)
        self._record(trades)
        self.account_changed({order.symbol}, now)
        self._publish_market(market, trades, now)
        return order, trades

    def cancel(
        self, symbol: str, order_id: int | None, orig_client_id: str | None,
        new_client_id: str | None, now: int,
    ) -> tuple[Order, str]:
        """Cancel an open order; returns it and the cancel's own client order id."""
        self.market(symbol)
        order = self.find(symbol, order_id, orig_client_id)
        if order is None or not order.is_open:
            raise CancelRejected()
        cancel_id = new_client_id or self.ids.client_order_id()
        del self.open[symbol][order.order_id]
        order.status = "CANCELED"
        order.on_book = False
        order.update_time = now
        self.release(order)
        self.report(order, "CANCELED", now, cancel_client_id=cancel_id)
        self.account_changed({symbol}, now)
        return order, cancel_id

    def on_market_move(self, symbol: str, now: int) -> list[Trade]:
        """Fill resting orders the moved book now crosses (time priority, maker fills)."""
        market = self.markets[symbol]
        resting = self.open[symbol]
        if not resting:
            return []
        trades: list[Trade] = []
        for order in list(resting.values()):
            fills = market.plan_maker(order.side, order.price, order.remaining)
            for price, qty in fills:
                market.consume_through(order.side, price, qty)
                if order.remaining == qty:
                    order.on_book = False
                    del resting[order.order_id]
                trades.append(self.settle(order, market, price, qty, maker=True, now=now))
                self.report(order, "TRADE", now, trades[-1])
        if trades:
            self._record(trades)
            self.account_changed({symbol}, now)
            self._publish_market(market, trades, now)
        return trades

    # -- helpers ----------------------------------------------------------------------------
    def apply_fill(self, order: Order, price: Decimal, qty: Decimal, now: int) -> None:
        """Order totals for one fill; status becomes PARTIALLY_FILLED or FILLED."""
        order.executed_qty += qty
        order.cum_quote += price * qty
        order.update_time = now
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"

    def _record(self, trades: list[Trade]) -> None:
        for trade in trades:
            self.trades.append(trade)
            self._trades_by_symbol[trade.symbol].append(trade)

    def _publish_market(self, market: Market, trades: list[Trade], now: int) -> None:
        if trades:
            self.on_trades(trades, now)
            self._emit(MarketEvent(f"{market.spec.symbol.lower()}@bookTicker",
                                   book_ticker(market)))
