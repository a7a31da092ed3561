"""The writer's on-disk spool: where records wait while the database is unavailable.

Layout: ``<spool_dir>/segment-<12-digit sequence>.jsonl``, one file per segment, replayed in
sequence order.  Each line is ``<crc32 as 8 hex digits> <record JSON>\\n`` (JSON from
:func:`spark.storage.records.encode`).

Guarantees, and how:

* **Durable before acknowledged**: :meth:`Spool.append` writes the lines and ``fsync``\\ s the file
  (and the directory when it created the file) before returning; the writer counts an event as
  taken care of only after that.
* **Torn tail tolerated**: a crash in the middle of an append leaves a partial last line (no
  newline, or a checksum that does not match).  It is detected on read and ignored — its append
  never returned, so nobody was told it was safe.  Segments of a previous process are never
  appended to again (a new process always starts a new segment), so a torn tail stays a tail.
* **Corruption is not silent**: an invalid line *before* the last one cannot come from a crash;
  it is counted and logged, and after the segment's valid rows are committed the file is renamed
  to ``*.corrupt`` (kept for inspection) instead of being deleted.
* **Deleted only after commit**: the spool never deletes on its own; the writer calls
  :meth:`Spool.delete` once the segment's rows are committed.  A crash between commit and delete
  replays the segment again, which the idempotent inserts make harmless.
* **Refused records are kept**: a record the database rejects for good (a constraint or data
  error, not an outage) goes to ``rejected.jsonl`` with the error, never silently away.
* **Rotation by count**: a segment holds at most ``segment_max_events`` records, which bounds the
  memory and the transaction size of a replay step.

Not thread-safe: one owner (the writer's single worker thread) at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import attrs
import orjson

from spark.storage.errors import RecordDecodeError, SpoolError
from spark.storage.records import Record, decode, encode, to_jsonable

log = logging.getLogger(__name__)

_NAME = re.compile(r"^segment-(\d{12})\.jsonl$")
REJECTED_NAME = "rejected.jsonl"


def segment_name(seq: int) -> str:
    return f"segment-{seq:012d}.jsonl"


def encode_line(record: Record) -> bytes:
    """One spool line: checksum, space, JSON, newline."""
    payload = encode(record)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode_line(line: bytes) -> Record:
    """The record on one spool line (without its newline); ``RecordDecodeError`` if invalid."""
    if len(line) < 10 or line[8:9] != b" ":
        raise RecordDecodeError("spool line too short or malformed")
    try:
        expected = int(line[:8], 16)
    except ValueError:
        raise RecordDecodeError("spool line checksum is not hex") from None
    payload = line[9:]
    if zlib.crc32(payload) != expected:
        raise RecordDecodeError("spool line checksum mismatch")
    return decode(payload)


@attrs.frozen
class Segment:
    """One segment file; ``events`` counts its valid records.

    ``this_process`` is true for segments written by this :class:`Spool` instance (their
    records' ``ingress`` times are meaningful).
    """

    seq: int
    path: Path
    events: int
    this_process: bool


@attrs.frozen
class SegmentContents:
    """What :meth:`Spool.read` found in a segment."""

    records: list[Record]
    torn_tail: bool
    corrupt_lines: int


def parse_segment(data: bytes) -> SegmentContents:
    """Split a segment's bytes into records, tolerating a torn last line."""
    lines = data.split(b"\n")
    # A complete file ends with "\n", leaving an empty last element; anything else there is
    # a partial line from an interrupted append.
    tail = lines.pop()
    torn = tail != b""
    records: list[Record] = []
    corrupt = 0
    for index, line in enumerate(lines):
        try:
            records.append(decode_line(line))
        except RecordDecodeError:
            if index == len(lines) - 1 and not torn:
                torn = True  # a complete-looking but damaged last line: also a torn append
            else:
                corrupt += 1
    return SegmentContents(records=records, torn_tail=torn, corrupt_lines=corrupt)


class Spool:
    """Append-only, fsync'd segment files; see the module docstring."""

    def __init__(self, directory: Path | str, segment_max_events: int) -> None:
        if segment_max_events < 1:
            raise ValueError("segment_max_events must be >= 1")
        self.directory = Path(directory)
        self.segment_max_events = segment_max_events
        self._sealed: list[Segment] = []
        self._active: Segment | None = None
        self._fd: int | None = None
        self._next_seq = 1
        self._opened = False

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory if needed and take stock of segments left by earlier runs."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            found = sorted(
                (int(m.group(1)), self.directory / name)
                for name in os.listdir(self.directory)
                if (m := _NAME.match(name))
            )
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc}") from exc
        self._sealed = []
        for seq, path in found:
            contents = self._read_path(path)
            self._sealed.append(Segment(seq, path, len(contents.records), this_process=False))
        self._next_seq = (found[-1][0] + 1) if found else 1
        self._active = None
        self._opened = True
        if found:
            log.info(
                "spool: %d segment(s) with %d event(s) left by a previous run in %s",
                len(found), self.pending_events, self.directory,
            )

    def close(self) -> None:
        """Close the active segment's file (it stays on disk, to be replayed)."""
        self.seal()

    @property
    def pending_events(self) -> int:
        """Records on disk not yet deleted (i.e. not known to be committed)."""
        total = sum(s.events for s in self._sealed)
        return total + (self._active.events if self._active else 0)

    @property
    def empty(self) -> bool:
        return not self._sealed and (self._active is None or self._active.events == 0)

    # -- writing -----------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> None:
        """Write ``records`` durably (fsync'd) in order, rotating segments by count."""
        self._require_open()
        index = 0
        while index < len(records):
            active = self._active_segment()
            room = self.segment_max_events - active.events
            chunk = records[index : index + room]
            data = b"".join(encode_line(r) for r in chunk)
            assert self._fd is not None
            try:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError as exc:
                # The file may now end in a partial line: never append after it.
                self.seal()
                raise SpoolError(f"cannot append to spool segment {active.path}: {exc}") from exc
            self._active = attrs.evolve(active, events=active.events + len(chunk))
            index += len(chunk)
            if self._active.events >= self.segment_max_events:
                self.seal()

    def seal(self) -> None:
        """Close the active segment (if any): the next append starts a new one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._active is not None:
            if self._active.events:
                self._sealed.append(self._active)
            else:
                _unlink(self._active.path)
            self._active = None

    def _active_segment(self) -> Segment:
        if self._active is None:
            seq = self._next_seq
            self._next_seq += 1
            path = self.directory / segment_name(seq)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                _fsync_dir(self.directory)
            except OSError as exc:
                raise SpoolError(f"cannot create spool segment {path}: {exc}") from exc
            self._active = Segment(seq, path, 0, this_process=True)
        return self._active

    def reject(self, entries: Sequence[tuple[Record, str]]) -> None:
        """Keep records the database refuses for good in ``rejected.jsonl`` (fsync'd).

        One JSON object per line: ``{"error": "...", "record": {...}}``.  Such records are
        never retried automatically (they would fail again); an operator can inspect them.
        """
        if not entries:
            return
        lines = b"".join(
            orjson.dumps({"error": error, "record": to_jsonable(record)}) + b"\n"
            for record, error in entries
        )
        path = self.directory / REJECTED_NAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                _write_all(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SpoolError(f"cannot write {path}: {exc}") from exc

    # -- replaying ---------------------------------------------------------------------------

    def sealed_segments(self) -> list[Segment]:
        """Sealed segments, oldest first (call :meth:`seal` first to include the active one)."""
        return list(self._sealed)

    def read(self, segment: Segment) -> SegmentContents:
        """The records of a sealed segment, in append order."""
        return self._read_path(segment.path)

    def delete(self, segment: Segment, *, quarantine: bool = False) -> None:
        """Forget a segment whose records are committed; ``quarantine`` keeps it as ``.corrupt``."""
        if segment not in self._sealed:
            raise SpoolError(f"{segment.path.name} is not a sealed segment of this spool")
        try:
            if quarantine:
                segment.path.rename(segment.path.with_suffix(".corrupt"))
            else:
                segment.path.unlink()
            _fsync_dir(self.directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SpoolError(f"cannot delete spool segment {segment.path}: {exc}") from exc
        self._sealed.remove(segment)

    def _read_path(self, path: Path) -> SegmentContents:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpoolError(f"cannot read spool segment {path}: {exc}") from exc
        contents = parse_segment(data)
        if contents.torn_tail:
            log.warning("spool: %s ends with a torn line (interrupted append); ignored", path.name)
        if contents.corrupt_lines:
            log.error(
                "spool: %s has %d corrupt line(s) before its end; they cannot be replayed",
                path.name, contents.corrupt_lines,
            )
        return contents

    def _require_open(self) -> None:
        if not self._opened:
            raise SpoolError("spool used before open()")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
