"""Idempotent batch writes: replaying every event (twice, in any batching) changes nothing."""

from __future__ import annotations

import random
from decimal import Decimal
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
from spark.storage.sink import Sink, is_transient, reduce_batch

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
