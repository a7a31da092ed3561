"""A USD-M futures subset: one-way positions, cross margin at a fixed leverage, USDT wallet.

Enough futures for the runtime's futures path to be exercised end to end over the real wire:
orders (LIMIT GTC/IOC/FOK/GTX, MARKET, reduceOnly), positions with entry price and realized
PnL, commissions in USDT, and the ``ORDER_TRADE_UPDATE`` / ``ACCOUNT_UPDATE`` events.  Refusals
carry the futures error codes (they differ from spot's).  Funding, liquidation, hedge mode and
per-symbol leverage are out of scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from spark.venue.book import Market
from spark.venue.engine import Engine, Plan
from spark.venue.errors import FuturesRejected
from spark.venue.events import account_update, order_trade_update
from spark.venue.numbers import ZERO, is_multiple, plain, round8
from spark.venue.orders import Ids, NewOrder, Order, Trade
from spark.venue.outbox import Outgoing, UserEvent

ORDER_TYPES = ("LIMIT", "MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX")
LEVERAGE = Decimal(20)
MARGIN_ASSET = "USDT"


class Position:
    __slots__ = ("amount", "entry")

    def __init__(self) -> None:
        self.amount = ZERO
        self.entry = ZERO


def _reject(code: int, msg: str) -> FuturesRejected:
    return FuturesRejected(code, msg)


class FuturesEngine(Engine):
    """USD-M futures orders and positions of the venue's one account."""

    def __init__(
        self,
        *,
        markets: Mapping[str, Market],
        wallet: Decimal,
        ids: Ids,
        commission_rate: Decimal,
        emit: Callable[[Outgoing], None],
        account: str = "main",
    ) -> None:
        super().__init__(markets=markets, ids=ids, commission_rate=commission_rate, emit=emit,
                         account=account)
        self.wallet = wallet
        self.positions: dict[str, Position] = {s: Position() for s in markets}
        self.update_time = 0
        self._traded = False

    # -- margin -----------------------------------------------------------------------------
    @property
    def order_margin(self) -> Decimal:
        return sum((o.locked for book in self.open.values() for o in book.values()), ZERO)

    @property
    def position_margin(self) -> Decimal:
        return sum((abs(p.amount) * p.entry for p in self.positions.values()), ZERO) / LEVERAGE

    @property
    def available(self) -> Decimal:
        return self.wallet - self.order_margin - self.position_margin

    def unrealized(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return pos.amount * (self.markets[symbol].mid - pos.entry) if pos.amount else ZERO

    # -- planning ---------------------------------------------------------------------------
    def plan(self, req: NewOrder, market: Market) -> Plan:
        spec = market.spec
        qty = req.quantity or ZERO
        if qty <= 0:
            raise _reject(-4003, "Quantity less than or equal to zero.")
        if not is_multiple(qty, spec.step_size):
            raise _reject(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise _reject(-4004, "Quantity less than min quantity.")
        if qty > spec.max_qty:
            raise _reject(-4005, "Quantity greater than max quantity.")
        if req.reduce_only:
            pos = self.positions[req.symbol].amount
            reduces = (pos > 0 and req.side == "SELL") or (pos < 0 and req.side == "BUY")
            if not reduces or qty > abs(pos):
                raise _reject(-2022, "ReduceOnly Order is rejected.")
        if req.type == "MARKET":
            reference = market.mid
            fills = market.plan_taker(req.side, qty)
            plan = Plan(qty=qty, price=ZERO, fills=fills, rests=False)
        else:
            price = req.price or ZERO
            if not is_multiple(price, spec.tick_size):
                raise _reject(-4014, "Price not increased by tick size.")
            if price < spec.min_price:
                raise _reject(-4013, "Price less than min price.")
            if price > spec.max_price:
                raise _reject(-4016, f"Limit price can't be higher than {plain(spec.max_price)}.")
            reference = price
            fills = market.plan_taker(req.side, qty, limit=price)
            tif = req.time_in_force or "GTC"
            if tif == "GTX" and fills:
                raise _reject(-5022, "Due to the order could not be executed as maker, the Post "
                              "Only order will be rejected. The order will not be recorded in "
                              "the order history")
            if tif == "FOK" and sum((q for _, q in fills), ZERO) < qty:
                fills = []
            plan = Plan(qty=qty, price=price, fills=fills, rests=tif in ("GTC", "GTX"))
        if not req.reduce_only and reference * qty < spec.min_notional:
            raise _reject(-4164, f"Order's notional must be no smaller than "
                          f"{plain(spec.min_notional)} (unless you choose reduce only).")
        if len(self.open[req.symbol]) >= spec.max_num_orders:
            raise _reject(-2025, "Reach max open order limit.")
        return plan

    # -- funds ------------------------------------------------------------------------------
    def reserve(self, order: Order, plan: Plan) -> None:
        if order.reduce_only:
            return
        reference = plan.price if order.type == "LIMIT" else self.markets[order.symbol].mid
        required = reference * plan.qty / LEVERAGE
        if required > self.available:
            raise _reject(-2019, "Margin is insufficient.")
        if order.type == "LIMIT":
            order.locked = required

    def settle(self, order: Order, market: Market, price: Decimal, qty: Decimal, *,
               maker: bool, now: int) -> Trade:
        if order.locked > 0:
            order.locked = max(ZERO, order.locked - order.price * qty / LEVERAGE)
        commission = round8(price * qty * self.commission_rate)
        self.wallet -= commission
        pnl = self._move_position(order.symbol, qty if order.is_buy else -qty, price)
        self.wallet += pnl
        self.update_time = now
        self._traded = True
        self.apply_fill(order, price, qty, now)
        return Trade(
            symbol=order.symbol,
            id=self.ids.trade_id(),
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=price * qty,
            commission=commission,
            commission_asset=MARGIN_ASSET,
            time=now,
            is_maker=maker,
            realized_pnl=pnl,
        )

    def _move_position(self, symbol: str, delta: Decimal, price: Decimal) -> Decimal:
        """Apply a signed fill; return the realized PnL of the part that closed exposure."""
        pos = self.positions[symbol]
        if pos.amount == 0 or (pos.amount > 0) == (delta > 0):
            total = abs(pos.amount) + abs(delta)
            pos.entry = (abs(pos.amount) * pos.entry + abs(delta) * price) / total
            pos.amount += delta
            return ZERO
        closed = min(abs(delta), abs(pos.amount))
        direction = 1 if pos.amount > 0 else -1
        pnl = round8(closed * (price - pos.entry) * direction)
        pos.amount += delta
        if pos.amount == 0:
            pos.entry = ZERO
        elif (pos.amount > 0) != (direction > 0):
            pos.entry = price  # flipped through zero: the rest opened at this price
        return pnl

    def release(self, order: Order) -> None:
        order.locked = ZERO

    # -- events -----------------------------------------------------------------------------
    def report(self, order: Order, exec_type: str, now: int, trade: Trade | None = None,
               *, cancel_client_id: str | None = None) -> None:
        payload = order_trade_update(order, exec_type=exec_type, now=now,
                                     market=self.markets[order.symbol], trade=trade)
        self._emit(UserEvent("futures", self.account, payload))

    def account_changed(self, symbols: set[str], now: int) -> None:
        """``ACCOUNT_UPDATE`` only after fills: new and canceled orders move no balance."""
        if not self._traded:
            return
        self._traded = False
        rows = [
            (s, self.positions[s].amount, self.positions[s].entry, self.unrealized(s))
            for s in sorted(symbols)
        ]
        self._emit(UserEvent("futures", self.account,
                             account_update(now, asset=MARGIN_ASSET, wallet=self.wallet,
                                            positions=rows)))
