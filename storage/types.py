"""Exact amounts in the database.

Every price, quantity and amount is a :class:`~decimal.Decimal` in Python and must come back out
of the database with the same value, on both supported databases:

* **PostgreSQL**: ``NUMERIC(36,18)`` — 18 integer and 18 fractional digits, exact.  PostgreSQL
  pads the scale on the way out (``0.1`` reads back as ``0.100000000000000000``).
* **SQLite**: SQLite has no exact decimal type (its ``NUMERIC`` affinity stores REAL and rounds),
  so amounts are stored as ``TEXT`` in canonical positional notation
  (:func:`spark.storage.amounts.amount_text`).  Never do arithmetic or ordering on amounts in
  SQL on SQLite; read them into Python.

Reads go through :func:`~spark.storage.amounts.canonical`, so a value reads back *equal* and
*identically represented* on both databases (trailing fractional zeros removed, never an
exponent above zero): ``Decimal("1.50")`` is stored and read as ``Decimal("1.5")``.  (The
writer's fast path, :mod:`spark.storage.sink`, applies the same conversion without going through
this type.)

Values that would not fit ``NUMERIC(36,18)`` exactly — more than 18 fractional digits, 18 or more
integer digits, NaN, infinities — are refused with :class:`~spark.storage.errors.AmountOutOfRange`
on both databases alike, rather than rounded by PostgreSQL and kept by SQLite.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from spark.storage.amounts import PRECISION, SCALE, amount_text, canonical


class Amount(TypeDecorator[Decimal]):
    """``NUMERIC(36,18)`` on PostgreSQL, Decimal-as-TEXT on SQLite; see the module docstring."""

    impl = Numeric(PRECISION, SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        text = amount_text(value)  # validates; PostgreSQL gets the Decimal itself
        return text if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, str):
            return canonical(Decimal(value))
        return canonical(value)

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal
