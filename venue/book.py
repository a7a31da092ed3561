"""A symbol's market: its price path and a synthetic order book around the price.

The book is ``depth_levels`` levels of ``depth_qty`` on each side, one tick apart, best bid and
best ask ``spread_ticks`` apart.  Taking liquidity consumes it (so a second order in the same
step sees a thinner book and slips further); every price step replenishes it.  The account's
own resting orders are not shown in the book: they fill when the synthetic book crosses them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

from spark.config.schema import VenueSymbolConfig
from spark.venue.numbers import ZERO, floor_to
from spark.venue.pricepath import PricePath
from spark.venue.symbols import SymbolSpec

Fill = tuple[Decimal, Decimal]
"""(price, qty) of one planned or executed fill."""


class Market:
    """Price path + synthetic book of one symbol."""

    __slots__ = (
        "_ask_prices",
        "_bid_prices",
        "_consumed",
        "ask",
        "bid",
        "depth_levels",
        "depth_qty",
        "path",
        "spec",
        "spread_ticks",
        "update_id",
    )

    def __init__(self, spec: SymbolSpec, path: PricePath, cfg: VenueSymbolConfig) -> None:
        self.spec = spec
        self.path = path
        self.spread_ticks = cfg.spread_ticks
        self.depth_qty = floor_to(cfg.depth_qty, spec.step_size) or spec.step_size
        self.depth_levels = cfg.depth_levels
        self.update_id = 0
        self._consumed: dict[Decimal, Decimal] = {}
        self.bid = ZERO
        self.ask = ZERO
        self._rebuild()

    # -- moving -----------------------------------------------------------------------------
    def _rebuild(self) -> None:
        tick = self.spec.tick_size
        last = self.path.price
        bid = last - (self.spread_ticks // 2) * tick
        if bid < tick:
            bid = tick
        self.bid = bid
        self.ask = bid + self.spread_ticks * tick
        # The level prices only change here: work them out once, not on every walk of the book.
        self._ask_prices = tuple(self.ask + k * tick for k in range(self.depth_levels))
        bids = (bid - k * tick for k in range(self.depth_levels))
        self._bid_prices = tuple(itertools.takewhile(lambda p: p > 0, bids))
        self._consumed.clear()
        self.update_id += 1

    def step(self) -> None:
        self.path.step()
        self._rebuild()

    def set_price(self, price: Decimal) -> None:
        self.path.set(price)
        self._rebuild()

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def last(self) -> Decimal:
        return self.path.price

    # -- levels -----------------------------------------------------------------------------
    def levels(self, side: str) -> Iterator[Fill]:
        """Liquidity a taker on ``side`` meets: asks upwards for BUY, bids downwards for SELL."""
        consumed = self._consumed
        depth = self.depth_qty
        for price in self._ask_prices if side == "BUY" else self._bid_prices:
            used = consumed.get(price)
            if used is None:
                yield price, depth
            elif used < depth:
                yield price, depth - used

    def top(self, side: str) -> Fill:
        """Best (price, qty) on the book side a ``side`` taker would hit; qty 0 if empty."""
        for level in self.levels(side):
            return level
        edge = self.ask if side == "BUY" else self.bid
        return edge, ZERO

    def consume(self, fills: list[Fill]) -> None:
        for price, qty in fills:
            self._consumed[price] = self._consumed.get(price, ZERO) + qty
        if fills:
            self.update_id += 1

    # -- planning ---------------------------------------------------------------------------
    def plan_taker(
        self, side: str, qty: Decimal | None, *, limit: Decimal | None = None,
        quote_budget: Decimal | None = None,
    ) -> list[Fill]:
        """Fills a taker would get now, walking the book level by level (not applied)."""
        step = self.spec.step_size
        fills: list[Fill] = []
        left_qty = qty
        left_quote = quote_budget
        for price, available in self.levels(side):
            if limit is not None and (price > limit if side == "BUY" else price < limit):
                break
            take = available
            if left_qty is not None:
                take = min(take, left_qty)
            if left_quote is not None:
                take = min(take, floor_to(left_quote / price, step))
            if take <= 0:
                break
            fills.append((price, take))
            if left_qty is not None:
                left_qty -= take
                if left_qty <= 0:
                    break
            if left_quote is not None:
                left_quote -= price * take
        return fills

    def plan_maker(self, side: str, limit: Decimal, qty: Decimal) -> list[Fill]:
        """Fills of a resting order at ``limit`` once the book has moved through it.

        The resting order is the maker, so it trades at its own price; the quantity it gets is
        what the crossing side of the book offers at or beyond that price.
        """
        available = ZERO
        for price, left in self.levels(side):
            if price > limit if side == "BUY" else price < limit:
                break
            available += left
            if available >= qty:
                break  # enough: the rest of the book cannot change the fill
        take = min(qty, available)
        return [(limit, take)] if take > 0 else []

    def consume_through(self, side: str, limit: Decimal, qty: Decimal) -> None:
        """Take ``qty`` out of the levels at or better than ``limit`` (after a maker fill)."""
        taken: list[Fill] = []
        for price, left in self.levels(side):
            if qty <= 0 or (price > limit if side == "BUY" else price < limit):
                break
            part = min(left, qty)
            taken.append((price, part))
            qty -= part
        self.consume(taken)
