"""Field checks shared by the frame decoders: each returns the value or raises.

They raise ``TypeError``/``ValueError``; the decoders turn any of those into
:class:`~spark.exchange.errors.MalformedFrame`. The ``executionReport`` decoder inlines the same
checks for speed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from spark.exchange.numbers import DECIMALS, to_int

__all__ = [
    "as_bool",
    "as_int",
    "as_str",
    "fresh_decimal",
    "opt_bool",
    "opt_decimal",
    "opt_int",
    "opt_str",
]


def as_str(v: Any) -> str:
    if v.__class__ is not str:
        raise TypeError("expected string")
    return v


def as_int(v: Any) -> int:
    """A JSON integer; Binance sends a few timestamps as strings, which are accepted."""
    if v.__class__ is int:
        return v
    return to_int(v)


def as_bool(v: Any) -> bool:
    if v.__class__ is not bool:
        raise TypeError("expected boolean")
    return v


def fresh_decimal(v: Any) -> Decimal:
    """An amount unlikely to repeat (a fill's price or quantity): parsed directly, because the
    ``Decimal`` cache would only miss."""
    if v.__class__ is not str:
        raise TypeError("amount is not a string")
    d = Decimal(v)
    if not d.is_finite():
        raise ValueError("non-finite amount")
    return d


def opt_str(v: Any) -> str | None:
    return None if v is None else as_str(v)


def opt_int(v: Any) -> int | None:
    return None if v is None else as_int(v)


def opt_decimal(v: Any) -> Decimal | None:
    return None if v is None else DECIMALS[v]


def opt_bool(v: Any) -> bool | None:
    return None if v is None else as_bool(v)
