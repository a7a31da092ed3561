"""Sans-IO parsing of REST response bodies into :mod:`spark.exchange.models` values.

Each parser takes the decoded JSON (``orjson.loads`` output) and either returns a typed value or
raises :class:`~spark.exchange.errors.MalformedResponse`. A 2xx we cannot read is treated as
"status unknown" (that is what ``MalformedResponse`` is): for an order placement the venue did
accept *something*, and the router must look it up rather than assume either outcome.

Spot and USD-M futures shapes differ in names (``cummulativeQuoteQty`` vs ``cumQuote``,
``isBuyer`` vs ``buyer``); the parsers accept both so callers need not care.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from spark.exchange.errors import MalformedResponse, snippet_of
from spark.exchange.models import (
    AccountInfo,
    Balance,
    ExchangeInfo,
    Fill,
    OrderAck,
    OrderResult,
    OrderStatus,
    RateLimitRule,
    SymbolFilters,
    Trade,
)
from spark.exchange.numbers import opt_decimal, to_decimal, to_int

__all__ = [
    "parse_account",
    "parse_exchange_info",
    "parse_listen_key",
    "parse_order_response",
    "parse_order_status",
    "parse_order_statuses",
    "parse_server_time",
    "parse_trades",
]

T = TypeVar("T")


def _guard(parser: Callable[[Any], T]) -> Callable[[Any], T]:
    """Turn any shape surprise into ``MalformedResponse`` carrying a short excerpt."""

    def wrapped(obj: Any) -> T:
        try:
            return parser(obj)
        except MalformedResponse:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise MalformedResponse(
                f"{parser.__name__}: {type(exc).__name__} in {snippet_of(obj)}"
            ) from None

    wrapped.__name__ = parser.__name__
    wrapped.__doc__ = parser.__doc__
    return wrapped


def _obj(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError("expected a JSON object")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a JSON array")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else to_int(value)


def _opt_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return value


@_guard
def parse_server_time(obj: Any) -> int:
    """``GET /api/v3/time`` / ``/fapi/v1/time`` → server time in epoch ms."""
    return to_int(_obj(obj)["serverTime"])


@_guard
def parse_listen_key(obj: Any) -> str:
    """``POST /fapi/v1/listenKey`` → the key (PUT may answer ``{}``; use the old key then)."""
    return _str(_obj(obj)["listenKey"])


def _fill(f: Any) -> Fill:
    m = _obj(f)
    return Fill(
        price=to_decimal(m["price"]),
        qty=to_decimal(m["qty"]),
        commission=to_decimal(m["commission"]),
        commission_asset=_str(m["commissionAsset"]),
        trade_id=_opt_int(m.get("tradeId")),
    )


def _cum_quote(m: Mapping[str, Any]) -> Decimal:
    if "cummulativeQuoteQty" in m:
        return to_decimal(m["cummulativeQuoteQty"])
    return to_decimal(m["cumQuote"])


@_guard
def parse_order_response(obj: Any) -> OrderAck | OrderResult:
    """``POST /order``: ACK → :class:`OrderAck`; RESULT/FULL and futures → :class:`OrderResult`."""
    m = _obj(obj)
    if "status" not in m:
        return OrderAck(
            symbol=_str(m["symbol"]),
            order_id=to_int(m["orderId"]),
            client_order_id=_str(m["clientOrderId"]),
            transact_time=to_int(m["transactTime"]),
            order_list_id=to_int(m.get("orderListId", -1)),
        )
    transact = m.get("transactTime", m.get("updateTime"))
    return OrderResult(
        symbol=_str(m["symbol"]),
        order_id=to_int(m["orderId"]),
        client_order_id=_str(m["clientOrderId"]),
        transact_time=to_int(transact),
        price=to_decimal(m["price"]),
        orig_qty=to_decimal(m["origQty"]),
        executed_qty=to_decimal(m["executedQty"]),
        cum_quote_qty=_cum_quote(m),
        status=_str(m["status"]),
        time_in_force=_str(m["timeInForce"]),
        order_type=_str(m["type"]),
        side=_str(m["side"]),
        working_time=_opt_int(m.get("workingTime")),
        fills=tuple(_fill(f) for f in _list(m.get("fills", []))),
        avg_price=opt_decimal(m.get("avgPrice")),
    )


def _order_status(obj: Any) -> OrderStatus:
    m = _obj(obj)
    stop = m.get("stopPrice")
    orig = m.get("origClientOrderId")
    return OrderStatus(
        symbol=_str(m["symbol"]),
        order_id=to_int(m["orderId"]),
        client_order_id=_str(m["clientOrderId"]),
        price=to_decimal(m["price"]),
        orig_qty=to_decimal(m["origQty"]),
        executed_qty=to_decimal(m["executedQty"]),
        cum_quote_qty=_cum_quote(m),
        status=_str(m["status"]),
        time_in_force=_str(m["timeInForce"]),
        order_type=_str(m["type"]),
        side=_str(m["side"]),
        stop_price=opt_decimal(stop),
        time=_opt_int(m.get("time")),
        update_time=_opt_int(m.get("updateTime")),
        is_working=_opt_bool(m.get("isWorking")),
        orig_client_order_id=_str(orig) if orig is not None else None,
        transact_time=_opt_int(m.get("transactTime")),
        order_list_id=to_int(m.get("orderListId", -1)),
        avg_price=opt_decimal(m.get("avgPrice")),
        reduce_only=_opt_bool(m.get("reduceOnly")),
        position_side=_str(m["positionSide"]) if "positionSide" in m else None,
    )


@_guard
def parse_order_status(obj: Any) -> OrderStatus:
    """``GET /order`` and ``DELETE /order`` (spot and futures)."""
    return _order_status(obj)


@_guard
def parse_order_statuses(obj: Any) -> tuple[OrderStatus, ...]:
    """``GET /openOrders``."""
    return tuple(_order_status(o) for o in _list(obj))


def _trade(obj: Any) -> Trade:
    m = _obj(obj)
    futures = "buyer" in m
    return Trade(
        symbol=_str(m["symbol"]),
        trade_id=to_int(m["id"]),
        order_id=to_int(m["orderId"]),
        price=to_decimal(m["price"]),
        qty=to_decimal(m["qty"]),
        quote_qty=to_decimal(m["quoteQty"]),
        commission=to_decimal(m["commission"]),
        commission_asset=_str(m["commissionAsset"]),
        time=to_int(m["time"]),
        is_buyer=bool(_opt_bool(m["buyer"] if futures else m["isBuyer"])),
        is_maker=bool(_opt_bool(m["maker"] if futures else m["isMaker"])),
        order_list_id=to_int(m.get("orderListId", -1)),
        realized_pnl=opt_decimal(m.get("realizedPnl")),
        position_side=_str(m["positionSide"]) if "positionSide" in m else None,
    )


@_guard
def parse_trades(obj: Any) -> tuple[Trade, ...]:
    """``GET /api/v3/myTrades`` / ``GET /fapi/v1/userTrades``."""
    return tuple(_trade(t) for t in _list(obj))


@_guard
def parse_account(obj: Any) -> AccountInfo:
    """``GET /api/v3/account``."""
    m = _obj(obj)
    balances = tuple(
        Balance(
            asset=_str(b["asset"]), free=to_decimal(b["free"]), locked=to_decimal(b["locked"])
        )
        for b in (_obj(x) for x in _list(m["balances"]))
    )
    return AccountInfo(
        can_trade=bool(_opt_bool(m["canTrade"])),
        update_time=to_int(m["updateTime"]),
        account_type=_str(m.get("accountType", "SPOT")),
        balances=balances,
        permissions=tuple(_str(p) for p in _list(m.get("permissions", []))),
    )


def _symbol_filters(obj: Any) -> SymbolFilters:
    m = _obj(obj)
    fields: dict[str, Any] = {}
    for f in _list(m.get("filters", [])):
        f = _obj(f)
        kind = f.get("filterType")
        if kind == "PRICE_FILTER":
            fields["tick_size"] = to_decimal(f["tickSize"])
            fields["min_price"] = to_decimal(f["minPrice"])
            fields["max_price"] = to_decimal(f["maxPrice"])
        elif kind == "LOT_SIZE":
            fields["step_size"] = to_decimal(f["stepSize"])
            fields["min_qty"] = to_decimal(f["minQty"])
            fields["max_qty"] = to_decimal(f["maxQty"])
        elif kind == "MARKET_LOT_SIZE":
            fields["market_step_size"] = to_decimal(f["stepSize"])
            fields["market_min_qty"] = to_decimal(f["minQty"])
            fields["market_max_qty"] = to_decimal(f["maxQty"])
        elif kind == "NOTIONAL":  # spot, current
            fields["min_notional"] = opt_decimal(f.get("minNotional"))
            fields["max_notional"] = opt_decimal(f.get("maxNotional"))
        elif kind == "MIN_NOTIONAL":  # spot legacy ``minNotional``, futures ``notional``
            fields["min_notional"] = to_decimal(f.get("minNotional", f.get("notional")))
        elif kind == "MAX_NUM_ORDERS":  # spot ``maxNumOrders``, futures ``limit``
            fields["max_num_orders"] = to_int(f.get("maxNumOrders", f.get("limit")))
    return SymbolFilters(
        symbol=_str(m["symbol"]),
        status=_str(m.get("status", m.get("contractStatus", "TRADING"))),
        base_asset=_str(m["baseAsset"]),
        quote_asset=_str(m["quoteAsset"]),
        **fields,
    )


@_guard
def parse_exchange_info(obj: Any) -> ExchangeInfo:
    """``GET /api/v3/exchangeInfo`` / ``/fapi/v1/exchangeInfo``: rate limits and filters."""
    m = _obj(obj)
    rules = tuple(
        RateLimitRule(
            rate_limit_type=_str(r["rateLimitType"]),
            interval=_str(r["interval"]),
            interval_num=to_int(r["intervalNum"]),
            limit=to_int(r["limit"]),
        )
        for r in (_obj(x) for x in _list(m.get("rateLimits", [])))
    )
    return ExchangeInfo(
        server_time=to_int(m["serverTime"]),
        rate_limits=rules,
        symbols=tuple(_symbol_filters(s) for s in _list(m.get("symbols", []))),
    )
