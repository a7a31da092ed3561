"""A process that the crash tests SIGKILL at a chosen moment (run as a script, not a test).

Modes:
* ``degraded URL SPOOL_DIR``: commits batch A directly *and* leaves it in the spool (killed
  between commit and segment deletion), then runs the real writer against an unreachable
  database and feeds it batch B; prints ``READY`` once everything is fsync'd in the spool.
* ``appending SPOOL_DIR``: appends trades to the spool forever, printing ``ACK <n>`` after each
  fsync'd append of trades 1..n; the test kills it at an arbitrary point (maybe mid-append).
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from storage_helpers import one_of_each, trade

from spark.actors.writer import Writer, open_inbox
from spark.runtime.metrics import Metrics
from spark.storage.engine import make_engine
from spark.storage.settings import DatabaseSettings, WriterSettings
from spark.storage.sink import Sink
from spark.storage.spool import Spool
from spark.supervision import ChildContext

BATCH_A = [rec for n in range(1, 6) for rec in one_of_each(n)]
BATCH_B = [rec for n in range(6, 31) for rec in one_of_each(n)]
UNREACHABLE = "postgresql+psycopg://spark@127.0.0.1:1/spark"


def settings(spool_dir: str) -> WriterSettings:
    return WriterSettings(
        inbox_size=64, batch_max=16, batch_max_delay_ms=1, spool_dir=Path(spool_dir),
        spool_segment_max_events=25, retry_initial_s=30, retry_max_s=30,
    )


async def degraded(url: str, spool_dir: str) -> None:
    cfg = settings(spool_dir)
    spool = Spool(cfg.spool_dir, cfg.spool_segment_max_events)
    spool.open()
    spool.append(BATCH_A)
    engine = make_engine(url)
    Sink(engine).write(BATCH_A)  # committed, but the segment is never deleted
    engine.dispose()

    send, receive = open_inbox(cfg)
    writer = Writer(cfg, DatabaseSettings(url=UNREACHABLE, connect_timeout_s=0.5), receive,
                    Metrics(process=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, ChildContext("writer"))
        for rec in BATCH_B:
            await send.send(rec)
        while writer.health().spooled_events < len(BATCH_A) + len(BATCH_B):
            await trio.sleep(0.01)
        print("READY", flush=True)
        await trio.sleep_forever()


def appending(spool_dir: str) -> None:
    spool = Spool(Path(spool_dir), segment_max_events=50)
    spool.open()
    n = 0
    while True:
        batch = [trade(i) for i in range(n + 1, n + 8)]
        spool.append(batch)
        n += len(batch)
        print(f"ACK {n}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "degraded":
        trio.run(degraded, sys.argv[2], sys.argv[3])
    else:
        appending(sys.argv[2])
