"""A listed symbol and its exchange filters (Binance's filters.md), checked the way Binance does.

Filters are checked in Binance's order (PRICE_FILTER, LOT_SIZE, NOTIONAL, MAX_NUM_ORDERS); the
first failure wins and is reported as ``-1013 Filter failure: <TYPE>``.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from spark.config.schema import VenueSymbolConfig
from spark.venue.errors import FilterFailure
from spark.venue.numbers import fmt8, is_multiple

KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``USDT``) using the quote assets Binance lists."""
    for quote in KNOWN_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot tell base and quote asset of {symbol!r}; set base_asset/quote_asset")


@attrs.frozen
class SymbolSpec:
    """Everything static about a symbol: assets and filters."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal
    max_num_orders: int

    @classmethod
    def from_config(cls, symbol: str, cfg: VenueSymbolConfig) -> SymbolSpec:
        base, quote = cfg.base_asset, cfg.quote_asset
        if not base or not quote:
            base_guess, quote_guess = split_symbol(symbol)
            base, quote = base or base_guess, quote or quote_guess
        return cls(
            symbol=symbol,
            base=base,
            quote=quote,
            tick_size=cfg.tick_size,
            min_price=cfg.min_price if cfg.min_price > 0 else cfg.tick_size,
            max_price=cfg.max_price,
            step_size=cfg.step_size,
            min_qty=cfg.min_qty,
            max_qty=cfg.max_qty,
            min_notional=cfg.min_notional,
            max_notional=cfg.max_notional,
            max_num_orders=cfg.max_num_orders,
        )

    # -- filters ----------------------------------------------------------------------------
    def price_ok(self, price: Decimal) -> bool:
        return (
            self.min_price <= price <= self.max_price
            and is_multiple(price, self.tick_size, self.min_price)
        )

    def qty_ok(self, qty: Decimal) -> bool:
        return (
            self.min_qty <= qty <= self.max_qty
            and is_multiple(qty, self.step_size, self.min_qty)
        )

    def check_price(self, price: Decimal) -> None:
        if not self.price_ok(price):
            raise FilterFailure("PRICE_FILTER")

    def check_qty(self, qty: Decimal) -> None:
        if not self.qty_ok(qty):
            raise FilterFailure("LOT_SIZE")

    def check_notional(self, notional: Decimal, *, market: bool) -> None:
        """NOTIONAL with applyMinToMarket=true and applyMaxToMarket=false, as on Binance."""
        if notional < self.min_notional or (not market and notional > self.max_notional):
            raise FilterFailure("NOTIONAL")

    def check_open_orders(self, open_count: int) -> None:
        if open_count >= self.max_num_orders:
            raise FilterFailure("MAX_NUM_ORDERS")

    # -- exchangeInfo -----------------------------------------------------------------------
    def filters(self) -> list[dict[str, object]]:
        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt8(self.min_price),
                "maxPrice": fmt8(self.max_price),
                "tickSize": fmt8(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt8(self.min_qty),
                "maxQty": fmt8(self.max_qty),
                "stepSize": fmt8(self.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt8(self.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt8(self.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
        ]
