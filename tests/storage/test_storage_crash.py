"""SIGKILL between spool append and commit (and between commit and delete): no loss, no dups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from storage_helpers import dump, one_of_each, row_count

from spark.actors.writer import Writer, open_inbox
from spark.runtime.metrics import Metrics
from spark.storage import schema
from spark.storage.engine import make_engine
from spark.storage.settings import WriterSettings
from spark.storage.sink import Sink
from spark.supervision import ChildContext

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"


def start_child(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )


def kill_after(child: subprocess.Popen[str], line_prefix: str, count: int = 1) -> list[str]:
    """Read stdout until ``count`` lines start with the prefix, then SIGKILL the child."""
    seen: list[str] = []
    assert child.stdout is not None
    try:
        while len([s for s in seen if s.startswith(line_prefix)]) < count:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=10)
                pytest.fail(f"child exited early ({child.returncode}): {err[-2000:]}")
            seen.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return seen


def writer_settings(spool_dir: Path) -> WriterSettings:
    return WriterSettings(inbox_size=64, batch_max=64, batch_max_delay_ms=1,
                          spool_dir=spool_dir, spool_segment_max_events=25,
                          retry_initial_s=0.05, retry_max_s=0.2)


async def fresh_writer_run(url: str, spool_dir: Path) -> Writer:
    """A new writer process-equivalent: starts (replaying the spool), then stops."""
    cfg = writer_settings(spool_dir)
    send, receive = open_inbox(cfg)
    writer = Writer(cfg, url, receive, Metrics(process=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        await send.aclose()
    return writer


async def test_sigkill_with_spooled_and_committed_not_deleted_segments(
    migrated_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    child = start_child("degraded", migrated_url, str(spool_dir))
    await trio.to_thread.run_sync(kill_after, child, "READY")
    assert list(spool_dir.glob("segment-*.jsonl"))

    writer = await fresh_writer_run(migrated_url, spool_dir)
    assert writer.health().spooled_events == 0 and writer.health().database_ok
    assert not list(spool_dir.glob("segment-*"))

    # Exactly the child's records, each once: compare with writing them straight.
    everything = [rec for n in range(1, 31) for rec in one_of_each(n)]
    engine = make_engine(migrated_url)
    try:
        assert row_count(engine) == len(everything)
        got = dump(engine)
        expected_engine = make_engine(f"sqlite:///{tmp_path / 'expected.db'}")
        from spark.storage.migrate import upgrade

        upgrade(expected_engine)
        Sink(expected_engine).write(everything)
        want = dump(expected_engine)
        expected_engine.dispose()
        # record_ids differ between processes only for kinds without natural keys
        for table in ("orders", "executions", "trades"):
            assert [tuple(map(str, row)) for row in got[table]] == [
                tuple(map(str, row)) for row in want[table]
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize("acks", [3, 11])
async def test_sigkill_mid_append_loses_nothing_acknowledged(
    tmp_path: Path, acks: int
) -> None:
    spool_dir = tmp_path / "spool"
    child = start_child("appending", str(spool_dir))
    lines = await trio.to_thread.run_sync(kill_after, child, "ACK", acks)
    acknowledged = max(int(line.split()[1]) for line in lines if line.startswith("ACK"))

    url = f"sqlite:///{tmp_path / 'spark.db'}"
    from spark.storage.migrate import upgrade

    upgrade(url)
    await fresh_writer_run(url, spool_dir)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ids = sorted(conn.execute(sa.select(schema.trades.c.trade_id)).scalars())
    finally:
        engine.dispose()
    # Every acknowledged trade is there; anything after it is a contiguous, unduplicated run.
    assert ids[:acknowledged] == list(range(1, acknowledged + 1))
    assert ids == list(range(1, len(ids) + 1))
