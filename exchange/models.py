"""Typed REST results: frozen attrs values with ``Decimal`` amounts and epoch-ms timestamps.

These are what :mod:`spark.exchange.rest` returns; the parsers that build them live in
:mod:`spark.exchange.responses`. Field names are Spark's (snake_case), documented against the
Binance JSON key they come from where that is not obvious.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

__all__ = [
    "AccountInfo",
    "Balance",
    "ExchangeInfo",
    "Fill",
    "OrderAck",
    "OrderResult",
    "OrderStatus",
    "RateLimitRule",
    "SymbolFilters",
    "Trade",
]


@attrs.frozen(slots=True)
class Fill:
    """One entry of a FULL order response's ``fills``."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int | None = None


@attrs.frozen(slots=True)
class OrderAck:
    """``newOrderRespType=ACK``: the venue has the order; nothing about its fate yet."""

    symbol: str
    order_id: int
    client_order_id: str
    transact_time: int
    order_list_id: int = -1


@attrs.frozen(slots=True)
class OrderResult:
    """``RESULT`` (``fills`` empty) or ``FULL`` (``fills`` set); also futures order responses."""

    symbol: str
    order_id: int
    client_order_id: str
    transact_time: int
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cum_quote_qty: Decimal  # spot cummulativeQuoteQty, futures cumQuote
    status: str
    time_in_force: str
    order_type: str
    side: str
    working_time: int | None = None
    fills: tuple[Fill, ...] = ()
    avg_price: Decimal | None = None  # futures avgPrice


@attrs.frozen(slots=True)
class OrderStatus:
    """An order as ``GET``/``DELETE /order`` and ``openOrders`` describe it."""

    symbol: str
    order_id: int
    client_order_id: str
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cum_quote_qty: Decimal
    status: str
    time_in_force: str
    order_type: str
    side: str
    stop_price: Decimal | None = None
    time: int | None = None  # creation time (spot ``time``)
    update_time: int | None = None
    is_working: bool | None = None
    orig_client_order_id: str | None = None  # cancel responses
    transact_time: int | None = None  # cancel responses
    order_list_id: int = -1
    avg_price: Decimal | None = None  # futures
    reduce_only: bool | None = None  # futures
    position_side: str | None = None  # futures


@attrs.frozen(slots=True)
class Trade:
    """One account trade (spot ``myTrades`` or futures ``userTrades``)."""

    symbol: str
    trade_id: int  # ``id``
    order_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    order_list_id: int = -1
    realized_pnl: Decimal | None = None  # futures
    position_side: str | None = None  # futures


@attrs.frozen(slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


@attrs.frozen(slots=True)
class AccountInfo:
    can_trade: bool
    update_time: int
    account_type: str
    balances: tuple[Balance, ...]
    permissions: tuple[str, ...] = ()

    def balance(self, asset: str) -> Balance | None:
        for b in self.balances:
            if b.asset == asset:
                return b
        return None


@attrs.frozen(slots=True)
class RateLimitRule:
    """One ``rateLimits`` entry of exchangeInfo, e.g. REQUEST_WEIGHT / MINUTE / 1 / 6000."""

    rate_limit_type: str
    interval: str
    interval_num: int
    limit: int

    @property
    def key(self) -> str:
        """The header suffix this rule is reported under: ``1M``, ``10S``, ``1D``."""
        return f"{self.interval_num}{self.interval[:1]}"


@attrs.frozen(slots=True)
class SymbolFilters:
    """The exchange filters of one symbol that Spark's risk guard checks before sending.

    ``None`` means the venue did not publish that filter for the symbol.
    """

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    step_size: Decimal | None = None
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    market_step_size: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    max_notional: Decimal | None = None
    max_num_orders: int | None = None


@attrs.frozen(slots=True)
class ExchangeInfo:
    server_time: int
    rate_limits: tuple[RateLimitRule, ...]
    symbols: tuple[SymbolFilters, ...]

    def symbol(self, name: str) -> SymbolFilters | None:
        for s in self.symbols:
            if s.symbol == name:
                return s
        return None
