"""Read-only views of a supervision tree, for the health endpoint, metrics and logs.

Snapshots are frozen values built on demand, so readers never hold references into live
supervisor state; the observer protocol pushes the same events as they happen so the runtime can
count restarts without polling.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Protocol

import attrs


@attrs.frozen
class MailboxStats:
    """Depth of one bounded mailbox at snapshot time (``spark_mailbox_depth{actor}``)."""

    name: str
    depth: int
    capacity: float


class ChildState(enum.Enum):
    """Lifecycle state of one child as seen by its supervisor."""

    STARTING = "starting"
    """Launched, has not called ``task_status.started()`` yet."""
    RUNNING = "running"
    """Ready and running."""
    BACKING_OFF = "backing_off"
    """Exited (or taken down with a crashed sibling) and waiting to be restarted."""
    STOPPING = "stopping"
    """Asked to stop; waiting for it to return (or for its shutdown deadline)."""
    STOPPED = "stopped"
    """Not running and not going to be restarted (normal exit or stopped on purpose)."""
    FAILED = "failed"
    """Not running after an abnormal exit that will not be restarted."""


@attrs.frozen
class ChildStats:
    """State of one child at snapshot time.

    ``restarts`` counts restarts performed over the supervisor object's whole life (it is not
    reset when a nested supervisor is itself restarted, so it only ever grows). ``last_error`` is
    the last abnormal exit as ``ExcType: message``. ``started_at`` is the Trio time the current
    (or last) incarnation became ready; ``uptime_s`` is measured against the snapshot time and is
    0 while the child is not running. ``children`` is non-empty for a nested supervisor.
    """

    name: str
    path: str
    state: ChildState
    restarts: int
    last_error: str | None
    started_at: float | None
    uptime_s: float
    mailboxes: tuple[MailboxStats, ...] = ()
    children: tuple[ChildStats, ...] = ()

    def walk(self) -> Iterator[tuple[str, ChildStats]]:
        """Yield ``(path, stats)`` for this child and, depth-first, for all its descendants."""
        yield self.path, self
        for child in self.children:
            yield from child.walk()


@attrs.frozen
class SupervisorSnapshot:
    """State of a supervisor's children, in start order, at Trio time ``taken_at``."""

    name: str
    strategy: str
    running: bool
    taken_at: float
    children: tuple[ChildStats, ...]

    def walk(self) -> Iterator[tuple[str, ChildStats]]:
        """Flat ``(dotted path, stats)`` pairs of the whole tree, depth-first in start order."""
        for child in self.children:
            yield from child.walk()


class SupervisionObserver(Protocol):
    """Push notifications about children, keyed by dotted path.

    Called synchronously from the supervisor's task; implementations must be quick and must not
    block (log a line, bump a counter). An exception from an observer is logged and ignored so
    that metrics code can never take the supervision tree down.
    """

    def on_started(self, path: str) -> None:
        """The child at ``path`` called ``task_status.started()``."""

    def on_exit(self, path: str, error: BaseException | None) -> None:
        """The child at ``path`` ended; ``error`` is None for a normal return or a clean stop."""

    def on_restart(self, path: str) -> None:
        """The child at ``path`` is being started again (``spark_actor_restarts_total``)."""
