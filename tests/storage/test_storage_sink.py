"""Idempotent batch writes: replaying every event (twice, in any batching) changes nothing."""

from __future__ import annotations

import random
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storage_helpers import (
    audit,
    dump,
    execution,
    one_of_each,
    order,
    risk,
    row_count,
    state_event,
    trade,
)

from spark.storage import records as r
from spark.storage import schema
from spark.storage.amounts import amount_text, canonical
from spark.storage.errors import AmountOutOfRange
from spark.storage.sink import (
    Sink,
    _pg_json_array,
    _pg_plain_array,
    _pg_text_array,
    _sqlite_amount,
    is_transient,
    reduce_batch,
)

STATUSES = ["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED"]


@st.composite
def event_sequences(draw: st.DrawFn) -> list[r.Record]:
    """Random facts with colliding keys, duplicated and shuffled (out-of-order order updates)."""
    events: list[r.Record] = []
    for coid in draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=4)):
        versions = draw(st.lists(st.integers(1, 50), unique=True, min_size=1, max_size=6))
        for v in versions:
            events.append(order(
                coid, version=v, status=draw(st.sampled_from(STATUSES)),
                executed_qty=Decimal(v) / 1000, updated_ms=1_000 + v,
                created_ms=draw(st.integers(0, 10)),
            ))
    for n in draw(st.lists(st.integers(1, 12), max_size=10)):
        events.append(execution(n))
    for n in draw(st.lists(st.integers(1, 12), max_size=10)):
        events.append(trade(n, symbol=draw(st.sampled_from(["BTCUSDT", "ETHUSDT"]))))
    plain = [risk(1), audit(2), state_event(r.BreakerEvent, 3), state_event(r.GateEvent, 4),
             state_event(r.KillSwitchEvent, 5)]
    events.extend(draw(st.lists(st.sampled_from(plain), max_size=8)))
    duplicates = draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    events.extend(duplicates)
    return draw(st.permutations(events))


def batches(events: list[r.Record], rng: random.Random) -> list[list[r.Record]]:
    out: list[list[r.Record]] = []
    i = 0
    while i < len(events):
        size = rng.randint(1, 7)
        out.append(events[i : i + size])
        i += size
    return out


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in schema.ALL_TABLES:
            conn.execute(table.delete())


def expected_orders(events: list[r.Record]) -> dict[str, r.OrderUpdate]:
    """Per order, the first-seen update with the highest version."""
    best: dict[str, r.OrderUpdate] = {}
    for e in events:
        if isinstance(e, r.OrderUpdate):
            seen = best.get(e.client_order_id)
            if seen is None or seen.version < e.version:
                best[e.client_order_id] = e
    return best


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=event_sequences(), seed=st.integers(0, 2**32))
def test_replaying_every_event_twice_changes_nothing(
    engine: Engine, events: list[r.Record], seed: int
) -> None:
    clear(engine)
    sink = Sink(engine)
    rng = random.Random(seed)
    for batch in batches(events, rng):
        sink.write(batch)
    first = dump(engine)

    # Replay everything again, batched differently, and once more in reverse order.
    for batch in batches(events, rng):
        sink.write(batch)
    for batch in batches(list(reversed(events)), rng):
        sink.write(batch)
    assert dump(engine) == first

    # Orders only moved forward: each row is its highest version.
    with engine.connect() as conn:
        rows = {row.client_order_id: row for row in conn.execute(sa.select(schema.orders))}
    best = expected_orders(events)
    assert set(rows) == set(best)
    for coid, update in best.items():
        assert rows[coid].version == update.version
        assert rows[coid].status == update.status
        assert rows[coid].executed_qty == update.executed_qty

    # Facts: exactly one row per distinct key.
    assert len(first["executions"]) == len({e.execution_id for e in events
                                            if isinstance(e, r.ExecutionRecord)})
    assert len(first["trades"]) == len({(e.symbol, e.trade_id) for e in events
                                        if isinstance(e, r.TradeRecord)})


def test_an_older_update_never_overwrites_a_newer_one(engine: Engine) -> None:
    sink = Sink(engine)
    sink.write([order("o", version=5, status="FILLED", created_ms=1)])
    sink.write([order("o", version=4, status="PARTIALLY_FILLED", created_ms=99)])
    sink.write([order("o", version=5, status="CANCELED")])  # same version: first write wins
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.orders)).one()
    assert (row.version, row.status, row.created_ms) == (5, "FILLED", 1)
    sink.write([order("o", version=6, status="CANCELED", created_ms=77)])
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.orders)).one()
    assert (row.version, row.status, row.created_ms) == (6, "CANCELED", 1)  # created_ms kept


def test_one_batch_is_one_transaction(engine: Engine) -> None:
    sink = Sink(engine)
    bad = trade(2, client_order_id=None)  # violates NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        sink.write([*one_of_each(1), bad])
    assert row_count(engine) == 0
    assert not is_transient(sa.exc.IntegrityError("x", {}, Exception("boom")))


def test_bad_records_are_isolated_and_the_rest_written(engine: Engine) -> None:
    sink = Sink(engine)
    good = [trade(n) for n in range(1, 20)]
    bad = trade(100, client_order_id=None)
    refused = sink.write_isolating([*good[:10], bad, *good[10:]])
    assert [rec for rec, _ in refused] == [bad]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.trades)).scalar() == 19


def test_in_batch_reduction() -> None:
    events: list[Any] = [order("o", 1), order("o", 3), order("o", 2), execution(1), execution(1)]
    grouped = reduce_batch(events)
    assert [e.version for e in grouped[r.OrderUpdate]] == [3]
    assert len(grouped[r.ExecutionRecord]) == 1


def test_large_batch(engine: Engine) -> None:
    sink = Sink(engine)
    records = [rec for n in range(1, 301) for rec in one_of_each(n)]
    sink.write(records)
    sink.write(records)
    assert row_count(engine) == len(records)


# --- value rendering: what goes in comes back, on both databases ------------------------------

# Text that array literals (PostgreSQL) and SQL (both) must carry verbatim.
AWKWARD_TEXT = [
    "", " ", "NULL", "null", 'a"b', "a\\b", "\\", '"', "a,b", "{x}", "}{", "a b", " lead",
    "trail ", "tab\there", "new\nline", "cr\rlf", "é✓😀", "'single'", "$1", "%s", "%(x)s",
]


class Side(StrEnum):
    BUY = "BUY"


def test_awkward_text_round_trips_exactly(engine: Engine) -> None:
    sink = Sink(engine)
    records: list[r.Record] = []
    for n, text in enumerate(AWKWARD_TEXT, start=1):
        records.append(trade(n, client_order_id=text, execution_id=text or None,
                             commission_asset=text, order_status=None if n % 2 else text))
        records.append(execution(n, execution_id=f"x-{text}", client_order_id=text,
                                 commission_asset=None if n % 3 else text))
        records.append(order(f"o-{text}", version=n, reason=text, time_in_force=None))
        records.append(audit(n, target=text, detail={"text": text, "n": n}))
        records.append(risk(n, detail=text or None))
    records.append(trade(999, side=Side.BUY))  # a str subclass is its text
    sink.write(records)
    sink.write(records)  # and idempotent with all of them
    with engine.connect() as conn:
        trades = {row.trade_id: row for row in conn.execute(sa.select(schema.trades))}
        executions = {row.execution_id: row for row in conn.execute(sa.select(schema.executions))}
        orders = {row.client_order_id: row for row in conn.execute(sa.select(schema.orders))}
        audits = {row.at_ms: row for row in conn.execute(sa.select(schema.audit_log))}
        risks = {row.record_id: row for row in conn.execute(sa.select(schema.risk_decisions))}
    assert len(trades) == len(AWKWARD_TEXT) + 1 and trades[999].side == "BUY"
    for rec in records:
        if isinstance(rec, r.TradeRecord) and rec.trade_id != 999:
            row = trades[rec.trade_id]
            assert (row.client_order_id, row.execution_id, row.commission_asset,
                    row.order_status) == (rec.client_order_id, rec.execution_id,
                                          rec.commission_asset, rec.order_status)
        elif isinstance(rec, r.ExecutionRecord):
            row = executions[rec.execution_id]
            assert (row.client_order_id, row.commission_asset) == (
                rec.client_order_id, rec.commission_asset)
        elif isinstance(rec, r.OrderUpdate):
            row = orders[rec.client_order_id]
            assert (row.reason, row.time_in_force, row.version) == (rec.reason, None, rec.version)
        elif isinstance(rec, r.AuditEntry):
            assert audits[rec.at_ms].target == rec.target
            assert audits[rec.at_ms].detail == rec.detail
        elif isinstance(rec, r.RiskDecision):
            assert risks[rec.record_id].detail == rec.detail


def test_amounts_in_every_shape_round_trip(engine: Engine) -> None:
    shapes = ["0", "-0", "0E-7", "0.000", "1E+2", "1.50", "100", "1E-18", "45000.10000000",
              "-12.3400", "999999999999999999.999999999999999999", "1.0E+3", "-0.00"]
    sink = Sink(engine)
    sink.write([trade(n, price=Decimal(text), qty=Decimal(text), commission=Decimal(text))
                for n, text in enumerate(shapes, start=1)])
    with engine.connect() as conn:
        rows = {row.trade_id: row for row in conn.execute(sa.select(schema.trades))}
    for n, text in enumerate(shapes, start=1):
        value = Decimal(text)
        for got in (rows[n].price, rows[n].qty, rows[n].commission):
            # Equal, and identically represented on both databases.
            assert got == value and got.as_tuple() == canonical(value).as_tuple(), (text, got)
    if engine.dialect.name == "sqlite":  # stored as canonical text, exactly amount_text's
        with engine.connect() as conn:
            stored = dict(conn.exec_driver_sql("SELECT trade_id, price FROM trades").all())
        assert stored == {n: amount_text(Decimal(text)) for n, text in enumerate(shapes, 1)}


@settings(max_examples=300, deadline=None)
@given(value=st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.copy_abs() < Decimal(10) ** 18 and d.as_tuple().exponent >= -18)
       | st.builds(lambda digits, exp, sign: Decimal((sign, digits, exp)),
                   st.lists(st.integers(0, 9), min_size=1, max_size=18).map(tuple),
                   st.integers(-18, 17), st.integers(0, 1)))
def test_sqlite_rendering_is_amount_text(value: Decimal) -> None:
    try:
        expected = amount_text(value)
    except AmountOutOfRange:
        return  # a record could not hold it
    assert _sqlite_amount(value) == expected


POSTGRES_ONLY = pytest.mark.parametrize(
    "db_kind", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@POSTGRES_ONLY
def test_pg_array_literals_parse_back_exactly(engine: Engine) -> None:
    texts: list[Any] = [*AWKWARD_TEXT, None, "x"]
    numbers: list[Any] = [Decimal("1E+2"), Decimal("-0"), Decimal("0E-7"), None,
                          Decimal("45000.10"), Decimal("-1E-18")]
    with engine.connect() as conn:
        got_texts, got_numbers, got_ints, got_bools, got_json = conn.exec_driver_sql(
            "SELECT CAST(%(t)s AS VARCHAR[]), CAST(%(n)s AS NUMERIC[]), CAST(%(i)s AS BIGINT[]),"
            " CAST(%(b)s AS BOOLEAN[]), CAST(%(j)s AS JSON[])",
            {"t": _pg_text_array(texts), "n": _pg_plain_array(numbers),
             "i": _pg_plain_array([1, None, -(2**63), 2**63 - 1]),
             "b": _pg_plain_array([True, None, False]),
             "j": _pg_json_array([{"a": 'q"\\', "b": [1, None]}, None, {}])},
        ).one()
    assert got_texts == texts
    assert got_numbers == numbers
    assert got_ints == [1, None, -(2**63), 2**63 - 1]
    assert got_bools == [True, None, False]
    assert got_json == [{"a": 'q"\\', "b": [1, None]}, None, {}]


def test_text_with_nul_is_refused_for_good_and_isolated(engine: Engine) -> None:
    sink = Sink(engine)
    bad = trade(7, client_order_id="nul\x00inside")
    good = [trade(n) for n in range(1, 5)]
    refused = sink.write_isolating([*good, bad])
    if engine.dialect.name == "postgresql":  # PostgreSQL text cannot hold NUL
        assert [rec for rec, _ in refused] == [bad]
        assert not is_transient(refused[0][1])
        assert row_count(engine) == 4
    else:  # SQLite keeps it
        assert refused == []
        assert row_count(engine) == 5


@POSTGRES_ONLY
def test_postgres_batch_is_one_statement_and_leaves_the_pool_transactional(
    engine: Engine,
) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        Sink(engine).write(one_of_each(1) + one_of_each(2))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].startswith("WITH ")
    assert row_count(engine) == 16
    with engine.connect() as conn:  # the pooled connection is back to normal transactions
        assert conn.connection.driver_connection.autocommit is False
