"""Idempotent batch writes: one transaction per batch, replay-safe, and fast.

* executions, trades, decisions, audit entries and state events: ``INSERT … ON CONFLICT DO
  NOTHING`` on their unique key (see :mod:`spark.storage.schema`), so a record written twice is
  one row;
* orders: ``INSERT … ON CONFLICT (client_order_id) DO UPDATE … WHERE orders.version <
  excluded.version`` — an order row only moves forward; a replayed or late (older) update never
  overwrites a newer one; ``created_ms`` is kept from the first write.

Within a batch, duplicates are reduced before the statement is sent (PostgreSQL refuses to
update the same row twice in one ``INSERT … ON CONFLICT DO UPDATE``): per order the update with
the highest version wins (the first one on a tie, as the database would), per key the first
record.  Applying a batch is therefore equivalent to applying its records one by one in order.

Speed (the writer must sustain tens of thousands of records per second): the statements are
built once with SQLAlchemy's dialect ``insert`` constructs and compiled to SQL text; rows are
converted by a per-table plan and handed to the driver without SQLAlchemy's per-parameter
processing.

* SQLite: ``executemany`` of ``INSERT … VALUES (?, …) ON CONFLICT …`` (the loop runs in C);
* PostgreSQL: one statement per table and batch, ``INSERT … SELECT * FROM unnest(%(col)s::type[],
  …) ON CONFLICT …`` with one array per column — one round trip instead of one per row.

The conversion does what the column types would do: amounts are validated and made canonical
(:mod:`spark.storage.amounts`; text on SQLite, ``Decimal`` for ``NUMERIC`` on PostgreSQL), JSON
is serialised with orjson.  Reading goes through the ordinary SQLAlchemy types.

Synchronous and blocking: the writer actor calls it from a worker thread.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine

from spark.storage import schema
from spark.storage.amounts import amount_text
from spark.storage.errors import SchemaError, UnsupportedDatabase
from spark.storage.records import (
    AuditEntry,
    BreakerEvent,
    ExecutionRecord,
    GateEvent,
    KillSwitchEvent,
    OrderUpdate,
    Record,
    RiskDecision,
    TradeRecord,
)
from spark.storage.types import Amount

KeyFn = Callable[[Any], Any]

# (record type, table, conflict key columns, key of a record for in-batch dedupe)
_PLAIN: tuple[tuple[type[Any], sa.Table, tuple[str, ...], KeyFn], ...] = (
    (ExecutionRecord, schema.executions, ("execution_id",), lambda r: r.execution_id),
    (TradeRecord, schema.trades, ("symbol", "trade_id"), lambda r: (r.symbol, r.trade_id)),
    (RiskDecision, schema.risk_decisions, ("record_id",), lambda r: r.record_id),
    (AuditEntry, schema.audit_log, ("record_id",), lambda r: r.record_id),
    (BreakerEvent, schema.breaker_events, ("record_id",), lambda r: r.record_id),
    (GateEvent, schema.gate_events, ("record_id",), lambda r: r.record_id),
    (KillSwitchEvent, schema.kill_switch_events, ("record_id",), lambda r: r.record_id),
)
_TABLES: dict[type[Any], sa.Table] = {
    OrderUpdate: schema.orders,
    **{record_type: table for record_type, table, _, _ in _PLAIN},
}

# Writing order inside a transaction: facts first, then the order rows derived from them.
_ORDER_OF_TYPES = (*(entry[0] for entry in _PLAIN), OrderUpdate)


def _data_columns(table: sa.Table) -> list[sa.Column[Any]]:
    """Every column but the surrogate ``id`` (the database assigns it)."""
    return [c for c in table.columns if c.name != "id"]


def to_row(record: Record) -> dict[str, Any]:
    """The column values of ``record`` (every field but ``ingress``), unconverted."""
    return {c.name: getattr(record, c.name) for c in _data_columns(_TABLES[type(record)])}


def reduce_batch(records: Iterable[Record]) -> dict[type[Any], list[Record]]:
    """Group by type, dropping in-batch duplicates (see the module docstring)."""
    orders: dict[str, OrderUpdate] = {}
    plain: dict[type[Any], dict[Any, Record]] = {entry[0]: {} for entry in _PLAIN}
    keys = {entry[0]: entry[3] for entry in _PLAIN}
    for record in records:
        if isinstance(record, OrderUpdate):
            seen = orders.get(record.client_order_id)
            if seen is None or seen.version < record.version:
                orders[record.client_order_id] = record
        else:
            bucket = plain[type(record)]
            bucket.setdefault(keys[type(record)](record), record)
    grouped: dict[type[Any], list[Record]] = {t: list(b.values()) for t, b in plain.items() if b}
    if orders:
        grouped[OrderUpdate] = list(orders.values())
    return grouped


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later may succeed (database down, locked, schema not yet upgraded).

    Anything else (constraint or data errors) is a property of the records themselves and
    would fail again: the writer isolates such records instead of retrying forever.
    """
    if isinstance(exc, SchemaError | OSError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        # ProgrammingError: a missing table or column is a deployment problem, not bad data.
        return isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.ProgrammingError
        )
    return isinstance(exc, sa.exc.DisconnectionError | sa.exc.TimeoutError)


# --- value conversion -------------------------------------------------------------------------


def _amount_or_none_text(value: Any) -> Any:
    return None if value is None else amount_text(value)


def _amount_or_none_decimal(value: Any) -> Any:
    if value is not None:
        amount_text(value)  # validation only: PostgreSQL stores the Decimal exactly
    return value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _converters(
    columns: Sequence[sa.Column[Any]], dialect: str
) -> list[tuple[str, Callable[[Any], Any] | None]]:
    amount = _amount_or_none_text if dialect == "sqlite" else _amount_or_none_decimal
    out: list[tuple[str, Callable[[Any], Any] | None]] = []
    for column in columns:
        if isinstance(column.type, Amount):
            out.append((column.name, amount))
        elif isinstance(column.type, sa.JSON):
            out.append((column.name, _json_text))
        else:
            out.append((column.name, None))
    return out


def _array_element(column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
    if isinstance(column.type, Amount):
        return sa.Numeric()
    return column.type


class _Plan:
    """One table's compiled statement and how to turn records into its parameters."""

    def __init__(self, table: sa.Table, statement: Any, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.dialect = dialect.name
        columns = _data_columns(table)
        converters = dict(_converters(columns, dialect.name))
        if self.dialect == "sqlite":
            order = list(compiled.positiontup or ())
            assert sorted(order) == sorted(c.name for c in columns), order
        else:
            order = [c.name for c in columns]
        # attrgetter fetches every field in one C call; only amounts and JSON need Python.
        self._get = operator.attrgetter(*order)
        self._convert: list[tuple[int, Callable[[Any], Any]]] = [
            (i, fn) for i, name in enumerate(order) if (fn := converters[name]) is not None
        ]
        self._names = order

    def parameters(self, records: Sequence[Record]) -> Any:
        get = self._get
        convert = self._convert
        rows: list[Any] = []
        for record in records:
            if convert:
                row: list[Any] = list(get(record))
                for index, fn in convert:
                    row[index] = fn(row[index])
                rows.append(tuple(row))  # the driver API takes tuples
            else:
                rows.append(get(record))
        if self.dialect == "sqlite":
            return rows
        # PostgreSQL: one array per column (unnest turns them back into rows).
        columns = zip(*rows, strict=True)
        return {name: list(values) for name, values in zip(self._names, columns, strict=True)}


def _sqlite_statement(table: sa.Table) -> Any:
    columns = _data_columns(table)
    return sqlite.insert(table).values({c.name: sa.bindparam(c.name) for c in columns})


def _pg_statement(table: sa.Table) -> Any:
    columns = _data_columns(table)
    arrays = [sa.cast(sa.bindparam(c.name), ARRAY(_array_element(c))) for c in columns]
    rows = sa.func.unnest(*arrays).table_valued(*[c.name for c in columns]).render_derived()
    source = sa.select(*[rows.c[c.name] for c in columns])
    return postgresql.insert(table).from_select([c.name for c in columns], source)


class Sink:
    """Writes batches of records to one database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        if dialect.name == "sqlite":
            build: Callable[[sa.Table], Any] = _sqlite_statement
            # Positional parameters: executemany with plain tuples.
            compile_dialect: sa.Dialect = sqlite.dialect(paramstyle="qmark")
        elif dialect.name == "postgresql":
            build = _pg_statement
            compile_dialect = dialect
        else:
            raise UnsupportedDatabase(f"unsupported database dialect {dialect.name!r}")
        self._plans: dict[type[Any], _Plan] = {}
        for record_type, table, key, _ in _PLAIN:
            statement = build(table).on_conflict_do_nothing(index_elements=list(key))
            self._plans[record_type] = _Plan(table, statement, compile_dialect)
        upsert = build(schema.orders)
        kept = {"client_order_id", "created_ms"}
        statement = upsert.on_conflict_do_update(
            index_elements=["client_order_id"],
            set_={
                c.name: upsert.excluded[c.name]
                for c in schema.orders.columns
                if c.name not in kept
            },
            where=schema.orders.c.version < upsert.excluded.version,
        )
        self._plans[OrderUpdate] = _Plan(schema.orders, statement, compile_dialect)

    def write(self, records: Sequence[Record]) -> None:
        """Write ``records`` in one transaction (all or nothing)."""
        if not records:
            return
        grouped = reduce_batch(records)
        with self.engine.begin() as conn:
            for record_type in _ORDER_OF_TYPES:
                batch = grouped.get(record_type)
                if batch:
                    plan = self._plans[record_type]
                    conn.exec_driver_sql(plan.sql, plan.parameters(batch))

    def write_isolating(self, records: Sequence[Record]) -> list[tuple[Record, BaseException]]:
        """Write ``records``; if the database refuses some for good, write all the others.

        Returns the refused records with their errors.  A batch failing with a non-transient
        error is split in halves recursively, so one bad record costs O(log n) extra
        transactions.  Transient errors are raised (the caller spools and retries).
        """
        try:
            self.write(records)
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(records) == 1:
                return [(records[0], exc)]
            middle = len(records) // 2
            return self.write_isolating(records[:middle]) + self.write_isolating(
                records[middle:]
            )
        return []


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of a database error (for health and logs)."""
    from spark.storage.engine import mask_text

    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = f"{type(exc.orig).__name__}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return mask_text(first)[:300]
