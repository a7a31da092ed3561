"""Helpers for the storage tests: fresh databases, table dumps, record factories.

PostgreSQL isolation: every test gets its own uniquely named database (created on the server in
``SPARK_TEST_DATABASE_URL``, dropped with FORCE afterwards), because other engineers' tests
share that server.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from spark.storage import records as r
from spark.storage import schema

PG_ENV = "SPARK_TEST_DATABASE_URL"


def pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (no PostgreSQL for this run)")
    return url


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path, name: str = "spark") -> Iterator[str]:
    """The URL of a new, empty database of ``kind`` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
        return
    base = make_url(pg_base_url())
    db_name = f"spark_storage_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
        try:
            yield base.set(database=db_name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (without surrogate ids), sorted: equal dumps = equal contents."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in schema.ALL_TABLES:
            cols = [c for c in table.columns if c.name != "id"]
            rows = conn.execute(sa.select(*cols)).all()
            out[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return out


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.ALL_TABLES
        )


# --- record factories (deterministic unless a field is given) ---------------------------------

_seq = itertools.count(1)


def order(coid: str = "c1", version: int = 1, **kw: Any) -> r.OrderUpdate:
    fields: dict[str, Any] = dict(
        client_order_id=coid, symbol="BTCUSDT", side="BUY", type="LIMIT", time_in_force="GTC",
        quantity=Decimal("0.00012"), price=Decimal("45000.50"), status="NEW",
        venue_order_id=1000 + version, executed_qty=Decimal(0), cumulative_quote_qty=Decimal(0),
        version=version, created_ms=1_763_600_000_000, updated_ms=1_763_600_000_000 + version,
        reason=None, ingress=0.0,
    )
    fields.update(kw)
    return r.OrderUpdate(**fields)


def execution(n: int | None = None, **kw: Any) -> r.ExecutionRecord:
    n = next(_seq) if n is None else n
    fields: dict[str, Any] = dict(
        execution_id=f"x{n}", client_order_id=f"c{n % 7}", venue_order_id=5000 + n,
        symbol="BTCUSDT", side="SELL", execution_type="TRADE", order_status="PARTIALLY_FILLED",
        last_qty=Decimal("0.001"), last_price=Decimal("45000.1"),
        cumulative_qty=Decimal("0.002"), commission=Decimal("0.0000001"),
        commission_asset="BNB", trade_id=n, event_ms=1_763_600_000_000 + n,
        transaction_ms=1_763_600_000_000 + n, ingress=0.0,
    )
    fields.update(kw)
    return r.ExecutionRecord(**fields)


def trade(n: int | None = None, **kw: Any) -> r.TradeRecord:
    n = next(_seq) if n is None else n
    fields: dict[str, Any] = dict(
        symbol="BTCUSDT", trade_id=n, venue_order_id=5000 + n, client_order_id=f"c{n % 7}",
        execution_id=f"x{n}", side="BUY", price=Decimal("45000.1"), qty=Decimal("0.001"),
        quote_qty=Decimal("45.0001"), commission=Decimal("0.045"), commission_asset="USDT",
        is_maker=n % 2 == 0, order_status="FILLED", trade_ms=1_763_600_000_000 + n, ingress=0.0,
    )
    fields.update(kw)
    return r.TradeRecord(**fields)


def risk(n: int = 1, **kw: Any) -> r.RiskDecision:
    fields: dict[str, Any] = dict(
        client_order_id=f"c{n}", symbol="BTCUSDT", approved=n % 2 == 0, reason="max_notional",
        detail="notional 25 > 20", decided_ms=1_763_600_000_000 + n, ingress=0.0,
    )
    fields.update(kw)
    return r.RiskDecision(**fields)


def audit(n: int = 1, **kw: Any) -> r.AuditEntry:
    fields: dict[str, Any] = dict(
        at_ms=1_763_600_000_000 + n, actor="admin", action="kill_switch", target="global",
        result="ok", detail={"engaged": True, "n": n}, ingress=0.0,
    )
    fields.update(kw)
    return r.AuditEntry(**fields)


def state_event(cls: type[Any], n: int = 1, **kw: Any) -> Any:
    fields: dict[str, Any] = dict(
        at_ms=1_763_600_000_000 + n, from_state="closed", to_state="open",
        reason="5 failures in 60s", source="breaker", ingress=0.0,
    )
    fields.update(kw)
    return cls(**fields)


def one_of_each(n: int = 1) -> list[r.Record]:
    return [
        order(f"c{n}", version=n),
        execution(n),
        trade(n),
        risk(n),
        audit(n),
        state_event(r.BreakerEvent, n),
        state_event(r.GateEvent, n, from_state="open", to_state="closed"),
        state_event(r.KillSwitchEvent, n, from_state="off", to_state="on", source="signal"),
    ]
