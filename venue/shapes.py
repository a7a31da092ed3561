"""REST response bodies in the shapes of Binance's spot OpenAPI spec (``spot_api.yaml``:
``orderResponseAck/Result/Full``, ``orderDetails``, ``order`` (cancel), ``myTrade``,
``account``, ``exchangeInfo``) and of the USD-M futures docs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from spark.venue.accounts import Balances
from spark.venue.book import Market
from spark.venue.numbers import ZERO, at, fmt8, plain
from spark.venue.orders import Order, Trade
from spark.venue.symbols import SymbolSpec

Json = dict[str, Any]
STP = "NONE"


# -- spot orders ------------------------------------------------------------------------------
def order_ack(order: Order) -> Json:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.time,
    }


def order_result(order: Order) -> Json:
    body = order_ack(order)
    body.update(
        {
            "price": fmt8(order.price),
            "origQty": fmt8(order.orig_qty),
            "executedQty": fmt8(order.executed_qty),
            "origQuoteOrderQty": fmt8(order.quote_order_qty),
            "cummulativeQuoteQty": fmt8(order.cum_quote),
            "status": order.status,
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
            "workingTime": order.time,
            "selfTradePreventionMode": STP,
        }
    )
    return body


def order_full(order: Order, trades: Iterable[Trade]) -> Json:
    body = order_result(order)
    body["fills"] = [
        {
            "price": fmt8(t.price),
            "qty": fmt8(t.qty),
            "commission": fmt8(t.commission),
            "commissionAsset": t.commission_asset,
            "tradeId": t.id,
        }
        for t in trades
    ]
    return body


def order_details(order: Order) -> Json:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": fmt8(order.price),
        "origQty": fmt8(order.orig_qty),
        "executedQty": fmt8(order.executed_qty),
        "cummulativeQuoteQty": fmt8(order.cum_quote),
        "status": order.status,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": order.time,
        "updateTime": order.update_time,
        "isWorking": True,
        "workingTime": order.time,
        "origQuoteOrderQty": fmt8(order.quote_order_qty),
        "selfTradePreventionMode": STP,
    }


def cancel_result(order: Order, cancel_client_id: str, now: int) -> Json:
    """``DELETE /api/v3/order``: ``clientOrderId`` is the cancel's id, the order's is ``orig``."""
    return {
        "symbol": order.symbol,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": now,
        "price": fmt8(order.price),
        "origQty": fmt8(order.orig_qty),
        "executedQty": fmt8(order.executed_qty),
        "origQuoteOrderQty": fmt8(order.quote_order_qty),
        "cummulativeQuoteQty": fmt8(order.cum_quote),
        "status": order.status,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
        "selfTradePreventionMode": STP,
    }


def my_trade(trade: Trade) -> Json:
    return {
        "symbol": trade.symbol,
        "id": trade.id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": fmt8(trade.price),
        "qty": fmt8(trade.qty),
        "quoteQty": fmt8(trade.quote_qty),
        "commission": fmt8(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time,
        "isBuyer": trade.side == "BUY",
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }


def account(balances: Balances, commission_rate: Decimal, *, omit_zero: bool) -> Json:
    bps = int(commission_rate * 10000)
    rows = [
        {"asset": a, "free": fmt8(f), "locked": fmt8(lk)}
        for a, f, lk in balances.rows()
        if not omit_zero or f or lk
    ]
    return {
        "makerCommission": bps,
        "takerCommission": bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": fmt8(commission_rate),
            "taker": fmt8(commission_rate),
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": balances.update_time,
        "accountType": "SPOT",
        "balances": rows,
        "permissions": ["SPOT"],
        "uid": 1,
    }


# -- exchangeInfo -----------------------------------------------------------------------------
def rate_limits(weight: int, orders_10s: int, orders_1d: int) -> list[Json]:
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": weight},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
         "limit": orders_10s},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": orders_1d},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
         "limit": 61000},
    ]


def spot_symbol(spec: SymbolSpec) -> Json:
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": spec.filters(),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": STP,
        "allowedSelfTradePreventionModes": [STP],
    }


def exchange_info(specs: Iterable[SymbolSpec], limits: list[Json], now: int) -> Json:
    return {
        "timezone": "UTC",
        "serverTime": now,
        "rateLimits": limits,
        "exchangeFilters": [],
        "symbols": [spot_symbol(s) for s in specs],
    }


def _places(quantum: Decimal) -> int:
    exp = quantum.normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def futures_exchange_info(specs: Iterable[SymbolSpec], limits: list[Json], now: int) -> Json:
    symbols = []
    for s in specs:
        symbols.append({
            "symbol": s.symbol,
            "pair": s.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "baseAsset": s.base,
            "quoteAsset": s.quote,
            "marginAsset": s.quote,
            "pricePrecision": _places(s.tick_size),
            "quantityPrecision": _places(s.step_size),
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": plain(s.min_price),
                 "maxPrice": plain(s.max_price), "tickSize": plain(s.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": plain(s.min_qty),
                 "maxQty": plain(s.max_qty), "stepSize": plain(s.step_size)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": plain(s.min_qty),
                 "maxQty": plain(s.max_qty), "stepSize": plain(s.step_size)},
                {"filterType": "MAX_NUM_ORDERS", "limit": s.max_num_orders},
                {"filterType": "MIN_NOTIONAL", "notional": plain(s.min_notional)},
            ],
            "orderTypes": ["LIMIT", "MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        })
    return {
        "timezone": "UTC",
        "serverTime": now,
        "futuresType": "U_MARGINED",
        "rateLimits": limits,
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbols,
    }


# -- futures ----------------------------------------------------------------------------------
def futures_order(order: Order, market: Market, *, with_time: bool = False) -> Json:
    spec = market.spec
    avg = order.cum_quote / order.executed_qty if order.executed_qty > 0 else ZERO
    body: Json = {
        "avgPrice": plain(avg),
        "clientOrderId": order.client_order_id,
        "cumQty": at(order.executed_qty, spec.step_size),
        "cumQuote": plain(order.cum_quote),
        "executedQty": at(order.executed_qty, spec.step_size),
        "orderId": order.order_id,
        "origQty": at(order.orig_qty, spec.step_size),
        "origType": order.type,
        "price": at(order.price, spec.tick_size),
        "reduceOnly": order.reduce_only,
        "side": order.side,
        "positionSide": "BOTH",
        "status": order.status,
        "stopPrice": "0",
        "closePosition": False,
        "symbol": order.symbol,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "updateTime": order.update_time,
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "priceMatch": "NONE",
        "selfTradePreventionMode": STP,
        "goodTillDate": 0,
    }
    if with_time:
        body["time"] = order.time
    return body


def futures_trade(trade: Trade, markets: Mapping[str, Market]) -> Json:
    spec = markets[trade.symbol].spec
    return {
        "buyer": trade.side == "BUY",
        "commission": plain(trade.commission),
        "commissionAsset": trade.commission_asset,
        "id": trade.id,
        "maker": trade.is_maker,
        "orderId": trade.order_id,
        "price": at(trade.price, spec.tick_size),
        "qty": at(trade.qty, spec.step_size),
        "quoteQty": plain(trade.quote_qty),
        "realizedPnl": plain(trade.realized_pnl),
        "side": trade.side,
        "positionSide": "BOTH",
        "symbol": trade.symbol,
        "time": trade.time,
    }


# -- ground truth (admin) ---------------------------------------------------------------------
def truth_order(order: Order, market_name: str) -> Json:
    return {
        "market": market_name,
        "symbol": order.symbol,
        "orderId": order.order_id,
        "clientOrderId": order.client_order_id,
        "status": order.status,
        "side": order.side,
        "type": order.type,
        "timeInForce": order.time_in_force,
        "price": plain(order.price),
        "origQty": plain(order.orig_qty),
        "executedQty": plain(order.executed_qty),
        "cummulativeQuoteQty": plain(order.cum_quote),
        "time": order.time,
        "updateTime": order.update_time,
    }


def truth_trade(trade: Trade, market_name: str) -> Json:
    return {
        "market": market_name,
        "symbol": trade.symbol,
        "id": trade.id,
        "orderId": trade.order_id,
        "clientOrderId": trade.client_order_id,
        "side": trade.side,
        "price": plain(trade.price),
        "qty": plain(trade.qty),
        "quoteQty": plain(trade.quote_qty),
        "commission": plain(trade.commission),
        "commissionAsset": trade.commission_asset,
        "isMaker": trade.is_maker,
        "time": trade.time,
    }
