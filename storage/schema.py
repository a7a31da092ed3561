"""The database schema (SQLAlchemy 2 Core), identical on SQLite and PostgreSQL.

Conventions, and why:

* **Times** are ``BIGINT`` milliseconds since the Unix epoch, UTC, in columns named ``*_ms``.
  Exact, portable (SQLite has no timestamp type), index-friendly, and millisecond precision by
  construction — Binance's own timestamps are epoch ms, so nothing is converted on the way in.
  Readers turn them into datetimes with :func:`spark.core.clock.to_datetime`; the CSV export
  renders them as ISO 8601 UTC with milliseconds.
* **Amounts** use :class:`~spark.storage.types.Amount` (``NUMERIC(36,18)`` on PostgreSQL, exact
  decimal text on SQLite).
* **Idempotency keys.**  Every table has a natural or assigned unique key, so that the writer can
  insert with ``ON CONFLICT DO NOTHING`` and replaying any event (spool replay after a crash,
  duplicates from the venue) changes nothing: ``orders.client_order_id`` (upserted forward by
  ``version``), ``executions.execution_id``, ``trades (symbol, trade_id)``, and ``record_id`` (a
  random id fixed when the record is created) for decisions, audit entries and state events.
* **No foreign keys**: execution reports can legitimately arrive before the order row (or for
  orders placed by another client), and the writer must never reject a fact the venue reported.
* **Strings have no length limit** (``VARCHAR`` on PostgreSQL, ``TEXT`` on SQLite): SQLite would
  not enforce one anyway, and a venue-supplied id longer than we guessed must not make the same
  row fail on one database and pass on the other.
* ``schema_meta`` is Alembic's ``alembic_version`` table;
  :func:`spark.storage.migrate.check_schema_current` compares it with the migrations shipped in
  this package.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from spark.storage.types import Amount

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# BIGINT on PostgreSQL; INTEGER on SQLite so that the column is the rowid alias (autoincrement).
RowId = BigInteger().with_variant(Integer(), "sqlite")


def _row_id() -> Column[int]:
    return Column("id", RowId, primary_key=True, autoincrement=True)


orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(), primary_key=True),
    Column("symbol", String(), nullable=False),
    Column("side", String(), nullable=False),
    Column("type", String(), nullable=False),
    Column("time_in_force", String(), nullable=True),
    Column("quantity", Amount(), nullable=False),
    Column("price", Amount(), nullable=True),
    Column("status", String(), nullable=False),
    Column("venue_order_id", BigInteger(), nullable=True),
    Column("executed_qty", Amount(), nullable=False),
    Column("cumulative_quote_qty", Amount(), nullable=False),
    # The router's update sequence for this order: an upsert only ever moves it forward.
    Column("version", BigInteger(), nullable=False),
    Column("created_ms", BigInteger(), nullable=False),
    Column("updated_ms", BigInteger(), nullable=False),
    Column("reason", Text(), nullable=True),
    Index(None, "status"),
    Index(None, "symbol", "created_ms"),
)

executions = Table(
    "executions",
    metadata,
    _row_id(),
    Column("execution_id", String(), nullable=False),
    Column("client_order_id", String(), nullable=False),
    Column("venue_order_id", BigInteger(), nullable=True),
    Column("symbol", String(), nullable=False),
    Column("side", String(), nullable=False),
    Column("execution_type", String(), nullable=False),
    Column("order_status", String(), nullable=False),
    Column("last_qty", Amount(), nullable=False),
    Column("last_price", Amount(), nullable=False),
    Column("cumulative_qty", Amount(), nullable=False),
    Column("commission", Amount(), nullable=False),
    Column("commission_asset", String(), nullable=True),
    Column("trade_id", BigInteger(), nullable=True),
    Column("event_ms", BigInteger(), nullable=False),
    Column("transaction_ms", BigInteger(), nullable=False),
    UniqueConstraint("execution_id"),
    Index(None, "client_order_id"),
    Index(None, "transaction_ms"),
)

trades = Table(
    "trades",
    metadata,
    _row_id(),
    Column("symbol", String(), nullable=False),
    Column("trade_id", BigInteger(), nullable=False),
    Column("venue_order_id", BigInteger(), nullable=True),
    Column("client_order_id", String(), nullable=False),
    # The execution report that carried this fill (absent for fills learned from REST).
    Column("execution_id", String(), nullable=True),
    Column("side", String(), nullable=False),
    Column("price", Amount(), nullable=False),
    Column("qty", Amount(), nullable=False),
    Column("quote_qty", Amount(), nullable=False),
    Column("commission", Amount(), nullable=False),
    Column("commission_asset", String(), nullable=True),
    Column("is_maker", Boolean(), nullable=False),
    # The order's status right after this fill (PARTIALLY_FILLED / FILLED), for the export.
    Column("order_status", String(), nullable=True),
    Column("trade_ms", BigInteger(), nullable=False),
    UniqueConstraint("symbol", "trade_id"),
    Index(None, "client_order_id"),
    # The export streams in this order straight off the index.
    Index(None, "trade_ms", "symbol", "trade_id"),
)

risk_decisions = Table(
    "risk_decisions",
    metadata,
    _row_id(),
    Column("record_id", String(), nullable=False),
    Column("client_order_id", String(), nullable=False),
    Column("symbol", String(), nullable=False),
    Column("approved", Boolean(), nullable=False),
    Column("reason", String(), nullable=False),
    Column("detail", Text(), nullable=True),
    Column("decided_ms", BigInteger(), nullable=False),
    UniqueConstraint("record_id"),
    Index(None, "client_order_id"),
    Index(None, "decided_ms"),
)

audit_log = Table(
    "audit_log",
    metadata,
    _row_id(),
    Column("record_id", String(), nullable=False),
    Column("at_ms", BigInteger(), nullable=False),
    # A control-port role ("admin", "trader"...) or "signal"; never a token.
    Column("actor", String(), nullable=False),
    Column("action", String(), nullable=False),
    Column("target", Text(), nullable=True),
    Column("result", String(), nullable=False),
    Column("detail", JSON(), nullable=False),
    UniqueConstraint("record_id"),
    Index(None, "at_ms"),
)


def _state_events(name: str) -> Table:
    return Table(
        name,
        metadata,
        _row_id(),
        Column("record_id", String(), nullable=False),
        Column("at_ms", BigInteger(), nullable=False),
        Column("from_state", String(), nullable=True),
        Column("to_state", String(), nullable=False),
        Column("reason", Text(), nullable=False),
        Column("source", String(), nullable=False),
        UniqueConstraint("record_id"),
        Index(None, "at_ms"),
    )


breaker_events = _state_events("breaker_events")
gate_events = _state_events("gate_events")
kill_switch_events = _state_events("kill_switch_events")

ALL_TABLES = (
    orders,
    executions,
    trades,
    risk_decisions,
    audit_log,
    breaker_events,
    gate_events,
    kill_switch_events,
)
