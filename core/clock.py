"""The one injectable source of wall-clock time.

Intervals (keepalives, backoffs, windows of seconds) use ``trio.current_time()`` so tests can
drive them with ``MockClock``.  Wall-clock time (trade windows, exchange timestamps) comes from a
:class:`WallClock`, so a test can pin it or skew it without patching ``time``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class WallClock(Protocol):
    """Anything that tells the current UTC time."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The host's clock, optionally shifted by a fixed offset (the venue's injected skew)."""

    __slots__ = ("offset_ms",)

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


class FixedClock:
    """A clock that only moves when told to: for tests."""

    __slots__ = ("_ms",)

    def __init__(self, ms: int) -> None:
        self._ms = ms

    def now_ms(self) -> int:
        return self._ms

    def set(self, ms: int) -> None:
        self._ms = ms

    def advance(self, ms: int) -> None:
        self._ms += ms


def to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


SYSTEM_CLOCK: WallClock = SystemClock()
