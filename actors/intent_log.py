"""The order router's write-ahead log of intents: durable before an order's first send.

Why a file of our own rather than waiting for the database row: the writer batches and may be
degraded (spooling), and the router must not send an order whose ``clientOrderId`` a crash could
forget.  One JSON line per intent, durable before the first send; after a SIGKILL (or a power
cut) the restarted runtime reads every id it may have sent and reconciles each with the venue.

Why the file is preallocated: an append that grows a file makes ``fdatasync`` commit the new
size through the filesystem journal (measured here: ~0.46 ms per append under load, 0.11 ms
idle), while a write into blocks that already exist and hold zeros needs only the data itself
on disk (0.08 ms idle).  So the log is extended ahead of need in :data:`EXTEND_BYTES` steps of
real zeros (not ``fallocate``: its unwritten extents would need the journal on first write,
which is the cost we avoid), fsync'd once per step, and each record is one ``pwrite`` on a
descriptor opened with ``O_DSYNC``: durable when the call returns, run in a worker thread (the
event loop never waits on the disk).

Where Linux kernel AIO works (``storage/linux_aio.py``), appends skip the worker thread: the
block(s) holding the new record are written from an aligned copy of the log's tail with
``O_DIRECT`` + ``RWF_DSYNC`` and the loop waits on an ``eventfd`` — the hand-off to and from a
thread (0.3-1 ms under load, measured) was costing more than the disk.  Same file format, same
guarantees; the thread path remains the fallback (a filesystem that refuses ``O_DIRECT`` or a
test write, other systems).  Appends and compaction are serialised by one lock, in arrival
order.  The next zero-filled step is written in the background (:meth:`IntentLog.keep_ahead`)
when half of the current one is used; its size change is metadata, so an append that lands
while it commits may wait for it (once per step: ~22,000 orders at 4 MiB).

Why the write starts at intake (:meth:`IntentLog.begin`): on the AIO path submitting the write
is a system call that returns at once, so the disk works while the risk guard and the router do
theirs, and the send worker (:meth:`IntentWrite.wait`) usually finds the record already
durable.  The price is that intents the order path then drops (a guard rejection, a duplicate
id, a parked order) are in the log too.  Each such record gets a *void* line (``{"v": offset}``,
the offset of the record it cancels; by offset, not by id, because a duplicate shares its id with
a live order), written with the next record, and :meth:`IntentLog.read` leaves voided records
out.  A void lost in a crash only costs a query at restart: the router never sends an order a
previous process logged (it asks the venue about it, and ends it as not sent if the venue does
not have it), so a stray record can never become an order.

Reading stops at the first line that is not complete: zeros (the preallocated tail) or a torn
record (crash mid-write).  Either way that intent was never sent, because sending waits for the
append to return.  The log is compacted after startup reconciliation (only orders that were not
yet final are carried over), so it stays small.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import attrs
import orjson
import trio

from spark.core.intents import OrderIntent
from spark.core.orders import Order
from spark.exchange.inflight import slot
from spark.storage.linux_aio import BLOCK, AioFile, open_aio

log = logging.getLogger("spark.actors.intent_log")

EXTEND_BYTES = 4 << 20  # zero-filled ahead of need: ~22,000 intents per step
_ZEROS = bytes(64 * 1024)
TAIL_BYTES = 64 * 1024  # the aligned copy of the log's tail the AIO path writes from
MAX_VOIDS_PER_WRITE = 64  # void lines carried by one record (~20 bytes each)
Backend = Literal["auto", "thread"]


@attrs.frozen
class LoggedIntent:
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    time_in_force: str | None
    created_ms: int
    source: str = ""

    @classmethod
    def of(cls, intent: OrderIntent | Order) -> LoggedIntent:
        """The record of an intent, or of the order made from it (same fields)."""
        return cls(
            client_order_id=intent.client_order_id, symbol=intent.symbol, side=intent.side,
            type=intent.type, quantity=intent.quantity, price=intent.price,
            time_in_force=intent.time_in_force, created_ms=intent.created_ms,
            source=intent.source,
        )

    def to_json(self) -> bytes:
        return orjson.dumps({
            "c": self.client_order_id, "s": self.symbol, "S": self.side, "o": self.type,
            "q": str(self.quantity), "p": None if self.price is None else str(self.price),
            "f": self.time_in_force, "t": self.created_ms, "src": self.source,
        })

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LoggedIntent:
        return cls(
            client_order_id=raw["c"], symbol=raw["s"], side=raw["S"], type=raw["o"],
            quantity=Decimal(raw["q"]), price=None if raw["p"] is None else Decimal(raw["p"]),
            time_in_force=raw["f"], created_ms=raw["t"], source=raw.get("src", ""),
        )


@attrs.define(eq=False)
class _Flight:
    """A record whose write :meth:`IntentLog.begin` submitted; settled by the next user of the
    log (or by its own :meth:`IntentWrite.wait`)."""

    generation: int  # the log's file generation at submit: offsets name records only in it
    start: int  # offset of the record's line (after any void lines written with it)
    end: int  # offset past it: where the next record goes once this one is on disk
    dirty: int  # tail-copy position past the bytes written (scrap if the write failed)
    done: bool = False
    error: OSError | None = None
    voids: list[_Flight] = attrs.Factory(list)  # carried by this write: queued again on failure


class IntentWrite:
    """One intent's record on its way to disk, begun at intake by :meth:`IntentLog.begin`.

    Exactly one of :meth:`wait` (before the order's first send) or :meth:`discard` (the order
    will not be sent now) is called by whoever ends up holding it; a handle simply dropped
    leaves a record that restart reconciliation asks the venue about, nothing worse."""

    __slots__ = ("_flight", "_log", "intent")

    def __init__(self, log: IntentLog, intent: LoggedIntent, flight: _Flight | None) -> None:
        self._log = log
        self.intent = intent
        self._flight = flight

    @property
    def begun(self) -> bool:
        """Whether the write was started at intake (else :meth:`wait` appends)."""
        return self._flight is not None

    async def wait(self) -> None:
        """Durable on return, as :meth:`IntentLog.append`; usually no wait at all."""
        log, flight = self._log, self._flight
        if flight is not None and flight.generation == log._generation:
            if not flight.done and flight.error is None:
                async with slot(log._lock):
                    await log._settle()
            if flight.done and flight.generation == log._generation:
                return
        # Not begun, failed, or the log was rewritten since: append it now.
        await log.append(self.intent)

    def discard(self) -> None:
        """The order will not be sent (now): void the record, with the next write."""
        flight, self._flight = self._flight, None
        if (flight is not None and flight.error is None
                and flight.generation == self._log._generation):
            self._log._voids.append(flight)
            self._log._voids_waiting.set()


class IntentLog:
    """Preallocated, ``O_DSYNC``, append-only; reads survive a torn or zero-filled tail."""

    FILENAME = "order-intents.wal"

    def __init__(self, state_dir: str | os.PathLike[str],
                 extend_bytes: int = EXTEND_BYTES, backend: Backend = "auto") -> None:
        if extend_bytes <= 0:
            raise ValueError("extend_bytes must be positive")
        self.path = Path(state_dir) / self.FILENAME
        self._extend_bytes = extend_bytes
        self._backend = backend
        self._fd: int | None = None
        self._offset = 0  # where the next record goes
        self._allocated = 0  # bytes of the file that exist (records + zeros)
        # Appends and compaction, one at a time, in arrival order (fair).  A semaphore, not a
        # lock: begin() takes it for a moment from the caller's task, without owning it.
        self._lock = trio.Semaphore(1)
        self._limiter = trio.CapacityLimiter(1)  # one thread at a time touches the file
        # Zero-filling ahead of need runs in the background (keep_ahead), off the order path.
        self._extension_lock = trio.Lock()
        self._low_space = trio.Event()
        # The AIO path: the file from _tail_base on, mirrored in _aio.buffer (zeros past the
        # records, except up to _scrap_end after a write that did not complete).
        self._aio: AioFile | None = None
        self._path_said = ""  # the append path last logged
        self._tail_base = 0
        self._scrap_end = 0
        # begin(): the write submitted and not yet settled (at most one), the records to void
        # with the next write, and the file generation (bumped at every close: offsets of
        # earlier records no longer name anything).
        self._in_flight: _Flight | None = None
        self._voids: list[_Flight] = []
        self._voids_waiting = trio.Event()
        self._generation = 0

    @property
    def uses_aio(self) -> bool:
        """Whether appends go through kernel AIO (known once the log is open)."""
        return self._aio is not None

    # -- reading -------------------------------------------------------------------------------

    def read(self) -> list[LoggedIntent]:
        """Every intent in the log not voided, oldest first (duplicates by id collapsed to the
        first)."""
        if not self.path.exists():
            return []
        records: list[tuple[int, LoggedIntent]] = []
        voided: set[int] = set()
        offset = 0
        for line in _complete_lines(self.path.read_bytes()):
            at, offset = offset, offset + len(line) + 1
            try:
                raw = orjson.loads(line)
                if "v" in raw:
                    voided.add(int(raw["v"]))
                    continue
                records.append((at, LoggedIntent.from_json(raw)))
            except (ValueError, KeyError, TypeError, ArithmeticError):
                continue
        seen: dict[str, LoggedIntent] = {}
        for at, intent in records:
            if at not in voided:
                seen.setdefault(intent.client_order_id, intent)
        return list(seen.values())

    # -- writing -------------------------------------------------------------------------------

    def rewrite(self, keep: Iterable[LoggedIntent]) -> None:
        """Replace the log with ``keep`` atomically (write, fsync, rename, fsync the folder).

        The new file holds only the records; the next append preallocates again."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for intent in keep:
                f.write(intent.to_json() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def _open(self) -> int:
        """Open (and repair) the log; with the AIO backend also its ``O_DIRECT`` twin."""
        fd = self._open_fd()
        if self._backend == "auto" and self._aio is None:
            self._open_aio(fd)
        return fd

    def _open_aio(self, fd: int) -> None:
        """Switch appends to kernel AIO if it works for this file: opened, and one real write
        (the tail block, rewritten with what it holds) accepted — some filesystems take
        ``O_DIRECT`` at open and refuse the write itself.  Runs in a worker thread."""
        aio, how = open_aio(self.path, TAIL_BYTES)
        if aio is not None:
            tail_base = self._offset - self._offset % BLOCK
            if tail_base + BLOCK > self._allocated:
                self._extend(self._extend_bytes)  # a full step, as prepare() would
            head = os.pread(fd, self._offset - tail_base, tail_base)
            aio.buffer[: len(head)] = head
            try:
                aio.write_blocking(0, BLOCK, tail_base)
            except OSError as exc:
                aio.close()
                aio, how = None, f"a test write was refused: {exc}"
        path = how if aio is not None else f"worker thread (kernel AIO unavailable: {how})"
        if path != self._path_said:
            self._path_said = path
            log.info("intent log appends: %s", path)
        if aio is None:
            return
        self._tail_base = tail_base
        self._scrap_end = 0
        self._aio = aio

    def _open_fd(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_DSYNC | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            self._offset = _end_of_records(fd, size)
            self._allocated = size
            if self._offset < size:
                # A torn record (crash mid-write) sits before the zeros: overwrite it with
                # zeros so the next record does not follow garbage (it was never sent).
                torn = _torn_bytes(fd, self._offset, size)
                if torn:
                    os.pwrite(fd, bytes(torn), self._offset)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if created:
            _fsync_dir(self.path.parent)
        return fd

    def prepare(self) -> None:
        """Open the log and preallocate, so the first order's append does not pay for it."""
        if self._fd is None:
            self._open()
        if self._allocated - self._offset < self._extend_bytes // 2:
            self._extend(self._extend_bytes)

    def _extend(self, needed: int) -> None:
        """Zero-fill at least ``needed`` more bytes past the records, then fsync the size.

        Through a second descriptor without ``O_DSYNC``: one fsync for the whole step rather
        than one per chunk."""
        target = max(self._allocated, self._offset + needed)
        target += self._extend_bytes - target % self._extend_bytes
        target += -target % BLOCK  # whole blocks: the AIO path writes blocks, never past the end
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            position = self._allocated
            while position < target:
                chunk = _ZEROS[: min(len(_ZEROS), target - position)]
                position += os.pwrite(fd, chunk, position)
            os.fsync(fd)  # the new size is metadata: one full fsync per step
        finally:
            os.close(fd)
        self._allocated = target

    def _append_sync(self, intent: LoggedIntent) -> None:
        fd = self._fd if self._fd is not None else self._open()
        record = intent.to_json() + b"\n"
        if self._offset + len(record) > self._allocated:
            self._extend(len(record))
        written = os.pwrite(fd, record, self._offset)  # O_DSYNC: durable on return
        if written != len(record):  # pragma: no cover - a regular file writes it whole
            raise OSError(f"short write to the intent log ({written} of {len(record)} bytes)")
        self._offset += written

    async def append(self, intent: LoggedIntent) -> None:
        """Durable on return.  If cancelled, the intent may or may not be in the log (it was
        not sent: sending waits for this), and the log stays consistent."""
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancel point even if nothing waits
        async with slot(self._lock):  # free: taken without a scheduling pass
            if self._fd is None:
                await trio.to_thread.run_sync(self._open, limiter=self._limiter)
            if self._aio is None:
                await trio.to_thread.run_sync(self._append_sync, intent, limiter=self._limiter)
            else:
                await self._append_aio(self._aio, intent.to_json() + b"\n")
            if self._allocated - self._offset < self._extend_bytes // 2:
                self._low_space.set()

    def begin(self, intent: LoggedIntent) -> IntentWrite:
        """Start making ``intent`` durable now and return without waiting: the disk works while
        the order is checked and routed, and :meth:`IntentWrite.wait` usually finds it done.

        Only on the AIO path, with the log open, idle (no append or compaction under way, the
        previous write completed) and room preallocated; otherwise the handle appends when
        waited for, exactly as :meth:`append`."""
        aio = self._aio
        if aio is None or self._fd is None:
            return IntentWrite(self, intent, None)
        try:
            self._lock.acquire_nowait()  # held only for this synchronous stretch
        except trio.WouldBlock:
            return IntentWrite(self, intent, None)
        try:
            if not self._settle_now(aio):
                return IntentWrite(self, intent, None)
            voids, count = self._void_lines()
            record = intent.to_json() + b"\n"
            size = len(voids) + len(record)
            reach = max(self._offset + size, self._tail_base + self._scrap_end)
            if not self._preallocated(reach) or size > len(aio.buffer) - BLOCK:
                return IntentWrite(self, intent, None)
            start = self._offset + len(voids)
            first, length, at, end, dirty = self._stage(aio, voids + record)
            try:
                aio.submit(first, length, at)
            except OSError as exc:
                self._scrap_end = dirty
                log.warning("intent log: write refused at intake (%s); appending later", exc)
                return IntentWrite(self, intent, None)
            flight = _Flight(self._generation, start, end, dirty, voids=self._voids[:count])
            del self._voids[:count]
            self._in_flight = flight
            if self._allocated - end < self._extend_bytes // 2:
                self._low_space.set()
            return IntentWrite(self, intent, flight)
        finally:
            self._lock.release()

    def _preallocated(self, reach: int) -> bool:
        """Whether the file already holds the whole block that offset ``reach`` ends in (an
        AIO write covers whole blocks)."""
        return reach + -reach % BLOCK <= self._allocated

    def _void_lines(self) -> tuple[bytes, int]:
        """Void lines for records dropped since the last write (settled ones only), and how
        many entries of ``_voids`` they account for."""
        batch = self._voids[:MAX_VOIDS_PER_WRITE]
        lines = b"".join(b'{"v":%d}\n' % f.start for f in batch
                         if f.done and f.generation == self._generation)
        return lines, len(batch)

    def _settle_now(self, aio: AioFile) -> bool:
        """Account for a completed write without waiting; False if one is still in flight."""
        if not aio.in_flight:
            return True
        flight = self._in_flight
        try:
            if not aio.poll():
                return False
        except OSError as exc:
            if _still_writing(aio):  # io_getevents itself failed, not the write
                log.warning("intent log: cannot reap a write (%s)", exc)
                return False
            self._write_failed(flight, exc)
            return True
        if flight is not None:
            self._write_done(flight)
        return True

    async def _settle(self) -> None:
        """Wait for the write in flight, if any, and account for it (lock held)."""
        aio = self._aio
        if aio is None or not aio.in_flight:
            return
        flight = self._in_flight
        if flight is None:
            await aio.settle()  # an append's write whose waiter was cancelled: scrap already
            return
        try:
            await aio.finish()
        except OSError as exc:
            if _still_writing(aio):  # io_getevents itself failed, not the write
                raise
            self._write_failed(flight, exc)
        else:
            self._write_done(flight)

    def _write_done(self, flight: _Flight) -> None:
        flight.done = True
        self._offset = flight.end
        self._in_flight = None

    def _write_failed(self, flight: _Flight | None, exc: OSError) -> None:
        if flight is None:
            log.warning("an abandoned intent-log write failed: %s", exc)
            return
        log.warning("intent log: a write begun at intake failed (%s); appending again", exc)
        flight.error = exc
        self._scrap_end = flight.dirty  # zeroed, and written over, before the next record
        self._in_flight = None
        self._voids[:0] = flight.voids  # they go out with the next write instead

    async def flush_voids(self) -> None:
        """Write the void lines still waiting for a next record (durable on return), so a
        restart does not ask the venue about intents that were dropped."""
        async with slot(self._lock):
            while self._aio is not None and self._voids:  # MAX_VOIDS_PER_WRITE at a time
                await self._append_aio(self._aio, b"")

    async def keep_voids_written(self, delay_s: float = 0.01) -> None:
        """Write void lines shortly after a drop when no record comes to carry them (a
        rejection storm costs one write per ``delay_s``).  Runs for the log's life in its
        owner's nursery, next to :meth:`keep_ahead`."""
        while True:
            await self._voids_waiting.wait()
            self._voids_waiting = trio.Event()
            await trio.sleep(delay_s)  # coalesce, and let the next order's record carry them
            await self.flush_voids()

    async def _append_aio(self, aio: AioFile, record: bytes) -> None:
        """Write the block(s) the record lands in from the tail copy; durable on return."""
        await self._settle()  # a write begun at intake, or one whose waiter was cancelled
        voids, count = self._void_lines()
        record = voids + record
        if not record:  # only voids of records that never made it: nothing to write
            del self._voids[:count]
            return
        end = self._offset + len(record)
        reach = max(end, self._tail_base + self._scrap_end)
        if not self._preallocated(reach):
            async with self._extension_lock:  # a background extension may be under way
                if not self._preallocated(reach):
                    await trio.to_thread.run_sync(self._extend, reach - self._offset + BLOCK,
                                                  limiter=self._limiter)
        first, length, at, end, dirty = self._stage(aio, record)
        try:
            await aio.write(first, length, at)
        except BaseException:
            self._scrap_end = dirty  # zeroed, and written over, before the next record
            raise
        del self._voids[:count]
        self._offset = end

    def _stage(self, aio: AioFile, record: bytes) -> tuple[int, int, int, int, int]:
        """Put ``record`` into the tail copy at the log's end; return what to write (buffer
        start, length, file offset), the log's end after it and the copy's dirty end."""
        buffer = aio.buffer
        pos = self._offset - self._tail_base
        # What a cancelled or failed write left behind, here and maybe on disk: zeroed in the
        # copy now, and on disk by this write, which covers it (a fragment past a zero-free
        # block boundary would otherwise read back as a record).
        scrap_end = self._scrap_end
        if scrap_end > pos:
            buffer[pos:scrap_end] = bytes(scrap_end - pos)
        self._scrap_end = 0
        if pos + len(record) > len(buffer):
            if len(record) > len(buffer) - BLOCK:
                raise ValueError(f"intent record too large ({len(record)} bytes)")
            keep_from = pos - pos % BLOCK  # slide the window: keep only the partial block
            partial = bytes(buffer[keep_from:pos])
            buffer[:pos] = bytes(pos)
            buffer[: len(partial)] = partial
            self._tail_base += keep_from
            pos -= keep_from
            scrap_end -= keep_from
        stop = pos + len(record)
        buffer[pos:stop] = record
        first = pos - pos % BLOCK
        dirty = max(stop, scrap_end)
        return (first, dirty + -dirty % BLOCK - first, self._tail_base + first,
                self._offset + len(record), dirty)

    async def keep_ahead(self) -> None:
        """Zero-fill the next step in the background when half of the preallocated space is
        used, so no append waits for it (~20 ms per MiB with its fsync, measured).  Runs for
        the log's life in its owner's nursery; without it, appends extend when they must."""
        while True:
            await self._low_space.wait()
            self._low_space = trio.Event()
            async with self._extension_lock:
                if self._fd is not None and (
                        self._allocated - self._offset < self._extend_bytes // 2):
                    await trio.to_thread.run_sync(self._extend, self._extend_bytes,
                                                  limiter=self._limiter)

    async def compact(self, keep: Callable[[], Iterable[LoggedIntent]]) -> None:
        """Replace the log with ``keep()`` (taken once no append is in progress) and
        preallocate again; appends queued meanwhile go to the new log."""
        async with self._lock, self._extension_lock:
            await self._settle()
            intents = list(keep())

            def rewrite_and_prepare() -> None:
                self.rewrite(intents)
                self.prepare()

            await trio.to_thread.run_sync(rewrite_and_prepare, limiter=self._limiter)

    def close(self) -> None:
        """Release the files.  Not while an append is waiting (compaction holds the appends'
        lock when it closes); a kernel write still in flight is waited for (in a worker
        thread when called by compaction).  Records' offsets end with the file: writes begun
        before it are appended again by their :meth:`IntentWrite.wait`."""
        self._generation += 1
        self._in_flight = None
        self._voids.clear()
        if self._aio is not None:
            self._aio.close()
            self._aio = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _still_writing(aio: AioFile) -> bool:
    """After a failed reap: whether the kernel may still be writing from the buffer (the
    completion was never collected), so nothing may touch it yet."""
    return aio.in_flight


def _complete_lines(data: bytes) -> Iterable[bytes]:
    """The newline-terminated records before the first incomplete one (torn or zeros)."""
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        line = data[start:end]
        if not line or b"\x00" in line:
            return  # the preallocated tail, or a record torn into it
        yield line
        start = end + 1


def _end_of_records(fd: int, size: int) -> int:
    """Offset just past the last complete record of an open log of ``size`` bytes."""
    data = os.pread(fd, size, 0) if size else b""
    end = 0
    for line in _complete_lines(data):
        end += len(line) + 1
    return end


def _torn_bytes(fd: int, offset: int, size: int) -> int:
    """How many non-zero bytes follow the last complete record (a torn write)."""
    tail = os.pread(fd, size - offset, offset)
    return len(tail.rstrip(b"\x00"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
