"""Decimal parsing and formatting the way Binance does it on the wire.

Spot prints every amount as a string with 8 decimals (``"0.00100000"``); USD-M futures prints
them at the symbol's precision (``"0.001"``, ``"45000.10"``).  Incoming numbers must match
Binance's own pattern, or the request fails with ``-1100`` before anything else looks at it.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

EIGHT = Decimal("0.00000001")
ZERO = Decimal(0)
DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_DECIMAL = re.compile(DECIMAL_PATTERN)
MAX_DECIMALS = 8


def fmt8(value: Decimal) -> str:
    """Spot format: always 8 decimals (rounded half-even), no exponent."""
    return format(value, ".8f")


def plain(value: Decimal) -> str:
    """Shortest exact decimal text without exponent (``100``, ``0.001``, ``0``)."""
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return text


def at(value: Decimal, quantum: Decimal) -> str:
    """``value`` printed with exactly the decimals of ``quantum`` (futures style)."""
    exp = quantum.normalize().as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):f}"


def round8(value: Decimal) -> Decimal:
    return value.quantize(EIGHT, ROUND_HALF_EVEN)


def round8_up(value: Decimal) -> Decimal:
    return value.quantize(EIGHT, ROUND_UP)


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` not above ``value``."""
    return (value / step).to_integral_value(ROUND_DOWN) * step


def snap(value: Decimal, step: Decimal) -> Decimal:
    """Nearest multiple of ``step`` (half-even), never below one step."""
    snapped = (value / step).to_integral_value(ROUND_HALF_EVEN) * step
    return snapped if snapped >= step else step


def is_multiple(value: Decimal, step: Decimal, base: Decimal = ZERO) -> bool:
    return (value - base) % step == 0


def parse_decimal(text: str) -> Decimal | None:
    """Binance's number syntax, or ``None`` when ``text`` does not match it."""
    if not _DECIMAL.match(text):
        return None
    return Decimal(text)


def too_precise(value: Decimal) -> bool:
    """More significant decimals than the 8 Binance keeps."""
    exp = value.normalize().as_tuple().exponent
    return isinstance(exp, int) and -exp > MAX_DECIMALS
