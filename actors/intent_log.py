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
descriptor opened with ``O_DSYNC``: durable when the call returns.  The appends still run in a
worker thread (the event loop never waits on the disk), one at a time, in order.

Reading stops at the first line that is not complete: zeros (the preallocated tail) or a torn
record (crash mid-write).  Either way that intent was never sent, because sending waits for the
append to return.  The log is compacted after startup reconciliation (only orders that were not
yet final are carried over), so it stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

EXTEND_BYTES = 1 << 20  # zero-filled ahead of need: ~4,000 intents per step
_ZEROS = bytes(64 * 1024)


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


class IntentLog:
    """Preallocated, ``O_DSYNC``, append-only; reads survive a torn or zero-filled tail."""

    FILENAME = "order-intents.wal"

    def __init__(self, state_dir: str | os.PathLike[str],
                 extend_bytes: int = EXTEND_BYTES) -> None:
        if extend_bytes <= 0:
            raise ValueError("extend_bytes must be positive")
        self.path = Path(state_dir) / self.FILENAME
        self._extend_bytes = extend_bytes
        self._fd: int | None = None
        self._offset = 0  # where the next record goes
        self._allocated = 0  # bytes of the file that exist (records + zeros)
        # One thread at a time touches the file; appends are ordered.
        self._limiter = trio.CapacityLimiter(1)

    # -- reading -------------------------------------------------------------------------------

    def read(self) -> list[LoggedIntent]:
        """Every intent in the log, oldest first (duplicates by id collapsed to the first)."""
        if not self.path.exists():
            return []
        seen: dict[str, LoggedIntent] = {}
        for line in _complete_lines(self.path.read_bytes()):
            try:
                intent = LoggedIntent.from_json(orjson.loads(line))
            except (ValueError, KeyError, TypeError, ArithmeticError):
                continue
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
            self._extend(self._extend_bytes // 2)

    def _extend(self, needed: int) -> None:
        """Zero-fill at least ``needed`` more bytes past the records, then fsync the size.

        Through a second descriptor without ``O_DSYNC``: one fsync for the whole step rather
        than one per chunk."""
        target = max(self._allocated, self._offset + needed)
        target += self._extend_bytes - target % self._extend_bytes
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
        """Durable on return."""
        await trio.to_thread.run_sync(self._append_sync, intent, limiter=self._limiter)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
