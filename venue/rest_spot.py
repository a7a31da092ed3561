"""Spot ``/api/v3/…`` endpoint handlers: market data, orders, history and the account.

Each handler reads its parameters the way Binance does (unknown ones are ``-1104``), calls the
spot engine and returns the body in the shape of Binance's spot OpenAPI spec.
"""

from __future__ import annotations

from typing import Any

import orjson

from spark.venue import shapes
from spark.venue.core import VenueCore
from spark.venue.errors import (
    BadSymbol,
    CancelRejected,
    InvalidOrderType,
    InvalidParameter,
    InvalidSide,
    InvalidTimeInForce,
    MandatoryParamMissing,
    NewOrderRejected,
    ParamNotRequired,
)
from spark.venue.numbers import fmt8
from spark.venue.orders import SIDES, NewOrder
from spark.venue.params import Params
from spark.venue.rest_common import Ctx, order_ref, required_symbol, symbol_param, time_window
from spark.venue.spot import ORDER_TYPES, TIME_IN_FORCE

RESP_TYPES = ("ACK", "RESULT", "FULL")
IGNORED = ("strategyId", "strategyType", "stopPrice", "trailingDelta", "icebergQty",
           "selfTradePreventionMode", "pegPriceType", "pegOffsetValue", "pegOffsetType")
"""Documented order parameters the venue accepts without acting on them."""


class SpotRest:
    """The spot handlers over one :class:`VenueCore`."""

    def __init__(self, core: VenueCore) -> None:
        self.core = core
        self._exchange_info_tail: dict[str, bytes] = {}

    # -- market data ------------------------------------------------------------------------
    def _symbols_filter(self, p: Params) -> list[str] | None:
        one = symbol_param(self.core, p, required=False)
        many_text = p.text("symbols")
        p.ignore("permissions", "showPermissionSets", "symbolStatus")
        if one is not None:
            return [one]
        if many_text is None:
            return None
        try:
            many = orjson.loads(many_text)
        except orjson.JSONDecodeError:
            raise InvalidParameter.named("symbols") from None
        if not isinstance(many, list) or not all(isinstance(s, str) for s in many):
            raise InvalidParameter.named("symbols")
        for symbol in many:
            if symbol not in self.core.markets:
                raise BadSymbol()
        return list(many)

    def exchange_info(self, ctx: Ctx) -> bytes:
        wanted = self._symbols_filter(ctx.params)
        ctx.params.check_all_read()
        cache_key = ",".join(wanted) if wanted is not None else "*"
        tail = self._exchange_info_tail.get(cache_key)
        if tail is None:
            specs = [m.spec for s, m in self.core.markets.items() if wanted is None or s in wanted]
            full = orjson.dumps(shapes.exchange_info(specs, self._spot_limits(), 0))
            tail = full[full.index(b',"rateLimits"'):]
            self._exchange_info_tail[cache_key] = tail
        return b'{"timezone":"UTC","serverTime":' + str(ctx.now).encode() + tail

    def _spot_limits(self) -> list[dict[str, Any]]:
        cfg = self.core.config
        return shapes.rate_limits(cfg.weight_limit_1m, cfg.order_limit_10s, cfg.order_limit_1d)

    def book_ticker(self, ctx: Ctx) -> Any:
        wanted = self._symbols_filter(ctx.params)
        ctx.params.check_all_read()
        rows = []
        for symbol in wanted if wanted is not None else list(self.core.markets):
            market = self.core.markets[symbol]
            bid, bid_qty = market.top("SELL")
            ask, ask_qty = market.top("BUY")
            rows.append({"symbol": symbol, "bidPrice": fmt8(bid), "bidQty": fmt8(bid_qty),
                         "askPrice": fmt8(ask), "askQty": fmt8(ask_qty)})
        return rows[0] if "symbol" in ctx.params else rows

    def ticker_price(self, ctx: Ctx) -> Any:
        wanted = self._symbols_filter(ctx.params)
        ctx.params.check_all_read()
        rows = [{"symbol": s, "price": fmt8(self.core.markets[s].last)}
                for s in (wanted if wanted is not None else list(self.core.markets))]
        return rows[0] if "symbol" in ctx.params else rows

    # -- spot orders ------------------------------------------------------------------------
    def _order_request(self, p: Params) -> tuple[NewOrder, str]:
        symbol = required_symbol(self.core, p)
        side = p.enum("side", SIDES, InvalidSide(), required=True)
        order_type = p.text("type", required=True)
        if order_type not in ORDER_TYPES:
            if order_type in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                              "TAKE_PROFIT_LIMIT"):
                raise NewOrderRejected(NewOrderRejected.UNSUPPORTED)
            raise InvalidOrderType()
        tif = p.enum("timeInForce", TIME_IN_FORCE, InvalidTimeInForce())
        quantity = p.decimal("quantity")
        quote_qty = p.decimal("quoteOrderQty")
        price = p.decimal("price")
        client_id = p.client_order_id("newClientOrderId")
        resp_type = p.enum("newOrderRespType", RESP_TYPES,
                           InvalidParameter.named("newOrderRespType"))
        p.ignore(*IGNORED)
        if order_type == "MARKET":
            if price is not None:
                raise ParamNotRequired.named("price")
            if tif is not None:
                raise ParamNotRequired.named("timeInForce")
            if quantity is None and quote_qty is None:
                raise MandatoryParamMissing.either("quantity", "quoteOrderQty")
            if quantity is not None and quote_qty is not None:
                raise ParamNotRequired.named("quoteOrderQty")
        else:
            if quote_qty is not None:
                raise ParamNotRequired.named("quoteOrderQty")
            if order_type == "LIMIT" and tif is None:
                raise MandatoryParamMissing.named("timeInForce")
            if order_type == "LIMIT_MAKER" and tif is not None:
                raise ParamNotRequired.named("timeInForce")
            if quantity is None:
                raise MandatoryParamMissing.named("quantity")
            if price is None:
                raise MandatoryParamMissing.named("price")
        p.check_all_read()
        if resp_type is None:
            resp_type = "FULL" if order_type in ("MARKET", "LIMIT") else "ACK"
        assert side is not None
        return NewOrder(symbol=symbol, side=side, type=order_type, time_in_force=tif,
                        quantity=quantity, quote_order_qty=quote_qty, price=price,
                        client_order_id=client_id), resp_type

    def new_order(self, ctx: Ctx) -> Any:
        req, resp_type = self._order_request(ctx.params)
        order, trades = self.core.spot.place(req, ctx.now)
        if resp_type == "ACK":
            return shapes.order_ack(order)
        if resp_type == "RESULT":
            return shapes.order_result(order)
        return shapes.order_full(order, trades)

    def test_order(self, ctx: Ctx) -> Any:
        compute = ctx.params.boolean("computeCommissionRates")
        req, _ = self._order_request(ctx.params)
        self.core.spot.validate(req)
        if not compute:
            return {}
        rate = fmt8(self.core.config.commission_rate)
        zero = "0.00000000"
        return {
            "standardCommissionForOrder": {"maker": rate, "taker": rate},
            "specialCommissionForOrder": {"maker": zero, "taker": zero},
            "taxCommissionForOrder": {"maker": zero, "taker": zero},
            "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                         "discountAsset": "BNB", "discount": zero},
        }

    def query_order(self, ctx: Ctx) -> Any:
        symbol, order_id, orig = order_ref(self.core, ctx.params)
        ctx.params.check_all_read()
        return shapes.order_details(self.core.spot.query(symbol, order_id, orig))

    def cancel_order(self, ctx: Ctx) -> Any:
        symbol, order_id, orig = order_ref(self.core, ctx.params)
        new_id = ctx.params.client_order_id("newClientOrderId")
        ctx.params.ignore("cancelRestrictions")
        ctx.params.check_all_read()
        order, cancel_id = self.core.spot.cancel(symbol, order_id, orig, new_id, ctx.now)
        return shapes.cancel_result(order, cancel_id, ctx.now)

    def cancel_all(self, ctx: Ctx) -> Any:
        symbol = required_symbol(self.core, ctx.params)
        ctx.params.check_all_read()
        resting = list(self.core.spot.open[symbol].values())
        if not resting:
            raise CancelRejected()  # Binance: -2011 "Unknown order sent." when none is open
        out = []
        for order in resting:
            cancelled, cancel_id = self.core.spot.cancel(symbol, order.order_id, None, None,
                                                         ctx.now)
            out.append(shapes.cancel_result(cancelled, cancel_id, ctx.now))
        return out

    def open_orders(self, ctx: Ctx) -> Any:
        symbol = symbol_param(self.core, ctx.params, required=False)
        ctx.params.check_all_read()
        return [shapes.order_details(o) for o in self.core.spot.open_orders(symbol)]

    def all_orders(self, ctx: Ctx) -> Any:
        p = ctx.params
        symbol = required_symbol(self.core, p)
        order_id = p.integer("orderId")
        start, end, limit = time_window(p)
        p.check_all_read()
        rows = self.core.spot.all_orders(symbol, order_id=order_id, start=start, end=end,
                                         limit=limit)
        return [shapes.order_details(o) for o in rows]

    def my_trades(self, ctx: Ctx) -> Any:
        p = ctx.params
        symbol = required_symbol(self.core, p)
        order_id = p.integer("orderId")
        from_id = p.integer("fromId")
        start, end, limit = time_window(p)
        p.check_all_read()
        rows = self.core.spot.my_trades(symbol, order_id=order_id, from_id=from_id, start=start,
                                        end=end, limit=limit)
        return [shapes.my_trade(t) for t in rows]

    def account(self, ctx: Ctx) -> Any:
        omit = ctx.params.boolean("omitZeroBalances") or False
        ctx.params.check_all_read()
        return shapes.account(self.core.balances, self.core.config.commission_rate,
                              omit_zero=omit)
