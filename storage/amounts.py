"""Exact amounts: the checks and the canonical form shared by records and the database type.

Kept free of SQLAlchemy so that :mod:`spark.storage.records` (imported by every actor) stays
light.  See :mod:`spark.storage.types` for how amounts are stored.
"""

from __future__ import annotations

from decimal import Decimal

from spark.storage.errors import AmountOutOfRange

PRECISION = 36
SCALE = 18
INTEGER_DIGITS = PRECISION - SCALE


def amount_text(value: object) -> str:
    """The canonical positional text of an amount that fits ``NUMERIC(36,18)`` exactly.

    Canonical: no exponent, no trailing fractional zeros, no ``-0``.  Raises
    ``AmountOutOfRange`` for anything that is not a finite ``Decimal`` with at most 18 integer
    and 18 fractional digits.  This is on the writer's hot path (several amounts per record):
    the common case works on ``str(value)`` (C, and already positional for ordinary prices and
    quantities); exponent notation takes the slower exact path.
    """
    if not isinstance(value, Decimal):
        raise AmountOutOfRange(f"amount must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise AmountOutOfRange(f"amount must be finite, got {value}")
    text = str(value)
    if "E" in text:
        return _amount_text_exponent(value)
    point = text.find(".")
    if point >= 0:
        text = text.rstrip("0")
        if text[-1] == ".":
            text = text[:-1]
            point = -1
        elif len(text) - point - 1 > SCALE:
            raise AmountOutOfRange(f"amount {value} has more than {SCALE} fractional digits")
    integer_digits = (point if point >= 0 else len(text)) - (text[0] == "-")
    if integer_digits > INTEGER_DIGITS:
        raise AmountOutOfRange(f"amount {value} has more than {INTEGER_DIGITS} integer digits")
    return "0" if text == "-0" else text


def _amount_text_exponent(value: Decimal) -> str:
    if value.is_zero():
        return "0"
    adjusted = value.adjusted()  # position of the most significant digit
    if adjusted >= INTEGER_DIGITS:
        raise AmountOutOfRange(f"amount {value} has more than {INTEGER_DIGITS} integer digits")
    if adjusted < -SCALE:
        raise AmountOutOfRange(f"amount {value} has more than {SCALE} fractional digits")
    text = _positional(value)
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > SCALE:
        raise AmountOutOfRange(f"amount {value} has more than {SCALE} fractional digits")
    return text


def _positional(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def check_amount(value: object) -> Decimal:
    """Return ``value`` if it is a finite ``Decimal`` that fits ``NUMERIC(36,18)`` exactly."""
    amount_text(value)
    assert isinstance(value, Decimal)
    return value


def canonical(value: Decimal) -> Decimal:
    """The one representation of a value: no trailing fractional zeros, no positive exponent."""
    if value.is_zero():
        return Decimal(0)  # drops a negative zero's sign and any exponent
    return Decimal(_positional(value))


def to_text(value: Decimal) -> str:
    """Positional notation of the canonical value (what SQLite stores and the CSV shows)."""
    return amount_text(value)
