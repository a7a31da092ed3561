"""The writer actor: every record other actors want persisted goes through here.

Records arrive on a bounded trio memory channel (:func:`open_inbox`, sized by
``[writer] inbox_size``; a full inbox blocks the senders — back-pressure, never a drop).  The
actor batches them (:class:`~spark.storage.batching.Batcher`: ``batch_max`` records or
``batch_max_delay_ms``), writes each batch in one transaction in its own thread (a
:class:`~spark.supervision.threads.BackgroundThread` below the event loop's priority, ``[writer]
thread_nice``: one database operation at a time, in order), and observes
``spark_event_to_db_seconds`` per record at commit (``trio.current_time()`` minus the record's
``ingress``; one histogram update per batch, :func:`observe_many`).

Batching is natural: whatever arrived while a batch was being written is the next batch (up to
``batch_max``, default 2048: a transaction's fixed costs — commit, round trip — shrink per
record as a backlog grows, which is how the writer catches up), so under load transactions
grow by themselves and an idle writer writes a lone record at once.  ``batch_max_delay_ms``
(default 0) makes a record that finds the writer idle wait that long for company — fewer
transactions at low rates, for that much latency.  While a batch waits, the actor sleeps until
it is due instead of waking for every record (checking every millisecond whether it is full).

When the database is down or erroring (:class:`~spark.storage.batching.WriterCore`):

* the failed batch and every later one go to the on-disk spool (:mod:`spark.storage.spool`),
  fsync'd before the actor takes the next record — a record is "taken care of" once it is
  committed or fsync'd;
* the database is retried with exponential backoff (``retry_initial_s`` … ``retry_max_s``);
* once it answers, the spool is replayed in order, one segment per transaction, each segment
  deleted only after its commit; new records keep going to the spool until it is empty, so the
  database sees everything in arrival order;
* ``spark_writer_spooled_events`` and :meth:`Writer.health` show the backlog.

A database that is reachable but at an older schema counts as down (``last_error`` says to run
``spark-runtime db upgrade``): records wait in the spool instead of being lost or written into
the wrong shape.  Records the database refuses for good (constraint/data errors) are isolated
and kept in ``<spool_dir>/rejected.jsonl``; the rest of their batch is written.

On startup, a spool left by a previous run (crash, or shutdown while the database was down) is
replayed before ``task_status.started()``.  On a polite stop (``ctx.stop_requested``) or when
the inbox closes, the actor drains the inbox and flushes (to the spool if the database is down)
before returning.  If it is cancelled instead, it still tries — shielded, for at most
``cancel_grace_s`` — to put what it holds into the spool.

Supervision notes: the loop calls ``ctx.progress()`` at least every ``idle_progress_s``; a single
database call can take up to ``connect_timeout_s`` (or the time to write one spool segment)
without progress, so the writer's stall deadline must be longer than that.  Timing tests use the
real clock: under ``MockClock(autojump_threshold=0)`` the clock jumps while the actor waits on
its worker thread.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Engine

from spark.runtime.metrics import Metrics, histogram_parts
from spark.storage.batching import Batcher, Destination, WriterCore
from spark.storage.engine import make_engine
from spark.storage.errors import SpoolError
from spark.storage.migrate import check_schema_current
from spark.storage.records import Record
from spark.storage.settings import DatabaseSettings, WriterSettings
from spark.storage.sink import Sink, describe_error, is_transient
from spark.storage.spool import Spool
from spark.supervision.threads import BackgroundThread

log = logging.getLogger(__name__)

T = TypeVar("T")

_INGRESS = operator.attrgetter("ingress")

# While a batch waits for its time bound, how often the inbox is looked at for a full batch.
_GATHER_CHECK_S = 0.001


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, in one step for a plain prometheus histogram.

    Thousands of records per second each taking a lock per bucket counter is measurable on the
    event loop; this counts per bucket (``bisect`` in C) and adds once per bucket and once to
    the sum (:func:`~spark.runtime.metrics.histogram_parts`).  Anything else (a labelled
    parent, a stand-in with only ``observe``) is observed value by value.
    """
    parts = histogram_parts(histogram)
    if parts is None:
        for value in values:
            histogram.observe(value)
        return
    if not values:
        return
    # observe() counts a value in the first bucket whose upper bound is >= it (the last bound
    # is +Inf): bisect_left finds exactly that index.
    for index, count in collections.Counter(map(bisect.bisect_left,
                                                itertools.repeat(parts.bounds),
                                                values)).items():
        parts.buckets[index].inc(count)
    parts.total.inc(math.fsum(values))


class WriterContext(Protocol):
    """What the writer needs from its supervisor (structurally; no import of its code)."""

    @property
    def stop_requested(self) -> trio.Event: ...

    def progress(self) -> None: ...


@attrs.frozen
class WriterHealth:
    """A snapshot for ``/api/public/health`` (``database``) and the ``ctl status`` command."""

    database_ok: bool
    spooled_events: int
    last_error: str | None
    rejected_events: int = 0


def open_inbox(
    size: WriterSettings | int,
) -> tuple[trio.MemorySendChannel[Record], trio.MemoryReceiveChannel[Record]]:
    """The writer's bounded inbox (``[writer] inbox_size``).

    The runtime creates it once, hands clones of the send side to producers and the receive
    side to :class:`Writer`; it outlives writer restarts (the writer never closes it).
    """
    capacity = size.inbox_size if isinstance(size, WriterSettings) else int(size)
    return trio.open_memory_channel[Record](capacity)


class Writer:
    """The writer actor; ``run`` is its supervised entry point (see the module docstring)."""

    def __init__(
        self,
        settings: WriterSettings,
        database: DatabaseSettings | Engine | str,
        inbox: trio.MemoryReceiveChannel[Record],
        metrics: Metrics,
        *,
        idle_progress_s: float = 1.0,
        cancel_grace_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self._database = database
        self._inbox = inbox
        self._metrics = metrics
        self._idle_progress_s = idle_progress_s
        self._cancel_grace_s = cancel_grace_s
        self._core = WriterCore(settings.retry_initial_s, settings.retry_max_s)
        self._spooled = 0
        self._rejected = 0
        # Per-run state, set up by run().
        self._engine: Engine | None = None
        self._sink: Sink | None = None
        self._spool: Spool | None = None
        self._worker: BackgroundThread | None = None
        self._schema_checked = False
        self._stopping = False
        self._receive_scope: trio.CancelScope | None = None
        self._held: list[Record] = []  # taken from the inbox, neither committed nor spooled

    # -- public ------------------------------------------------------------------------------

    def health(self) -> WriterHealth:
        """Current health; cheap, safe to call from any task."""
        return WriterHealth(
            database_ok=self._core.database_ok,
            spooled_events=self._spooled,
            last_error=self._core.last_error,
            rejected_events=self._rejected,
        )

    async def run(
        self,
        ctx: WriterContext,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped or the inbox closes; restartable (state is rebuilt per run)."""
        self._stopping = False
        self._schema_checked = False
        self._held = []
        # Database work runs below the event loop's priority: see supervision/threads.py.
        worker = self._worker = BackgroundThread("spark-writer", self.settings.thread_nice)
        self._core = WriterCore(self.settings.retry_initial_s, self.settings.retry_max_s)
        batcher: Batcher[Record] = Batcher(
            self.settings.batch_max, self.settings.batch_max_delay_ms / 1000
        )
        owns_engine = not isinstance(self._database, Engine)
        spool = Spool(self.settings.spool_dir, self.settings.spool_segment_max_events)
        self._spool = spool
        try:
            engine = await self._thread(self._open_engine)
            self._engine = engine
            self._sink = Sink(engine)
            await self._thread(spool.open)
            self._spool_changed()
            # Whatever a previous run left in the spool goes in before anything new.
            while self._core.attempt_due(trio.current_time()) and not ctx.stop_requested.is_set():
                ctx.progress()
                await self._attempt()
            register = getattr(ctx, "register_mailbox", None)
            if callable(register):  # the supervisor's context shows the inbox depth
                register("inbox", self._inbox)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, ctx.stop_requested)
                await self._loop(ctx, batcher)
                nursery.cancel_scope.cancel()
        finally:
            try:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self._cancel_grace_s):
                        await self._rescue(batcher)
                    with trio.move_on_after(self._cancel_grace_s):
                        await self._thread(spool.close)
                        if owns_engine and self._engine is not None:
                            await self._thread(self._engine.dispose)
            finally:
                self._engine = None
                worker.close()  # even if the cleanup failed: no thread left behind per run

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self, ctx: WriterContext, batcher: Batcher[Record]) -> None:
        inbox_open = True
        while True:
            ctx.progress()
            if not self._stopping and self._core.attempt_due(trio.current_time()):
                await self._attempt()
                # Keep producers moving while a backlog drains: queued records go to the
                # spool (behind the backlog) instead of waiting for the whole replay.
                inbox_open = self._take_ready(batcher) and inbox_open
                while batcher.full:
                    await self._flush(batcher.take())
                    inbox_open = self._take_ready(batcher) and inbox_open
                continue
            finishing = self._stopping or not inbox_open
            if batcher.due(trio.current_time()) or (finishing and len(batcher)):
                await self._flush(batcher.take())
                continue
            if finishing:
                if inbox_open:
                    inbox_open = self._take_ready(batcher)
                if len(batcher):
                    continue
                return
            now = trio.current_time()
            deadlines = [now + self._idle_progress_s, batcher.flush_at, self._core.wake_at()]
            deadline = min(d for d in deadlines if d is not None)
            with trio.move_on_at(deadline) as scope:
                self._receive_scope = scope
                if len(batcher):
                    # A batch is pending but not due: let records gather in the inbox until
                    # it is (looking for a full batch every _GATHER_CHECK_S) rather than
                    # waking up for each one — a wake-up per record costs more than its write.
                    await trio.sleep_until(min(deadline, now + _GATHER_CHECK_S))
                else:
                    try:
                        record = await self._inbox.receive()
                    except trio.EndOfChannel:
                        inbox_open = False
                    else:
                        batcher.add(record, min(trio.current_time(), record.ingress))
            self._receive_scope = None
            if inbox_open:
                inbox_open = self._take_ready(batcher)

    def _take_ready(self, batcher: Batcher[Record]) -> bool:
        """Move already-queued records into the batch (up to full); False if the inbox ended."""
        room = batcher.max_size - len(batcher)
        if room <= 0:
            return True
        taken: list[Record] = []
        receive = self._inbox.receive_nowait
        inbox_open = True
        try:
            while room:
                taken.append(receive())
                room -= 1
        except trio.WouldBlock:
            pass
        except (trio.EndOfChannel, trio.ClosedResourceError):
            inbox_open = False
        if taken:
            # A record waits from its ingress on, including its time queued in the inbox.
            batcher.extend(taken, min(trio.current_time(), min(map(_INGRESS, taken))))
        return inbox_open

    async def _watch_stop(self, stop_requested: trio.Event) -> None:
        await stop_requested.wait()
        self._stopping = True
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    # -- writing -----------------------------------------------------------------------------

    async def _flush(self, batch: list[Record]) -> None:
        if not batch:
            return
        self._held = batch
        if self._core.destination() is Destination.DATABASE:
            try:
                await self._thread(self._write, batch)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._database_failed(exc)
            else:
                self._committed(batch, this_process=True)
                self._held = []
                return
        await self._spool_batch(batch)
        self._held = []

    async def _spool_batch(self, batch: list[Record]) -> None:
        """Append durably; if even the spool fails, keep retrying (the inbox backs up)."""
        spool = self._require_spool()
        while True:
            try:
                await self._thread(spool.append, batch)
            except SpoolError as exc:
                log.error("writer: cannot spool %d record(s): %s", len(batch), exc)
                retry_at = self._core.write_failed(trio.current_time(), describe_error(exc))
                await trio.sleep_until(retry_at)
                # Maybe the database is back: that would do as well.
                try:
                    await self._thread(self._write, batch)
                except Exception as db_exc:
                    if not is_transient(db_exc):
                        raise
                    continue
                self._committed(batch, this_process=True)
                return
            else:
                self._spool_changed()
                return

    async def _attempt(self) -> None:
        """One database attempt while degraded or draining: replay the oldest spool segment."""
        spool = self._require_spool()
        segments = spool.sealed_segments()
        if not segments:
            await self._thread(spool.seal)
            segments = spool.sealed_segments()
        try:
            if not segments:
                await self._thread(self._probe)
                self._core.write_succeeded()
                return
            segment = segments[0]
            contents = await self._thread(spool.read, segment)
            await self._thread(self._write, contents.records)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._database_failed(exc)
            return
        await self._thread(spool.delete, segment, quarantine=contents.corrupt_lines > 0)
        self._committed(contents.records, this_process=segment.this_process)
        self._spool_changed()
        if not self._core.spool_backlog:
            log.info("writer: spool replayed, database writes are direct again")

    def _committed(self, records: Sequence[Record], *, this_process: bool) -> None:
        was_ok = self._core.database_ok
        self._core.write_succeeded()
        if not was_ok:
            log.info("writer: database is back; replaying %d spooled event(s)", self._spooled)
        if this_process:
            now = trio.current_time()
            observe_many(
                self._metrics.event_to_db_seconds,
                [max(0.0, now - ingress) for ingress in map(_INGRESS, records)],
            )

    def _database_failed(self, exc: BaseException) -> None:
        error = describe_error(exc)
        was_ok = self._core.database_ok
        retry_at = self._core.write_failed(trio.current_time(), error)
        self._schema_checked = False
        if was_ok:
            log.warning("writer: database unavailable, spooling: %s", error)
        else:
            log.info(
                "writer: database still unavailable (retry in %.1fs): %s",
                retry_at - trio.current_time(), error,
            )

    def _spool_changed(self) -> None:
        self._spooled = self._require_spool().pending_events
        self._core.spool_changed(self._spooled)
        self._metrics.writer_spooled_events.set(self._spooled)

    async def _rescue(self, batcher: Batcher[Record]) -> None:
        """Leaving (normally or not): spool whatever was taken but not yet persisted."""
        if self._spool is None:
            return
        pending = self._held + batcher.take()
        self._held = []
        while True:  # anything still queued, too: nobody else will take it
            try:
                pending.append(self._inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if not pending:
            return
        try:
            await self._thread(self._spool.append, pending)
        except SpoolError as exc:
            log.error("writer: LOST %d record(s) on exit, spool failed: %s", len(pending), exc)
        else:
            log.warning("writer: spooled %d record(s) while exiting", len(pending))
            self._spool_changed()

    # -- in the worker thread ----------------------------------------------------------------

    def _open_engine(self) -> Engine:
        if isinstance(self._database, Engine):
            return self._database
        # No pre-ping: it costs a round trip per batch; a connection the server dropped fails
        # the write, the pool discards it, and _write retries once on a fresh connection.
        return make_engine(self._database, pool_pre_ping=False)

    def _probe(self) -> None:
        engine = self._require_engine()
        check_schema_current(engine)
        self._schema_checked = True

    def _write(self, records: Sequence[Record]) -> None:
        sink = self._require_sink()
        if not self._schema_checked:
            check_schema_current(sink.engine)
            self._schema_checked = True
        try:
            refused = sink.write_isolating(records)
        except sa.exc.DBAPIError as dead:
            if not dead.connection_invalidated:
                raise
            # The pooled connection was dead (server restart, idle timeout): one immediate
            # retry on a new connection before calling the database unavailable.
            refused = sink.write_isolating(records)
        if refused:
            self._rejected += len(refused)
            for record, error in refused:
                log.error(
                    "writer: database refused a %s record for good (kept in rejected.jsonl): %s",
                    type(record).__name__, describe_error(error),
                )
            self._require_spool().reject([(r, describe_error(e)) for r, e in refused])

    # -- helpers -----------------------------------------------------------------------------

    async def _thread(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        def call() -> T:
            return fn(*args, **kwargs)

        assert self._worker is not None
        return await self._worker.run_sync(call)

    def _require_spool(self) -> Spool:
        assert self._spool is not None
        return self._spool

    def _require_sink(self) -> Sink:
        assert self._sink is not None
        return self._sink

    def _require_engine(self) -> Engine:
        assert self._engine is not None
        return self._engine


__all__ = ["Writer", "WriterContext", "WriterHealth", "observe_many", "open_inbox"]
