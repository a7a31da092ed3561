"""The order router's write-ahead log of intents: durable before an order's first send.

Why a file of our own rather than waiting for the database row: the writer batches and may be
degraded (spooling), and the router must not send an order whose ``clientOrderId`` a crash could
forget.  One fsync'd JSON line per intent, appended before the first send; after a SIGKILL the
restarted runtime reads every id it may have sent and reconciles each with the venue.

The log is compacted at startup (after reconciliation): only orders that were not yet final are
carried over, so it stays small.  A torn last line (crash mid-append) is ignored: its order was
never sent, because sending waits for the append to return.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import attrs
import orjson
import trio


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
    """Append-only, fsync'd; reads survive a torn tail."""

    FILENAME = "order-intents.wal"

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / self.FILENAME
        self._file: IO[bytes] | None = None
        # One thread at a time touches the file; appends are ordered.
        self._limiter = trio.CapacityLimiter(1)

    def read(self) -> list[LoggedIntent]:
        """Every intent in the log, oldest first (duplicates by id collapsed to the first)."""
        if not self.path.exists():
            return []
        seen: dict[str, LoggedIntent] = {}
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # torn tail: that intent was never sent
                try:
                    intent = LoggedIntent.from_json(orjson.loads(line))
                except (ValueError, KeyError, ArithmeticError):
                    continue
                seen.setdefault(intent.client_order_id, intent)
        return list(seen.values())

    def rewrite(self, keep: Iterable[LoggedIntent]) -> None:
        """Replace the log with ``keep`` atomically (write, fsync, rename, fsync the folder)."""
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

    def _append_sync(self, intent: LoggedIntent) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(intent.to_json() + b"\n")
        self._file.flush()
        os.fdatasync(self._file.fileno())

    async def append(self, intent: LoggedIntent) -> None:
        """Durable on return."""
        await trio.to_thread.run_sync(self._append_sync, intent, limiter=self._limiter)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
