"""Initial schema: orders, executions, trades, risk decisions, audit log, state events.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

from spark.storage.types import Amount

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; INTEGER (the rowid alias, autoincrementing) on SQLite.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id(table: str) -> list[SchemaItem]:
    return [
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
    ]


def _state_events(table: str) -> None:
    op.create_table(
        table,
        *_id(table),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.UniqueConstraint("record_id", name=f"uq_{table}_record_id"),
    )
    op.create_index(f"ix_{table}_at_ms", table, ["at_ms"])


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("time_in_force", sa.String(), nullable=True),
        sa.Column("quantity", Amount(), nullable=False),
        sa.Column("price", Amount(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("venue_order_id", sa.BigInteger(), nullable=True),
        sa.Column("executed_qty", Amount(), nullable=False),
        sa.Column("cumulative_quote_qty", Amount(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("client_order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_symbol_created_ms", "orders", ["symbol", "created_ms"])

    op.create_table(
        "executions",
        *_id("executions"),
        sa.Column("execution_id", sa.String(), nullable=False),
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("venue_order_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("execution_type", sa.String(), nullable=False),
        sa.Column("order_status", sa.String(), nullable=False),
        sa.Column("last_qty", Amount(), nullable=False),
        sa.Column("last_price", Amount(), nullable=False),
        sa.Column("cumulative_qty", Amount(), nullable=False),
        sa.Column("commission", Amount(), nullable=False),
        sa.Column("commission_asset", sa.String(), nullable=True),
        sa.Column("trade_id", sa.BigInteger(), nullable=True),
        sa.Column("event_ms", sa.BigInteger(), nullable=False),
        sa.Column("transaction_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("execution_id", name="uq_executions_execution_id"),
    )
    op.create_index("ix_executions_client_order_id", "executions", ["client_order_id"])
    op.create_index("ix_executions_transaction_ms", "executions", ["transaction_ms"])

    op.create_table(
        "trades",
        *_id("trades"),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("trade_id", sa.BigInteger(), nullable=False),
        sa.Column("venue_order_id", sa.BigInteger(), nullable=True),
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("execution_id", sa.String(), nullable=True),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("price", Amount(), nullable=False),
        sa.Column("qty", Amount(), nullable=False),
        sa.Column("quote_qty", Amount(), nullable=False),
        sa.Column("commission", Amount(), nullable=False),
        sa.Column("commission_asset", sa.String(), nullable=True),
        sa.Column("is_maker", sa.Boolean(), nullable=False),
        sa.Column("order_status", sa.String(), nullable=True),
        sa.Column("trade_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("symbol", "trade_id", name="uq_trades_symbol_trade_id"),
    )
    op.create_index("ix_trades_client_order_id", "trades", ["client_order_id"])
    op.create_index(
        "ix_trades_trade_ms_symbol_trade_id", "trades", ["trade_ms", "symbol", "trade_id"]
    )

    op.create_table(
        "risk_decisions",
        *_id("risk_decisions"),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("decided_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("record_id", name="uq_risk_decisions_record_id"),
    )
    op.create_index("ix_risk_decisions_client_order_id", "risk_decisions", ["client_order_id"])
    op.create_index("ix_risk_decisions_decided_ms", "risk_decisions", ["decided_ms"])

    op.create_table(
        "audit_log",
        *_id("audit_log"),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.UniqueConstraint("record_id", name="uq_audit_log_record_id"),
    )
    op.create_index("ix_audit_log_at_ms", "audit_log", ["at_ms"])

    for table in ("breaker_events", "gate_events", "kill_switch_events"):
        _state_events(table)


def downgrade() -> None:
    for table in (
        "kill_switch_events",
        "gate_events",
        "breaker_events",
        "audit_log",
        "risk_decisions",
        "trades",
        "executions",
        "orders",
    ):
        op.drop_table(table)
