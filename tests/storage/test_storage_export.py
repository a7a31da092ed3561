"""Trade export: exact content, bounds, streaming with flat memory, the async iterator."""

from __future__ import annotations

import csv
import io
import random
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storage_helpers import trade

from spark.runtime.metrics import Metrics
from spark.storage import commands, schema
from spark.storage.amounts import to_text
from spark.storage.errors import InvalidTimeBound
from spark.storage.export import (
    HEADER,
    aiter_trades_csv,
    iter_trades_csv,
    parse_time_bound,
)
from spark.storage.sink import Sink

T0 = 1_763_600_000_000  # 2025-11-20T00:53:20Z


def test_content_is_exact(engine: Engine) -> None:
    Sink(engine).write([
        trade(2, price=Decimal("45000.10"), qty=Decimal("0.00012000"), trade_ms=T0 + 1,
              commission=Decimal("0"), commission_asset=None, execution_id=None,
              venue_order_id=None, order_status=None, client_order_id="abc-1"),
        trade(1, price=Decimal("1E+2"), qty=Decimal("1E-18"), trade_ms=T0,
              commission=Decimal("0.0000012"), commission_asset="BNB", execution_id="987",
              venue_order_id=42, order_status="PARTIALLY_FILLED", client_order_id='we,"ird',
              side="SELL"),
    ])
    text = b"".join(iter_trades_csv(engine)).decode()
    assert text == (
        ",".join(HEADER) + "\n"
        + '987,"we,""ird","we,""ird",BTCUSDT,SELL,0.000000000000000001,100,PARTIALLY_FILLED,'
        "2025-11-20T00:53:20.000Z,42,0.0000012,BNB\n"
        + "BTCUSDT-2,abc-1,abc-1,BTCUSDT,BUY,0.00012,45000.1,,2025-11-20T00:53:20.001Z,,0,\n"
    )


def test_bounds_since_inclusive_until_exclusive(engine: Engine) -> None:
    Sink(engine).write([trade(n, trade_ms=T0 + n * 1000) for n in range(10)])

    def ids(since: str | int | None, until: str | int | None) -> list[str]:
        rows = list(csv.reader(io.StringIO(b"".join(iter_trades_csv(engine, since, until))
                                           .decode())))[1:]
        return [row[0] for row in rows]

    assert len(ids(None, None)) == 10
    assert ids(T0 + 3000, T0 + 5000) == ["x3", "x4"]
    assert ids("2025-11-20T00:53:23Z", "2025-11-20T00:53:25.000+00:00") == ["x3", "x4"]
    assert ids(str(T0 + 8000), None) == ["x8", "x9"]
    assert ids("2025-11-21", None) == []


def test_parse_time_bound() -> None:
    assert parse_time_bound("2025-11-20T00:53:20.123Z") == T0 + 123
    assert parse_time_bound("2025-11-20T01:53:20.001+01:00") == T0 + 1
    assert parse_time_bound("2025-11-20T00:53:20") == T0  # naive = UTC
    assert parse_time_bound(str(T0)) == T0
    assert parse_time_bound(None) is None
    for bad in ("yesterday", "2025-13-01", "1.5"):
        with pytest.raises(InvalidTimeBound) as info:
            parse_time_bound(bad)
        assert info.value.reason == "invalid_time_bound"


def test_cli_entry_point_and_metrics(engine: Engine) -> None:
    Sink(engine).write([trade(n, trade_ms=T0 + n) for n in range(1, 101)])
    metrics = Metrics(process=False)
    out = io.BytesIO()
    url = engine.url.render_as_string(hide_password=False)
    stats = commands.export_trades(url, None, None, out, metrics=metrics)
    assert stats.rows == 100 and stats.bytes == len(out.getvalue())
    assert out.getvalue().count(b"\n") == 101
    sample = metrics.registry.get_sample_value
    assert sample("spark_export_rows_total") == 100
    assert sample("spark_export_bytes_total") == len(out.getvalue())
    assert sample("spark_export_duration_seconds_count") == 1


def bulk_insert(engine: Engine, n: int) -> None:
    """``n`` trades generated inside the database (seconds instead of minutes in Python)."""
    if engine.dialect.name == "sqlite":
        series = (f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
                  f"WHERE i < {n - 1}) ")
        source = "s"
        amount = "'45000.12'"
    else:
        series = ""
        source = f"generate_series(0, {n - 1}) AS s(i)"
        amount = "45000.12"
    sql = (
        f"{series}INSERT INTO trades (symbol, trade_id, venue_order_id, client_order_id, "
        "execution_id, side, price, qty, quote_qty, commission, commission_asset, is_maker, "
        "order_status, trade_ms) "
        f"SELECT 'BTCUSDT', i, 7, 'c', NULL, 'BUY', {amount}, {amount}, {amount}, {amount}, "
        f"'BNB', false, 'FILLED', {T0} + i FROM {source}"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def traced_export(engine: Engine, rows: int) -> tuple[int, int]:
    """Export the first ``rows`` trades under tracemalloc: (CSV bytes, peak traced bytes)."""
    tracemalloc.start()
    try:
        produced = sum(len(chunk) for chunk in iter_trades_csv(engine, None, T0 + rows))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return produced, peak


def test_export_memory_stays_flat(engine: Engine) -> None:
    small, big = 10_000, 40_000  # tracemalloc makes every allocation slow: keep these modest
    bulk_insert(engine, big)
    b"".join(iter_trades_csv(engine, None, T0 + 10))  # warm up compiled-statement caches
    small_size, small_peak = traced_export(engine, small)
    big_size, big_peak = traced_export(engine, big)
    assert big_size > 3.5 * small_size
    # Four times the rows, the same memory: a chunk and a fetch window, never the whole result.
    assert big_peak < small_peak * 1.25 + 256 * 1024, (small_peak, big_peak)
    assert big_peak < 4 * 1024 * 1024, (big_peak, big_size)  # a few MiB, whatever the size

    # And the full size, untraced: every row there, in order.
    lines = 0
    last = b""
    for chunk in iter_trades_csv(engine):
        lines += chunk.count(b"\n")
        last = chunk
    assert lines == big + 1
    last_time = datetime.fromtimestamp((T0 + big - 1) / 1000, UTC)
    iso = last_time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert last.endswith(f"{iso},7,45000.12,BNB\n".encode())


async def test_async_iterator_streams_the_same_bytes(engine: Engine) -> None:
    Sink(engine).write([trade(n, trade_ms=T0 + n) for n in range(1, 3001)])
    expected = b"".join(iter_trades_csv(engine))
    chunks = [chunk async for chunk in aiter_trades_csv(engine)]
    assert len(chunks) > 1  # really streamed in pieces
    assert b"".join(chunks) == expected


async def test_async_iterator_closed_early_releases_the_cursor(engine: Engine) -> None:
    Sink(engine).write([trade(n, trade_ms=T0 + n) for n in range(1, 3001)])
    stream = aiter_trades_csv(engine)
    first = await stream.__anext__()
    assert first.startswith(b"executionId,")
    await stream.aclose()  # a client that went away
    # The connection went back to the pool: a write (needs no open reader on PG) works.
    with trio.fail_after(5):
        await trio.to_thread.run_sync(lambda: Sink(engine).write([trade(5000)]))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.trades)).scalar() == 3001
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# --- exact rendering, and the fast paths against the plain ones -------------------------------


def iso(ms: int) -> str:
    """The reference: ISO 8601 UTC with milliseconds, in exact integer arithmetic."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


EDGE_MS = [
    0, 1, 999, 1000, 1001, 59_999, 60_000, 86_399_999, 86_400_000, T0, T0 + 123, T0 + 999,
    -1, -999, -1000, -1001, -86_400_001,
    951_782_400_000,  # 2000-02-29 (a leap day)
    253_402_300_799_999,  # 9999-12-31T23:59:59.999Z
    -62_135_596_800_000,  # 0001-01-01T00:00:00.000Z
]


def test_timestamps_are_exact_over_the_whole_range(engine: Engine) -> None:
    rng = random.Random(20)
    values = EDGE_MS + [rng.randint(-62_135_596_800_000, 253_402_300_799_999)
                        for _ in range(2000)]
    values += [rng.randint(T0 - 10**10, T0 + 10**10) for _ in range(2000)]
    values = sorted(set(values))
    Sink(engine).write([trade(n, trade_ms=ms) for n, ms in enumerate(values, start=1)])
    rows = list(csv.reader(io.StringIO(b"".join(iter_trades_csv(engine)).decode())))[1:]
    assert [row[8] for row in rows] == [iso(ms) for ms in values]


# Strings that do or do not need CSV quoting — without carriage returns and never empty:
# PostgreSQL's COPY quotes those two where the csv module does not (as before this fast path).
field_text = st.text(alphabet=st.sampled_from([*'ab ,"\n-x.', "é"]), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.lists(st.tuples(field_text, field_text, st.none() | field_text,
                              st.none() | field_text), min_size=1, max_size=40),
    fetch_rows=st.integers(1, 7),
)
def test_export_equals_the_csv_module_whatever_the_batches(
    engine: Engine, fields: list[tuple[str, str, str | None, str | None]], fetch_rows: int
) -> None:
    """The SQLite fast path (joined batches) and PostgreSQL's COPY give exactly what
    ``csv.writer`` gives for the same values, however quoting needs fall across batches."""
    with engine.begin() as conn:
        conn.execute(schema.trades.delete())
    records = [
        trade(n, client_order_id=coid, execution_id=exec_id, commission_asset=asset,
              order_status=status, venue_order_id=None if n % 3 else n, trade_ms=T0 + n)
        for n, (coid, exec_id, status, asset) in enumerate(fields, start=1)
    ]
    Sink(engine).write(records)
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(HEADER)
    for rec in records:
        writer.writerow([
            rec.execution_id or f"{rec.symbol}-{rec.trade_id}", rec.client_order_id,
            rec.client_order_id, rec.symbol, rec.side, to_text(rec.qty), to_text(rec.price),
            rec.order_status, iso(rec.trade_ms), rec.venue_order_id, to_text(rec.commission),
            rec.commission_asset,
        ])
    got = b"".join(iter_trades_csv(engine, fetch_rows=fetch_rows, chunk_bytes=64)).decode()
    assert got == expected.getvalue()


def test_sqlite_odd_values_take_the_csv_module_path(tmp_path: Any) -> None:
    """Values the joined fast path cannot vouch for (a carriage return, a non-text value
    stored by someone else) go through csv.writer: same bytes as the module writes."""
    from spark.storage.engine import make_engine
    from spark.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'odd.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        Sink(engine).write([trade(1, client_order_id="a\rb", trade_ms=T0 + 1),
                            trade(2, trade_ms=T0 + 2)])
        with engine.begin() as conn:  # an integer where text is expected
            conn.exec_driver_sql("UPDATE trades SET commission = 7 WHERE trade_id = 2")
            assert conn.exec_driver_sql(
                "SELECT typeof(commission) FROM trades WHERE trade_id = 2").scalar() == "text"
            conn.exec_driver_sql("UPDATE trades SET side = 7 WHERE trade_id = 2")
        text = b"".join(iter_trades_csv(engine, fetch_rows=1)).decode()
        lines = text.split("\n")
        assert lines[1].startswith("x1,a\rb,a\rb,BTCUSDT,BUY,")  # csv leaves \r unquoted
        assert lines[2].startswith("x2,c2,c2,BTCUSDT,7,0.001,45000.1,FILLED,")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "db_kind", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_postgres_timestamps_do_not_depend_on_the_session_datestyle(migrated_url: str) -> None:
    from spark.storage.engine import make_engine

    engine = make_engine(migrated_url, connect_args={"options": "-c DateStyle=SQL,DMY"})
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW DateStyle").scalar() == "SQL, DMY"
        Sink(engine).write([trade(1, trade_ms=T0 + 7)])
        text = b"".join(iter_trades_csv(engine)).decode()
        assert f",{iso(T0 + 7)}," in text
        with engine.connect() as conn:  # and the session's own setting is left alone
            assert conn.exec_driver_sql("SHOW DateStyle").scalar() == "SQL, DMY"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "db_kind", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_postgres_error_after_the_first_rows_is_raised(migrated_url: str) -> None:
    """A row the server cannot render (a time beyond any timestamp) ends COPY with an error
    after the earlier rows have streamed: the export raises, and the connection is fine."""
    import psycopg

    from spark.storage.engine import make_engine

    # Rows in index order, rendered as they stream (a sort would render them all first).
    engine = make_engine(migrated_url, connect_args={"options": "-c enable_sort=off"},
                         pool_size=1)
    try:
        Sink(engine).write([trade(n, trade_ms=T0 + n) for n in range(1, 2001)]
                           + [trade(9999, trade_ms=2**62)])
        chunks: list[bytes] = []
        with pytest.raises(psycopg.DataError):
            for chunk in iter_trades_csv(engine, chunk_bytes=1024):
                chunks.append(chunk)
        assert len(chunks) > 1  # it did stream before failing
        with engine.begin() as conn:  # the same (only) pooled connection, in a good state
            conn.execute(schema.trades.delete().where(schema.trades.c.trade_id == 9999))
        assert b"".join(iter_trades_csv(engine)).count(b"\n") == 2001
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()
