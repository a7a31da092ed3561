"""Writer and export benchmark (run by hand; not part of CI).

    .venv/bin/python bench/writer.py                   # SQLite, and PostgreSQL if configured
    .venv/bin/python bench/writer.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/writer.py --events 50000 --export-rows 200000 --paced-seconds 5

PostgreSQL comes from ``--pg`` or ``SPARK_TEST_DATABASE_URL``; the bench creates its own
uniquely named database on that server and drops it afterwards.

Measures, per database:

* sustained events/s through the writer actor (inbox → batches → one transaction each), from
  the first send until every record is committed, against two floors: a bare SQLAlchemy
  ``executemany`` of the same rows (plain INSERT, no idempotency) and, on PostgreSQL, ``COPY``;
* event→DB latency p50/p99/max at a paced 1,000 events/s (``ingress`` → commit, what
  ``spark_event_to_db_seconds`` observes);
* export rows/s for ``--export-rows`` trades through :func:`iter_trades_csv` against a bare
  cursor-to-CSV loop (raw columns, no timestamp formatting), and the process RSS during the
  export (sampled every 10 ms).

Targets: >= 20,000 events/s, p99 <= 10 ms at 1,000 events/s, export >= 250,000 rows/s, flat RSS.
The numbers depend on the machine and on what else runs on it: the load average is printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from spark.actors.writer import Writer, open_inbox
from spark.runtime.metrics import Metrics
from spark.storage import records as r
from spark.storage import schema
from spark.storage.engine import make_engine, mask_url
from spark.storage.export import iter_trades_csv
from spark.storage.migrate import upgrade
from spark.storage.settings import WriterSettings
from spark.storage.sink import to_row

T0 = 1_763_600_000_000


# --- workload -----------------------------------------------------------------------------------


def fill_events(n_events: int, seed: int = 7) -> list[r.Record]:
    """A realistic mix: per fill an execution report, a trade and an order update (3 records),
    with a random-walk price and varied quantities; plus a risk decision every 20 fills."""
    rng = random.Random(seed)
    price = Decimal("45000.00")
    out: list[r.Record] = []
    fill = 0
    while len(out) < n_events:
        fill += 1
        price += Decimal(rng.randint(-50, 50)) / 100
        qty = Decimal(rng.randint(1, 5000)) / 100000
        coid = f"bench-{fill // 3}"
        now = T0 + fill
        out.append(r.ExecutionRecord(
            execution_id=str(fill), client_order_id=coid, venue_order_id=fill // 3,
            symbol="BTCUSDT", side="BUY", execution_type="TRADE", order_status="FILLED",
            last_qty=qty, last_price=price, cumulative_qty=qty, commission=qty / 1000,
            commission_asset="BTC", trade_id=fill, event_ms=now, transaction_ms=now, ingress=0.0,
        ))
        out.append(r.TradeRecord(
            symbol="BTCUSDT", trade_id=fill, venue_order_id=fill // 3, client_order_id=coid,
            execution_id=str(fill), side="BUY", price=price, qty=qty, quote_qty=price * qty,
            commission=qty / 1000, commission_asset="BTC", is_maker=fill % 2 == 0,
            order_status="FILLED", trade_ms=now, ingress=0.0,
        ))
        out.append(r.OrderUpdate(
            client_order_id=coid, symbol="BTCUSDT", side="BUY", type="LIMIT",
            time_in_force="GTC", quantity=qty * 3, price=price, status="PARTIALLY_FILLED",
            venue_order_id=fill // 3, executed_qty=qty, cumulative_quote_qty=price * qty,
            version=fill, created_ms=now, updated_ms=now, ingress=0.0,
        ))
        if fill % 20 == 0:
            out.append(r.RiskDecision(client_order_id=coid, symbol="BTCUSDT", approved=True,
                                      reason="ok", decided_ms=now, ingress=0.0))
    return out[:n_events]


class Recorder:
    """Stands in for the histogram to keep every event->DB sample (for exact percentiles)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def observe(self, value: float) -> None:
        self.samples.append(value)


def writer_settings(spool: Path) -> WriterSettings:
    return WriterSettings(spool_dir=spool)  # the shipped defaults: 8192 / 512 / 5 ms


# --- databases ----------------------------------------------------------------------------------


@contextmanager
def database(kind: str, pg_url: str | None, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    assert pg_url
    base = sa.engine.make_url(pg_url)
    name = f"spark_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fresh_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(schema.metadata.sorted_tables):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
    upgrade(url)


# --- measurements -------------------------------------------------------------------------------


def run_writer(url: str, events: list[r.Record], workdir: Path) -> float:
    """Events/s through the writer actor, first send to last commit."""
    cfg = writer_settings(workdir / f"spool-{uuid.uuid4().hex[:6]}")

    async def main() -> float:
        send, receive = open_inbox(cfg)
        writer = Writer(cfg, url, receive, Metrics(process=False))

        class Ctx:
            stop_requested = trio.Event()

            def progress(self) -> None:
                pass

        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, Ctx())
            started = time.perf_counter()
            async with send:
                for event in events:
                    await send.send(event)
        elapsed = time.perf_counter() - started
        assert writer.health().database_ok and writer.health().spooled_events == 0
        return len(events) / elapsed

    return trio.run(main)


def run_executemany_floor(url: str, events: list[r.Record]) -> float:
    """Bare SQLAlchemy executemany of the same rows (plain INSERT), 512 per transaction."""
    tables = {r.ExecutionRecord: schema.executions, r.TradeRecord: schema.trades,
              r.OrderUpdate: schema.orders, r.RiskDecision: schema.risk_decisions}
    engine = make_engine(url)
    # Orders: one row per order id, so a plain INSERT does not collide.
    seen: set[str] = set()
    unique: list[r.Record] = []
    for event in events:
        if isinstance(event, r.OrderUpdate):
            if event.client_order_id in seen:
                continue
            seen.add(event.client_order_id)
        unique.append(event)
    try:
        started = time.perf_counter()
        for i in range(0, len(unique), 512):
            chunk = unique[i : i + 512]
            with engine.begin() as conn:
                for cls, table in tables.items():
                    rows = [to_row(e) for e in chunk if type(e) is cls]
                    if rows:
                        conn.execute(table.insert(), rows)
        return len(unique) / (time.perf_counter() - started)
    finally:
        engine.dispose()


def run_copy_floor(url: str, events: list[r.Record]) -> float:
    """PostgreSQL COPY of the trades and executions (no conflict handling), 512 per commit."""
    import psycopg

    parsed = sa.engine.make_url(url)
    conninfo = psycopg.conninfo.make_conninfo(
        host=parsed.host or "", port=str(parsed.port or 5432), user=parsed.username or "",
        dbname=parsed.database or "", **({"password": parsed.password} if parsed.password else {}),
    )
    subset = [e for e in events if isinstance(e, r.TradeRecord | r.ExecutionRecord)]
    with psycopg.connect(conninfo) as conn:
        started = time.perf_counter()
        for i in range(0, len(subset), 512):
            chunk = subset[i : i + 512]
            with conn.cursor() as cur:
                for cls, table in ((r.TradeRecord, schema.trades),
                                   (r.ExecutionRecord, schema.executions)):
                    rows = [to_row(e) for e in chunk if type(e) is cls]
                    if not rows:
                        continue
                    cols = list(rows[0])
                    with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row([row[c] for c in cols])
            conn.commit()
        return len(subset) / (time.perf_counter() - started)


def run_paced(url: str, rate: float, seconds: float, workdir: Path) -> list[float]:
    """Event->DB latencies (seconds) with events sent at a steady ``rate`` per second."""
    cfg = writer_settings(workdir / f"spool-{uuid.uuid4().hex[:6]}")
    events = fill_events(int(rate * seconds), seed=11)

    async def main() -> list[float]:
        send, receive = open_inbox(cfg)
        metrics = Metrics(process=False)
        recorder = Recorder()
        metrics.event_to_db_seconds = recorder  # type: ignore[assignment]
        writer = Writer(cfg, url, receive, metrics)

        class Ctx:
            stop_requested = trio.Event()

            def progress(self) -> None:
                pass

        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, Ctx())
            start = trio.current_time() + 0.05
            async with send:
                for i, event in enumerate(events):
                    await trio.sleep_until(start + i / rate)
                    await send.send(_stamp(event, trio.current_time()))
        return recorder.samples

    return trio.run(main)


def _stamp(event: r.Record, ingress: float) -> r.Record:
    import attrs

    return attrs.evolve(event, ingress=ingress)


def insert_trades(url: str, n: int) -> None:
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    series = (f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) "
              if sqlite else "")
    source = "s" if sqlite else f"generate_series(0, {n - 1}) AS s(i)"
    price = "'45000.12'" if sqlite else "45000.12"
    sql = (
        f"{series}INSERT INTO trades (symbol, trade_id, venue_order_id, client_order_id, "
        "execution_id, side, price, qty, quote_qty, commission, commission_asset, is_maker, "
        "order_status, trade_ms) "
        f"SELECT 'BTCUSDT', i, i / 3, 'bench-' || (i / 3), NULL, 'BUY', {price}, {price}, "
        f"{price}, {price}, 'BNB', false, 'FILLED', {T0} + i FROM {source}"
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@contextmanager
def rss_sampler() -> Iterator[dict[str, int]]:
    """Samples VmRSS every 10 ms while the block runs: {"before", "peak", "after"} in bytes."""
    result = {"before": _rss(), "peak": 0, "after": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], _rss())
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["after"] = _rss()
        result["peak"] = max(result["peak"], result["after"])


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_export(url: str, rows: int) -> tuple[float, dict[str, int]]:
    engine = make_engine(url)
    try:
        with rss_sampler() as rss:
            started = time.perf_counter()
            size = 0
            for chunk in iter_trades_csv(engine):
                size += len(chunk)
            elapsed = time.perf_counter() - started
        assert size > rows * 50
        return rows / elapsed, rss
    finally:
        engine.dispose()


def run_bare_export(url: str, rows: int) -> float:
    """The floor: a plain (server-side) cursor, raw columns, csv.writer, 64 KiB chunks."""
    engine = make_engine(url)
    sql = ("SELECT execution_id, client_order_id, client_order_id, symbol, side, qty, price, "
           "order_status, trade_ms, venue_order_id, commission, commission_asset FROM trades "
           "ORDER BY trade_ms, symbol, trade_id")
    try:
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            cursor = (driver.cursor(name="bare_export") if engine.dialect.name == "postgresql"
                      else driver.cursor())
            started = time.perf_counter()
            cursor.execute(sql)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            n = 0
            while True:
                batch = cursor.fetchmany(2000)
                if not batch:
                    break
                writer.writerows(batch)
                n += len(batch)
                if buffer.tell() >= 65536:
                    buffer.getvalue().encode()
                    buffer.seek(0)
                    buffer.truncate()
            elapsed = time.perf_counter() - started
            cursor.close()
            assert n == rows
            return rows / elapsed
        finally:
            raw.close()
    finally:
        engine.dispose()


# --- report -------------------------------------------------------------------------------------


def timed(label: str, fn: Callable[[], Any]) -> Any:
    print(f"  … {label}", file=sys.stderr, flush=True)
    return fn()


def bench(kind: str, url: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    events = fill_events(args.events)

    fresh_schema(url)
    writer_rate = timed("writer sustained", lambda: run_writer(url, events, workdir))
    fresh_schema(url)
    floor_rate = timed("executemany floor", lambda: run_executemany_floor(url, events))
    rows.append((kind, "writer sustained events/s", f"{writer_rate:,.0f}", ">= 20,000",
                 f"{writer_rate / floor_rate:.2f}x executemany ({floor_rate:,.0f}/s)"))
    if kind == "postgresql":
        fresh_schema(url)
        copy_rate = timed("COPY floor", lambda: run_copy_floor(url, events))
        rows.append((kind, "COPY floor rows/s", f"{copy_rate:,.0f}", "",
                     f"writer = {writer_rate / copy_rate:.2f}x COPY"))

    fresh_schema(url)
    samples = timed(f"paced {args.rate:.0f}/s for {args.paced_seconds}s",
                    lambda: run_paced(url, args.rate, args.paced_seconds, workdir))
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    rows.append((kind, f"event->DB p50 / p99 / max at {args.rate:,.0f}/s",
                 f"{p50:.2f} / {p99:.2f} / {samples[-1] * 1000:.2f} ms", "p99 <= 10 ms",
                 f"{len(samples):,} events"))

    fresh_schema(url)
    timed(f"insert {args.export_rows:,} trades", lambda: insert_trades(url, args.export_rows))
    bare = timed("bare cursor->CSV", lambda: run_bare_export(url, args.export_rows))
    export_rate, rss = timed("export", lambda: run_export(url, args.export_rows))
    rows.append((kind, f"export rows/s ({args.export_rows:,} trades)", f"{export_rate:,.0f}",
                 ">= 250,000", f"{export_rate / bare:.2f}x bare cursor->CSV ({bare:,.0f}/s)"))
    mib = 1024 * 1024
    rows.append((kind, "RSS during export (before / peak)",
                 f"{rss['before'] / mib:.0f} / {rss['peak'] / mib:.0f} MiB", "flat",
                 f"+{(rss['peak'] - rss['before']) / mib:.1f} MiB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default=os.environ.get("SPARK_TEST_DATABASE_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    kinds = ([] if args.skip_sqlite else ["sqlite"]) + (["postgresql"] if args.pg else [])
    table: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            with database(kind, args.pg, workdir) as url:
                print(f"{kind}: {mask_url(url)}", file=sys.stderr)
                table.extend(bench(kind, url, args, workdir))

    load = os.getloadavg()
    print(f"\nhost: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    header = ("db", "measure", "result", "target", "ratio / note")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
