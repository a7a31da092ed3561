"""Where each symbol's price goes: a seeded random walk, or a replayed CSV.

Steps are counted, not timed: the server calls :meth:`PricePath.step` every
``step_interval_ms``, but the n-th price only depends on the seed and n, so the same seed and
the same interleaving of orders and steps give the same fills.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol

from spark.venue.numbers import snap


class PricePath(Protocol):
    """A symbol's last price, moving one step at a time."""

    @property
    def price(self) -> Decimal: ...

    def step(self) -> Decimal:
        """Advance one step and return the new price."""
        ...

    def set(self, price: Decimal) -> None:
        """Jump to ``price`` now (admin route); later steps continue from there."""
        ...


class RandomWalk:
    """Geometric random walk: ``log p += drift + volatility * N(0, 1)``, snapped to the tick."""

    __slots__ = ("_drift", "_price", "_rng", "_tick", "_vol", "steps")

    def __init__(
        self, *, seed: int, symbol: str, price: Decimal, tick: Decimal, volatility: float,
        drift: float,
    ) -> None:
        # A string seed is hashed with SHA-512 by `random`, so it is stable across processes
        # (unlike hash()) and independent per symbol.
        self._rng = random.Random(f"{seed}:{symbol}")
        self._tick = tick
        self._vol = volatility
        self._drift = drift
        self._price = snap(price, tick)
        self.steps = 0

    @property
    def price(self) -> Decimal:
        return self._price

    def step(self) -> Decimal:
        self.steps += 1
        shock = self._rng.gauss(0.0, 1.0)
        factor = math.exp(self._drift + self._vol * shock)
        moved = Decimal(repr(float(self._price) * factor))
        self._price = snap(moved, self._tick)
        return self._price

    def set(self, price: Decimal) -> None:
        self._price = snap(price, self._tick)


class Replay:
    """Prices read from a CSV; the last one holds once the file is exhausted."""

    __slots__ = ("_i", "_override", "_prices", "_tick", "steps")

    def __init__(self, prices: Sequence[Decimal], tick: Decimal) -> None:
        if not prices:
            raise ValueError("a replayed price path needs at least one price")
        self._prices = [snap(p, tick) for p in prices]
        self._tick = tick
        self._i = 0
        self._override: Decimal | None = None
        self.steps = 0

    @property
    def price(self) -> Decimal:
        return self._override if self._override is not None else self._prices[self._i]

    def step(self) -> Decimal:
        self.steps += 1
        self._override = None
        self._i = min(self._i + 1, len(self._prices) - 1)
        return self.price

    def set(self, price: Decimal) -> None:
        self._override = snap(price, self._tick)


def read_price_csv(path: str | Path) -> Mapping[str, list[Decimal]]:
    """``symbol,time,price`` rows (header optional), ordered by time within each symbol."""
    rows: dict[str, list[tuple[str, Decimal]]] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for record in csv.reader(handle):
            if len(record) < 3 or not record[0].strip():
                continue
            symbol, time_text, price_text = (r.strip() for r in record[:3])
            try:
                price = Decimal(price_text)
            except InvalidOperation:
                if symbol.lower() == "symbol":
                    continue  # the header row
                raise ValueError(f"{path}: bad price {price_text!r}") from None
            rows.setdefault(symbol.upper(), []).append((time_text, price))
    out: dict[str, list[Decimal]] = {}
    for symbol, items in rows.items():
        items.sort(key=lambda item: _time_key(item[0]))
        out[symbol] = [price for _, price in items]
    return out


def _time_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
