"""The writer actor against a real database: normal flow, outages, schema, restarts, stops.

Real clock with short bounds (the actor waits on worker threads, which MockClock's autojump
would skip over); every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Engine, make_url
from storage_helpers import dump, fresh_database, one_of_each, pg_base_url, row_count, trade

from spark.actors.writer import Writer, WriterHealth, open_inbox
from spark.runtime.metrics import Metrics
from spark.storage import records as r
from spark.storage.engine import make_engine
from spark.storage.migrate import upgrade
from spark.storage.settings import DatabaseSettings, WriterSettings
from spark.storage.sink import Sink
from spark.storage.spool import REJECTED_NAME, Spool
from spark.supervision import ChildContext


def settings(tmp_path: Path, **kw: Any) -> WriterSettings:
    fields: dict[str, Any] = dict(
        inbox_size=64, batch_max=50, batch_max_delay_ms=2, spool_dir=tmp_path / "spool",
        spool_segment_max_events=40, retry_initial_s=0.05, retry_max_s=0.2,
    )
    fields.update(kw)
    return WriterSettings(**fields)


def database(url: str) -> DatabaseSettings:
    return DatabaseSettings(url=url, connect_timeout_s=0.2)


def stamped(records: list[r.Record]) -> list[r.Record]:
    """The records as if they had just entered the process."""
    now = trio.current_time()
    return [attrs.evolve(rec, ingress=now) for rec in records]


def histogram_count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("spark_event_to_db_seconds_count")
    return value or 0.0


def spooled_gauge(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("spark_writer_spooled_events")
    return value or 0.0


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def expected_dump(records: list[r.Record], tmp_path: Path) -> Any:
    """What a database holds after these records, computed by writing them directly."""
    from spark.storage.sink import Sink

    url = f"sqlite:///{tmp_path / 'expected.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        Sink(engine).write(records)
        return dump(engine)
    finally:
        engine.dispose()


def normalised(d: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Dumps from SQLite and PostgreSQL compare equal once JSON/bool types are aligned."""
    return {k: sorted(tuple(str(x) for x in row) for row in v) for k, v in d.items()}


# --- outages ----------------------------------------------------------------------------------


class Outage:
    """Makes the database unavailable to the writer, then available again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._admin: Engine | None = None

    def begin(self) -> None:
        parsed = make_url(self.url)
        if parsed.get_backend_name() == "sqlite":
            # Another process-like connection holds the write lock: writes get "locked".
            assert parsed.database
            self._sqlite = sqlite3.connect(parsed.database, isolation_level=None,
                                           check_same_thread=False, timeout=5)
            self._sqlite.execute("BEGIN EXCLUSIVE")
            return
        base = make_url(pg_base_url())
        self._admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": parsed.database},
            )

    def end(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._admin is not None:
            with self._admin.connect() as conn:
                db = make_url(self.url).database
                conn.execute(sa.text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))
            self._admin.dispose()
            self._admin = None


@pytest.fixture
def outage(migrated_url: str) -> Iterator[Outage]:
    o = Outage(migrated_url)
    yield o
    o.end()


# --- tests ------------------------------------------------------------------------------------


async def test_normal_flow_every_record_once_and_latency_observed(
    migrated_url: str, tmp_path: Path
) -> None:
    metrics = Metrics(process=False)
    send, receive = open_inbox(settings(tmp_path))
    writer = Writer(settings(tmp_path), database(migrated_url), receive, metrics)
    ctx = ChildContext("writer")
    records = [rec for n in range(1, 41) for rec in one_of_each(n)]  # 320 records, 8 kinds
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ctx)
        assert ctx.mailbox_stats()[0].capacity == 64
        async with send:
            for rec in stamped(records):
                await send.send(rec)
                await send.send(rec)  # a duplicate from the venue changes nothing
        # Closing the inbox ends the writer after it has drained and flushed.
    assert writer.health() == WriterHealth(database_ok=True, spooled_events=0, last_error=None)
    engine = make_engine(migrated_url)
    try:
        assert normalised(dump(engine)) == normalised(expected_dump(records, tmp_path))
    finally:
        engine.dispose()
    assert histogram_count(metrics) == 2 * len(records)
    assert spooled_gauge(metrics) == 0
    assert not list((tmp_path / "spool").glob("segment-*"))


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux only")
async def test_database_work_runs_in_one_thread_below_the_loop_and_ends_with_the_run(
    migrated_url: str, tmp_path: Path
) -> None:
    """``[writer] thread_nice``: every database call runs in the writer's own thread at that
    many nice steps below the loop, and each run (a restart makes a new one) leaves no thread
    behind."""
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[tuple[str, int]] = []
    sink_write = Sink.write_isolating

    def spy(self: Sink, records: list[r.Record]) -> Any:
        me = threading.current_thread()
        seen.append((me.name, os.getpriority(os.PRIO_PROCESS, me.native_id or 0)))
        return sink_write(self, records)

    def writer_threads() -> int:
        return sum(t.name == "spark-writer" and t.is_alive() for t in threading.enumerate())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sink, "write_isolating", spy)
        before = writer_threads()
        for run in range(2):
            cfg = settings(tmp_path, thread_nice=5)
            send, receive = open_inbox(cfg)
            writer = Writer(cfg, database(migrated_url), receive, Metrics(process=False))
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run, ChildContext("writer"))
                async with send:
                    await send.send(stamped([trade(100 + run)])[0])
            await wait_for(lambda: writer_threads() == before)
    assert seen and all(name == "spark-writer" for name, _ in seen)
    assert {nice for _, nice in seen} == {min(19, loop_nice + 5)}


async def test_polite_stop_drains_the_inbox(migrated_url: str, tmp_path: Path) -> None:
    metrics = Metrics(process=False)
    # A long time bound: only the stop can make this batch go out.
    cfg = settings(tmp_path, batch_max=10_000, batch_max_delay_ms=60_000)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, metrics)
    ctx = ChildContext("writer")
    records = [trade(n) for n in range(1, 31)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ctx)
        for rec in stamped(records):
            send.send_nowait(rec)
        ctx.request_stop()
    engine = make_engine(migrated_url)
    try:
        assert row_count(engine) == 30
    finally:
        engine.dispose()


async def test_database_outage_spools_then_replays_exactly_once(
    migrated_url: str, tmp_path: Path, outage: Outage
) -> None:
    metrics = Metrics(process=False)
    cfg = settings(tmp_path)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, metrics)
    before = [rec for n in range(1, 11) for rec in one_of_each(n)]
    during = [rec for n in range(11, 31) for rec in one_of_each(n)]
    after = [rec for n in range(31, 41) for rec in one_of_each(n)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        async with send:
            for rec in stamped(before):
                await send.send(rec)
            await wait_for(lambda: histogram_count(metrics) == len(before))

            await trio.to_thread.run_sync(outage.begin)
            for rec in stamped(during):
                await send.send(rec)
                await send.send(rec)
            # Degraded: every record of the outage is on disk, health says so.
            await wait_for(lambda: writer.health().spooled_events == 2 * len(during))
            health = writer.health()
            assert not health.database_ok
            assert health.last_error and "OperationalError" in health.last_error
            assert spooled_gauge(metrics) == 2 * len(during)
            assert len(list((tmp_path / "spool").glob("segment-*.jsonl"))) >= 2

            await trio.to_thread.run_sync(outage.end)
            await wait_for(lambda: writer.health().spooled_events == 0)
            assert writer.health().database_ok and writer.health().last_error is None
            for rec in stamped(after):
                await send.send(rec)
    engine = make_engine(migrated_url)
    try:
        everything = before + during + after
        assert normalised(dump(engine)) == normalised(expected_dump(everything, tmp_path))
    finally:
        engine.dispose()
    assert spooled_gauge(metrics) == 0
    assert histogram_count(metrics) == len(before) + 2 * len(during) + len(after)
    assert not list((tmp_path / "spool").glob("segment-*"))


@pytest.fixture
def pg_migrated_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        upgrade(url)
        yield url


@pytest.mark.postgres
async def test_postgres_connections_killed_mid_run_are_replaced(
    pg_migrated_url: str, tmp_path: Path
) -> None:
    migrated_url = pg_migrated_url
    metrics = Metrics(process=False)
    cfg = settings(tmp_path)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, metrics)
    admin = sa.create_engine(make_url(pg_base_url()), isolation_level="AUTOCOMMIT")
    db = make_url(migrated_url).database
    records = [rec for n in range(1, 21) for rec in one_of_each(n)]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, ChildContext("writer"))
            async with send:
                for i, rec in enumerate(stamped(records)):
                    await send.send(rec)
                    if i % 40 == 20:
                        await wait_for(lambda i=i: histogram_count(metrics) > i)  # type: ignore[misc]
                        with admin.connect() as conn:
                            killed = conn.execute(
                                sa.text("SELECT count(pg_terminate_backend(pid)) "
                                        "FROM pg_stat_activity WHERE datname = :db"),
                                {"db": db},
                            ).scalar()
                        assert killed and killed >= 1
    finally:
        admin.dispose()
    # Every kill was absorbed by the one immediate retry: never degraded, nothing lost.
    assert writer.health() == WriterHealth(True, 0, None)
    engine = make_engine(migrated_url)
    try:
        assert normalised(dump(engine)) == normalised(expected_dump(records, tmp_path))
    finally:
        engine.dispose()


async def test_schema_behind_waits_in_the_spool_until_upgrade(
    db_url: str, tmp_path: Path
) -> None:
    cfg = settings(tmp_path)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(db_url), receive, Metrics(process=False))
    records = [trade(n) for n in range(1, 21)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        async with send:
            for rec in stamped(records):
                await send.send(rec)
            await wait_for(lambda: writer.health().spooled_events == 20)
            error = writer.health().last_error
            assert error and "spark-runtime db upgrade" in error
            await trio.to_thread.run_sync(upgrade, db_url)
            await wait_for(lambda: writer.health().spooled_events == 0)
    engine = make_engine(db_url)
    try:
        assert row_count(engine) == 20
    finally:
        engine.dispose()


async def test_spool_left_by_a_previous_run_is_replayed_before_anything_else(
    migrated_url: str, tmp_path: Path
) -> None:
    cfg = settings(tmp_path)
    leftover = Spool(cfg.spool_dir, cfg.spool_segment_max_events)
    leftover.open()
    old = [rec for n in range(1, 11) for rec in one_of_each(n)]
    leftover.append(old)  # and the previous process died: no close, no delete
    engine = make_engine(migrated_url)
    try:
        send, receive = open_inbox(cfg)
        metrics = Metrics(process=False)
        writer = Writer(cfg, engine, receive, metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, ChildContext("writer"))
            # Replayed before started() returned, before any new record.
            assert row_count(engine) == len(old)
            assert writer.health().spooled_events == 0
            async with send:
                await send.send(trade(999, ingress=trio.current_time()))
        assert row_count(engine) == len(old) + 1
        # Old ingress times belong to a dead process: not observed as latency.
        assert histogram_count(metrics) == 1
    finally:
        engine.dispose()


async def test_stop_while_database_down_flushes_to_spool_for_the_next_run(
    migrated_url: str, tmp_path: Path, outage: Outage
) -> None:
    cfg = settings(tmp_path, batch_max_delay_ms=60_000, batch_max=10_000)
    records = [rec for n in range(1, 6) for rec in one_of_each(n)]
    await trio.to_thread.run_sync(outage.begin)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, Metrics(process=False))
    ctx = ChildContext("writer")
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ctx)
        for rec in stamped(records):
            send.send_nowait(rec)
        ctx.request_stop()
    assert writer.health().spooled_events == len(records)
    await trio.to_thread.run_sync(outage.end)

    # Next run (a restart of the same actor object) replays at start.
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        assert writer.health() == WriterHealth(True, 0, None)
        await send.aclose()
    engine = make_engine(migrated_url)
    try:
        assert row_count(engine) == len(records)
    finally:
        engine.dispose()


async def test_cancelled_writer_spools_what_it_holds(migrated_url: str, tmp_path: Path,
                                                     outage: Outage) -> None:
    cfg = settings(tmp_path, batch_max_delay_ms=60_000, batch_max=10_000)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, Metrics(process=False))
    records = [trade(n) for n in range(1, 11)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        for rec in stamped(records):
            send.send_nowait(rec)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()  # a supervisor's hard kill, no polite stop
    spool = Spool(cfg.spool_dir, cfg.spool_segment_max_events)
    spool.open()
    assert spool.pending_events == 10


async def test_a_record_the_database_refuses_is_kept_aside_not_retried_forever(
    migrated_url: str, tmp_path: Path
) -> None:
    cfg = settings(tmp_path)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, Metrics(process=False))
    bad = trade(500, client_order_id=None)  # NOT NULL violation
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        async with send:
            for rec in stamped([trade(1), bad, trade(2)]):
                await send.send(rec)
    assert writer.health().rejected_events == 1 and writer.health().database_ok
    assert (tmp_path / "spool" / REJECTED_NAME).read_bytes().count(b"\n") == 1
    engine = make_engine(migrated_url)
    try:
        assert row_count(engine) == 2
    finally:
        engine.dispose()


async def test_unreachable_database_at_start_degrades_instead_of_failing(tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    send, receive = open_inbox(cfg)
    # A closed port: nothing listens on port 1.
    url = "postgresql+psycopg://spark:hunter2@127.0.0.1:1/spark"
    writer = Writer(cfg, DatabaseSettings(url=url, connect_timeout_s=0.2), receive,
                    Metrics(process=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        async with send:
            await send.send(trade(1, ingress=trio.current_time()))
            await wait_for(lambda: writer.health().spooled_events == 1)
    health = writer.health()
    assert not health.database_ok and health.last_error
    assert "hunter2" not in health.last_error
    assert health.spooled_events == 1


# --- latency bookkeeping and gathering ----------------------------------------------------------


@pytest.mark.parametrize("values", [[], [0.0], [0.0004, 0.001, 0.02, 7.5, 1e9, 0.0025] * 50])
def test_observe_many_counts_exactly_like_observe(values: list[float]) -> None:
    from spark.actors.writer import observe_many

    one, many = Metrics(process=False), Metrics(process=False)
    for value in values:
        one.event_to_db_seconds.observe(value)
    observe_many(many.event_to_db_seconds, values)

    def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in metrics.registry.collect()
            if family.name == "spark_event_to_db_seconds"
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(many) == pytest.approx(samples(one))


def test_observe_many_falls_back_to_observe_for_anything_else() -> None:
    from spark.actors.writer import observe_many

    seen: list[float] = []

    class StandIn:
        def observe(self, value: float) -> None:
            seen.append(value)

    observe_many(StandIn(), [0.1, 0.2])
    assert seen == [0.1, 0.2]


async def test_a_full_batch_goes_out_without_waiting_for_the_time_bound(
    migrated_url: str, tmp_path: Path
) -> None:
    """While a batch waits for its (long) time bound, the writer still notices it is full."""
    cfg = settings(tmp_path, batch_max=20, batch_max_delay_ms=30_000)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, Metrics(process=False))
    engine = make_engine(migrated_url)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, ChildContext("writer"))
            await send.send(stamped([trade(1)])[0])
            await trio.sleep(0.05)  # the writer now holds one record and waits for company
            for rec in stamped([trade(n) for n in range(2, 21)]):
                await send.send(rec)
            await wait_for(lambda: row_count(engine) == 20, timeout=10)
            await send.send(stamped([trade(21)])[0])  # the next one waits for its bound
            await trio.sleep(0.2)
            assert row_count(engine) == 20
            nursery.cancel_scope.cancel()
    finally:
        engine.dispose()


async def test_by_default_a_lone_record_is_written_at_once(
    migrated_url: str, tmp_path: Path
) -> None:
    cfg = attrs.evolve(WriterSettings(), spool_dir=tmp_path / "spool")
    assert cfg.batch_max_delay_ms == 0
    metrics = Metrics(process=False)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, database(migrated_url), receive, metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        await send.send(stamped([trade(1)])[0])
        await wait_for(lambda: histogram_count(metrics) == 1, timeout=10)
        nursery.cancel_scope.cancel()
