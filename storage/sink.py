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
built once with SQLAlchemy's dialect ``insert`` constructs and compiled to SQL text; records
are turned into parameters column by column (``attrgetter`` and joins, in C where possible) and
handed to the driver without SQLAlchemy's per-parameter processing.

* SQLite: ``executemany`` of ``INSERT … VALUES (?, …) ON CONFLICT …`` per table (the loop runs
  in C), in one transaction;
* PostgreSQL: the whole batch is **one statement** — per table ``INSERT … SELECT * FROM
  unnest(%(table__col)s::type[], …) ON CONFLICT …``, the tables' inserts as sibling
  data-modifying CTEs — run in its own implicit transaction (autocommit): one round trip per
  batch, commit included (``synchronous_commit`` as the server has it: durable by default).
  Each column travels as one array literal (``{"a","b",NULL}``, ``{1.5,NULL}``) built with a
  few joins; the server's ``array_in`` parses it.  (Handing the driver Python lists makes it
  adapt element by element, which cost more than the insert itself.)

The conversion does what the column types would do: amounts become canonical text on SQLite
(:mod:`spark.storage.amounts`) and their exact ``str`` on PostgreSQL (``NUMERIC`` reads any
form), JSON is serialised with orjson.  Amounts are not checked again here: a record cannot be
built with one that does not fit (:mod:`spark.storage.records`).  Text containing NUL, which
PostgreSQL cannot store, is refused by the driver (a data error: the record is isolated, as
before).  Reading goes through the ordinary SQLAlchemy types.

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
#
# Records are validated when they are built (every amount is a finite ``Decimal`` that fits
# ``NUMERIC(36,18)``, see :mod:`spark.storage.records`), so the conversion here only renders.


def _sqlite_amount(value: Any) -> Any:
    """The canonical text of a (validated) amount: :func:`amount_text` without re-checking."""
    if value is None:
        return None
    text = str(value)
    if "E" in text:  # exponent notation: the exact slow path
        return amount_text(value)
    if "." in text and text[-1] == "0":
        text = text.rstrip("0")
        if text[-1] == ".":
            text = text[:-1]
    return "0" if text == "-0" else text


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# PostgreSQL array literals (``{a,b,NULL}``): one text parameter per column, parsed by the
# server's ``array_in``.  Building them is a few C-level joins per column instead of handing the
# driver lists to adapt element by element (which costs more than the insert itself).


def _quoted_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if not isinstance(value, str):  # a str subclass (StrEnum) is its text, as for the driver
        raise TypeError(f"expected a str column value, got {type(value).__name__}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pg_text_array(values: Sequence[Any]) -> str:
    """Strings (or ``None``) as an array literal, every element quoted."""
    try:
        joined = "\x00".join(values)  # PostgreSQL text never holds NUL: a safe separator
    except TypeError:  # a None (or a non-str) among them
        joined = None
    if (
        joined is None
        or '"' in joined
        or "\\" in joined
        or joined.count("\x00") != len(values) - 1
    ):
        # Escaping needed (or a NUL inside a value, which the driver then refuses).
        return "{" + ",".join(map(_quoted_element, values)) + "}"
    return '{"' + joined.replace("\x00", '","') + '"}'


def _plain_element(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _pg_plain_array(values: Sequence[Any]) -> str:
    """Numbers, amounts or booleans (or ``None``): their ``str`` needs no quoting.

    ``str`` of an int, a finite ``Decimal`` (``45000.1``, ``1E+2``, ``-0``) or a bool
    (``True``, read case-insensitively by PostgreSQL) never contains an ``N``; ``None`` does.
    """
    body = ",".join(map(str, values))
    if "N" in body:
        body = ",".join(map(_plain_element, values))
    return "{" + body + "}"


def _pg_json_array(values: Sequence[Any]) -> str:
    return _pg_text_array([None if v is None else _json_text(v) for v in values])


def _pg_param(table: sa.Table, column: sa.Column[Any]) -> str:
    return f"{table.name}__{column.name}"


def _array_element(column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
    if isinstance(column.type, Amount):
        return sa.Numeric()
    return column.type


def _pg_encoder(column: sa.Column[Any]) -> Callable[[Sequence[Any]], str]:
    if isinstance(column.type, sa.JSON):
        return _pg_json_array
    if isinstance(column.type, Amount | sa.Integer | sa.Boolean | sa.Numeric):
        return _pg_plain_array
    if isinstance(column.type, sa.String):
        return _pg_text_array
    raise UnsupportedDatabase(f"no array encoding for column {column} ({column.type})")


class _Plan:
    """One table's compiled statement and how to turn records into its parameters."""

    def __init__(self, table: sa.Table, statement: Any, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.dialect = dialect.name
        columns = _data_columns(table)
        if self.dialect == "sqlite":
            order = list(compiled.positiontup or ())
            assert sorted(order) == sorted(c.name for c in columns), order
            self._names = order
        else:
            order = [c.name for c in columns]
            self._names = [_pg_param(table, c) for c in columns]
        by_name = {c.name: c for c in columns}
        # attrgetter fetches every field of a record in one C call.
        self._get = operator.attrgetter(*order)
        # SQLite: which positions need Python (amounts to canonical text, JSON to text).
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(order):
            kind = by_name[name].type
            if isinstance(kind, Amount):
                self._convert.append((i, _sqlite_amount))
            elif isinstance(kind, sa.JSON):
                self._convert.append((i, _json_text))
        # PostgreSQL: one array-literal encoder per column.
        self._encoders = (
            [_pg_encoder(by_name[name]) for name in order] if self.dialect == "postgresql" else []
        )

    def parameters(self, records: Sequence[Record]) -> Any:
        if len(self._names) == 1:  # attrgetter of one name returns the value, not a tuple
            rows: list[Any] = [(value,) for value in map(self._get, records)]
        else:
            rows = list(map(self._get, records))
        if self.dialect == "sqlite":
            if not self._convert:
                return rows
            # Column-wise: transpose (C), convert the few columns that need it, transpose back.
            columns = list(zip(*rows, strict=True))
            for index, fn in self._convert:
                columns[index] = tuple(map(fn, columns[index]))
            return list(zip(*columns, strict=True))
        # PostgreSQL: one array literal per column (unnest turns them back into rows).
        return {
            name: encode(values)
            for name, encode, values in zip(
                self._names, self._encoders, zip(*rows, strict=True), strict=True
            )
        }


def _sqlite_statement(table: sa.Table) -> Any:
    columns = _data_columns(table)
    return sqlite.insert(table).values({c.name: sa.bindparam(c.name) for c in columns})


def _pg_statement(table: sa.Table) -> Any:
    columns = _data_columns(table)
    # Parameter names carry the table's name: one statement writes several tables.
    arrays = [
        sa.cast(sa.bindparam(_pg_param(table, c)), ARRAY(_array_element(c))) for c in columns
    ]
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
        self._postgres = dialect.name == "postgresql"
        self._combined: dict[tuple[type[Any], ...], str] = {}

    def write(self, records: Sequence[Record]) -> None:
        """Write ``records`` in one transaction (all or nothing)."""
        if not records:
            return
        grouped = reduce_batch(records)
        present = tuple(t for t in _ORDER_OF_TYPES if t in grouped)
        if self._postgres:
            # One statement for the whole batch (each table's INSERT a data-modifying CTE) in
            # its own implicit transaction: a single round trip, commit included, instead of
            # BEGIN + a statement per table + COMMIT.  Atomic like any statement.
            parameters: dict[str, Any] = {}
            for record_type in present:
                parameters.update(self._plans[record_type].parameters(grouped[record_type]))
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(self._combined_sql(present), parameters)
            return
        with self.engine.begin() as conn:
            for record_type in present:
                plan = self._plans[record_type]
                conn.exec_driver_sql(plan.sql, plan.parameters(grouped[record_type]))

    def _combined_sql(self, present: tuple[type[Any], ...]) -> str:
        """PostgreSQL: the statement writing the tables of ``present`` (built once per shape).

        The tables are distinct and unrelated (no foreign keys, no triggers), so running their
        inserts as sibling CTEs of one statement (same snapshot, unspecified order) is the same
        as running them one after the other in one transaction.
        """
        sql = self._combined.get(present)
        if sql is None:
            *ctes, last = (self._plans[t].sql for t in present)
            sql = last
            if ctes:
                sql = "WITH " + ", ".join(
                    f"w{i} AS ({cte})" for i, cte in enumerate(ctes)
                ) + " " + last
            self._combined[present] = sql
        return sql

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
