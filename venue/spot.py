"""The spot matching engine: filters, balances, commissions and ``executionReport`` events.

Funds: a BUY LIMIT locks ``price * qty`` of the quote asset, a SELL locks ``qty`` of the base
asset, a MARKET BUY locks exactly the cost of its planned fills.  Each fill spends from the lock
(a BUY that trades below its limit gets the difference back) and credits the received asset net
of commission, which is charged in the received asset, as Binance does by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from spark.venue.accounts import Balances
from spark.venue.book import Market
from spark.venue.engine import Engine, Plan
from spark.venue.errors import FilterFailure, NewOrderRejected
from spark.venue.events import account_position, execution_report, public_trade
from spark.venue.numbers import ZERO, round8
from spark.venue.orders import Ids, NewOrder, Order, Trade
from spark.venue.outbox import MarketEvent, Outgoing, UserEvent

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")


class SpotEngine(Engine):
    """Spot orders of the venue's one account."""

    def __init__(
        self,
        *,
        markets: Mapping[str, Market],
        balances: Balances,
        ids: Ids,
        commission_rate: Decimal,
        emit: Callable[[Outgoing], None],
        account: str = "main",
    ) -> None:
        super().__init__(markets=markets, ids=ids, commission_rate=commission_rate, emit=emit,
                         account=account)
        self.balances = balances

    # -- planning ---------------------------------------------------------------------------
    def plan(self, req: NewOrder, market: Market) -> Plan:
        spec = market.spec
        if req.type == "MARKET":
            if req.quantity is not None:
                spec.check_qty(req.quantity)
                spec.check_notional(req.quantity * market.mid, market=True)
                fills = market.plan_taker(req.side, req.quantity)
                return Plan(qty=req.quantity, price=ZERO, fills=fills, rests=False)
            budget = req.quote_order_qty or ZERO
            spec.check_notional(budget, market=True)
            fills = market.plan_taker(req.side, None, quote_budget=budget)
            qty = sum((q for _, q in fills), ZERO)
            if qty < spec.min_qty:
                raise FilterFailure("LOT_SIZE")
            return Plan(qty=qty, price=ZERO, fills=fills, rests=False)

        price, qty = req.price or ZERO, req.quantity or ZERO
        spec.check_price(price)
        spec.check_qty(qty)
        spec.check_notional(price * qty, market=False)
        spec.check_open_orders(len(self.open[req.symbol]))
        fills = market.plan_taker(req.side, qty, limit=price)
        if req.type == "LIMIT_MAKER":
            if fills:
                raise NewOrderRejected(NewOrderRejected.WOULD_TAKE)
            return Plan(qty=qty, price=price, fills=[], rests=True)
        tif = req.time_in_force
        if tif == "FOK" and sum((q for _, q in fills), ZERO) < qty:
            fills = []
        return Plan(qty=qty, price=price, fills=fills, rests=tif == "GTC")

    # -- funds ------------------------------------------------------------------------------
    def reserve(self, order: Order, plan: Plan) -> None:
        spec = self.markets[order.symbol].spec
        if order.is_buy:
            amount = plan.cost if order.type == "MARKET" else plan.price * plan.qty
            self.balances.lock(spec.quote, amount)
        else:
            amount = plan.qty
            self.balances.lock(spec.base, amount)
        order.locked = amount

    def settle(self, order: Order, market: Market, price: Decimal, qty: Decimal, *,
               maker: bool, now: int) -> Trade:
        spec = market.spec
        quote_qty = price * qty
        bal = self.balances
        if order.is_buy:
            release = quote_qty if order.type == "MARKET" else order.price * qty
            release = min(release, order.locked)
            order.locked -= release
            bal.spend_locked(spec.quote, release)
            bal.credit(spec.quote, release - quote_qty)
            commission, asset = round8(qty * self.commission_rate), spec.base
            bal.credit(spec.base, qty - commission)
        else:
            order.locked -= qty
            bal.spend_locked(spec.base, qty)
            commission, asset = round8(quote_qty * self.commission_rate), spec.quote
            bal.credit(spec.quote, quote_qty - commission)
        bal.update_time = now
        self.apply_fill(order, price, qty, now)
        return Trade(
            symbol=order.symbol,
            id=self.ids.trade_id(),
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote_qty,
            commission=commission,
            commission_asset=asset,
            time=now,
            is_maker=maker,
        )

    def release(self, order: Order) -> None:
        if order.locked > 0:
            spec = self.markets[order.symbol].spec
            self.balances.unlock(spec.quote if order.is_buy else spec.base, order.locked)
            order.locked = ZERO

    # -- events -----------------------------------------------------------------------------
    def report(self, order: Order, exec_type: str, now: int, trade: Trade | None = None,
               *, cancel_client_id: str | None = None) -> None:
        payload = execution_report(
            order,
            exec_type=exec_type,
            now=now,
            exec_id=self.ids.exec_id(),
            trade=trade,
            client_order_id=cancel_client_id,
            orig_client_order_id=order.client_order_id if cancel_client_id is not None else "",
        )
        self._emit(UserEvent("spot", self.account, payload))

    def account_changed(self, symbols: set[str], now: int) -> None:
        assets: set[str] = set()
        for symbol in symbols:
            spec = self.markets[symbol].spec
            assets.update((spec.base, spec.quote))
        self._emit(UserEvent("spot", self.account,
                             account_position(now, self.balances.rows(assets))))

    def on_trades(self, trades: list[Trade], now: int) -> None:
        for trade in trades:
            self._emit(MarketEvent(f"{trade.symbol.lower()}@trade", public_trade(trade, now)))
