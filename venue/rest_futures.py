"""USD-M futures ``/fapi/v1/…`` endpoint handlers: exchangeInfo, listenKeys, orders, trades."""

from __future__ import annotations

from typing import Any

from spark.venue import shapes
from spark.venue.core import VenueCore
from spark.venue.errors import (
    InvalidOrderType,
    InvalidParameter,
    InvalidSide,
    InvalidTimeInForce,
    MandatoryParamMissing,
    ParamNotRequired,
)
from spark.venue.futures import ORDER_TYPES, TIME_IN_FORCE
from spark.venue.orders import SIDES, NewOrder
from spark.venue.outbox import ListenKeyEnded
from spark.venue.params import Params
from spark.venue.rest_common import Ctx, order_ref, required_symbol, symbol_param, time_window

IGNORED = ("positionSide", "stopPrice", "closePosition", "activationPrice", "callbackRate",
           "workingType", "priceProtect", "priceMatch", "selfTradePreventionMode", "goodTillDate")
"""Documented order parameters the venue accepts without acting on them."""


class FuturesRest:
    """The futures handlers over one :class:`VenueCore`."""

    def __init__(self, core: VenueCore) -> None:
        self.core = core

    def exchange_info(self, ctx: Ctx) -> Any:
        cfg = self.core.config
        limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": cfg.weight_limit_1m},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
             "limit": cfg.order_limit_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
             "limit": cfg.order_limit_1d},
        ]
        return shapes.futures_exchange_info([m.spec for m in self.core.markets.values()],
                                            limits, ctx.now)

    def listen_key_create(self, ctx: Ctx) -> Any:
        assert ctx.credential is not None
        return {"listenKey": self.core.listen_keys.create(ctx.credential.account, ctx.now)}

    def listen_key_keepalive(self, ctx: Ctx) -> Any:
        assert ctx.credential is not None
        key = self.core.listen_keys.keepalive(ctx.credential.account,
                                              ctx.params.text("listenKey"), ctx.now)
        return {"listenKey": key}

    def listen_key_delete(self, ctx: Ctx) -> Any:
        assert ctx.credential is not None
        key = self.core.listen_keys.delete(ctx.credential.account, ctx.params.text("listenKey"))
        self.core.outbox.put(ListenKeyEnded(key, expired=False))
        return {}

    def _order_request(self, p: Params) -> NewOrder:
        symbol = required_symbol(self.core, p)
        side = p.enum("side", SIDES, InvalidSide(), required=True)
        order_type = p.enum("type", ORDER_TYPES, InvalidOrderType(), required=True)
        tif = p.enum("timeInForce", TIME_IN_FORCE, InvalidTimeInForce())
        quantity = p.decimal("quantity")
        price = p.decimal("price")
        client_id = p.client_order_id("newClientOrderId")
        reduce_only = p.boolean("reduceOnly") or False
        p.enum("newOrderRespType", ("ACK", "RESULT"), InvalidParameter.named("newOrderRespType"))
        p.ignore(*IGNORED)
        if quantity is None:
            raise MandatoryParamMissing.named("quantity")
        if order_type == "LIMIT":
            if tif is None:
                raise MandatoryParamMissing.named("timeInForce")
            if price is None:
                raise MandatoryParamMissing.named("price")
        elif price is not None:
            raise ParamNotRequired.named("price")
        assert side is not None and order_type is not None
        return NewOrder(symbol=symbol, side=side, type=order_type, time_in_force=tif or "GTC",
                        quantity=quantity, price=price, client_order_id=client_id,
                        reduce_only=reduce_only)

    def new_order(self, ctx: Ctx) -> Any:
        req = self._order_request(ctx.params)
        order, _ = self.core.futures.place(req, ctx.now)
        return shapes.futures_order(order, self.core.markets[order.symbol])

    def query_order(self, ctx: Ctx) -> Any:
        symbol, order_id, orig = order_ref(self.core, ctx.params)
        order = self.core.futures.query(symbol, order_id, orig)
        return shapes.futures_order(order, self.core.markets[symbol], with_time=True)

    def cancel_order(self, ctx: Ctx) -> Any:
        symbol, order_id, orig = order_ref(self.core, ctx.params)
        order, _ = self.core.futures.cancel(symbol, order_id, orig, None, ctx.now)
        return shapes.futures_order(order, self.core.markets[symbol])

    def open_orders(self, ctx: Ctx) -> Any:
        symbol = symbol_param(self.core, ctx.params, required=False)
        return [shapes.futures_order(o, self.core.markets[o.symbol], with_time=True)
                for o in self.core.futures.open_orders(symbol)]

    def all_orders(self, ctx: Ctx) -> Any:
        p = ctx.params
        symbol = required_symbol(self.core, p)
        order_id = p.integer("orderId")
        start, end, limit = time_window(p)
        rows = self.core.futures.all_orders(symbol, order_id=order_id, start=start, end=end,
                                            limit=limit)
        return [shapes.futures_order(o, self.core.markets[symbol], with_time=True) for o in rows]

    def user_trades(self, ctx: Ctx) -> Any:
        p = ctx.params
        symbol = required_symbol(self.core, p)
        order_id = p.integer("orderId")
        from_id = p.integer("fromId")
        start, end, limit = time_window(p)
        rows = self.core.futures.my_trades(symbol, order_id=order_id, from_id=from_id,
                                           start=start, end=end, limit=limit)
        return [shapes.futures_trade(t, self.core.markets) for t in rows]
