"""Strict, fast conversion of Binance amount strings to ``Decimal``.

Binance sends every price and quantity as a JSON string (``"0.10264410"``). A float must never
get in between, and a ``NaN``/``Infinity`` from a broken frame must not reach the order book, so
only finite strings (and plain ints) are accepted.

Execution reports repeat the same few strings a lot (``"0.00000000"``, the order's price and
quantity), so parsed strings are kept in a bounded dictionary whose ``__missing__`` does the
parsing: a hit is a plain C-level dict lookup, several times cheaper than building a
``Decimal``. ``Decimal`` is immutable, so sharing instances is safe.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["DECIMALS", "opt_decimal", "to_decimal", "to_int"]

_MAX_LEN = 64  # Binance amounts are short; a 10 kB digit string is a bug or an attack


class DecimalCache(dict[Any, Decimal]):
    """``cache[text]`` → finite ``Decimal``; raises ``ValueError`` (or ``TypeError`` for
    unhashable input) for anything that is not an amount."""

    __slots__ = ("max_size",)

    def __init__(self, max_size: int = 8192) -> None:
        super().__init__()
        self.max_size = max_size

    def __missing__(self, key: Any) -> Decimal:
        if key.__class__ is int:
            return Decimal(key)  # not cached: 0 == False would alias a bool to it
        if key.__class__ is not str:
            raise ValueError(f"amount must be a string, got {type(key).__name__}")
        if len(key) > _MAX_LEN:
            raise ValueError("amount string too long")
        try:
            d = Decimal(key)
        except InvalidOperation:
            raise ValueError(f"not a decimal: {key!r}") from None
        if not d.is_finite():
            raise ValueError("non-finite amount")
        if len(self) >= self.max_size:
            self.clear()
        self[key] = d
        return d


DECIMALS = DecimalCache()


def to_decimal(value: Any) -> Decimal:
    """``value`` as a finite ``Decimal``; raises ``ValueError``/``TypeError`` otherwise."""
    return DECIMALS[value]


def opt_decimal(value: Any) -> Decimal | None:
    return None if value is None else DECIMALS[value]


def to_int(value: Any) -> int:
    """A JSON integer (timestamps, ids); Binance sometimes sends them as strings."""
    if value.__class__ is int:
        return int(value)
    if value.__class__ is str and 0 < len(value) < 24:
        return int(value)  # ValueError for non-digits
    raise ValueError(f"not an integer: {type(value).__name__}")
