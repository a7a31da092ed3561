"""The writer's decisions, without I/O and without a clock (time is passed in).

* :class:`Batcher` — when to flush: as soon as ``batch_max`` records are pending, or when the
  oldest pending record has waited ``batch_max_delay`` (0 by default: at once; batches then
  form from what queues up while the previous one is written).  "Waited" counts from the
  record's arrival in the process (the actor passes ``min(now, record.ingress)``), so time
  spent queued in the inbox while the previous batch was being written counts too: under load
  batches go out as soon as they are taken, which is what keeps the latency tail short.
* :class:`WriterCore` — where a batch goes (database or spool) and when to try the database
  again: healthy → database; a failed write → degraded, retried with exponential backoff
  (``retry_initial_s`` doubling up to ``retry_max_s``); while anything is in the spool, new
  batches go to the spool too, so that the database sees events in the order they arrived, and
  the spool is drained (replayed) before the writer is healthy again.

The writer actor (:mod:`spark.actors.writer`) only moves records and performs what these say.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Accumulates items; says when a batch is due by size or by age (time passed in)."""

    def __init__(self, max_size: int, max_delay_s: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        if max_delay_s < 0:
            raise ValueError("max_delay_s must be >= 0")
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self._items: list[T] = []
        self._first_at = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, since: float) -> None:
        """Add an item that has been waiting since ``since`` (its arrival, or earlier)."""
        if not self._items or since < self._first_at:
            self._first_at = since
        self._items.append(item)

    def extend(self, items: list[T], since: float) -> None:
        """Add items that have been waiting since ``since`` (the earliest of their arrivals)."""
        if not items:
            return
        if not self._items or since < self._first_at:
            self._first_at = since
        self._items.extend(items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_size

    @property
    def flush_at(self) -> float | None:
        """When the time bound fires (``None`` while empty)."""
        return self._first_at + self.max_delay_s if self._items else None

    def due(self, now: float) -> bool:
        """True when the pending batch must be written now."""
        if not self._items:
            return False
        return self.full or now >= self._first_at + self.max_delay_s

    def take(self) -> list[T]:
        """Remove and return the pending items (oldest first)."""
        items, self._items = self._items, []
        return items


class Destination(enum.Enum):
    DATABASE = "database"
    SPOOL = "spool"


class WriterCore:
    """Database health, backoff and routing; see the module docstring.

    The actor reports outcomes (:meth:`write_succeeded`, :meth:`write_failed`) and the spool's
    state (:meth:`spool_changed`); it asks :meth:`destination` and :meth:`attempt_due`.
    """

    def __init__(self, retry_initial_s: float, retry_max_s: float) -> None:
        if retry_initial_s <= 0 or retry_max_s < retry_initial_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.database_ok = True
        self.last_error: str | None = None
        self.spool_backlog = False
        self._backoff = retry_initial_s
        self.next_attempt_at: float | None = None
        self.failures = 0

    @property
    def healthy(self) -> bool:
        """Database reachable and nothing waiting in the spool."""
        return self.database_ok and not self.spool_backlog

    def destination(self) -> Destination:
        return Destination.DATABASE if self.healthy else Destination.SPOOL

    def attempt_due(self, now: float) -> bool:
        """Whether to (re)try the database now: to replay the spool or to test a recovery."""
        if self.database_ok:
            return self.spool_backlog
        return self.next_attempt_at is not None and now >= self.next_attempt_at

    def wake_at(self) -> float | None:
        """The next time :meth:`attempt_due` turns true by itself (``None``: only on events)."""
        return None if self.database_ok else self.next_attempt_at

    def write_failed(self, now: float, error: str) -> float:
        """A transient database failure; returns when to try again."""
        self.database_ok = False
        self.last_error = error
        self.failures += 1
        retry_at = now + self._backoff
        self.next_attempt_at = retry_at
        self._backoff = min(self._backoff * 2, self.retry_max_s)
        return retry_at

    def write_succeeded(self) -> None:
        """The database accepted a transaction: it is reachable again."""
        self.database_ok = True
        self.last_error = None
        self.next_attempt_at = None
        self._backoff = self.retry_initial_s

    def spool_changed(self, pending_events: int) -> None:
        self.spool_backlog = pending_events > 0
