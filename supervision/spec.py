"""Static description of a supervised child: what to run and how to treat its exits."""

from __future__ import annotations

import enum
import math
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from spark.supervision.context import ChildContext

if TYPE_CHECKING:
    from spark.supervision.stats import SupervisorSnapshot


class Restart(enum.Enum):
    """When an exited child is started again (OTP restart types)."""

    PERMANENT = "permanent"
    """Always restarted, even after returning normally: it is meant to run for the whole life of
    its supervisor, so a return is as unexpected as a crash."""

    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (an exception); a normal return means "done"."""

    TEMPORARY = "temporary"
    """Never restarted, not even when a sibling's crash takes it down under one_for_all or
    rest_for_one."""


class Strategy(enum.Enum):
    """Which children are restarted when one of them crashes (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child: siblings are independent."""

    ONE_FOR_ALL = "one_for_all"
    """All children: they share state and cannot survive each other's restart."""

    REST_FOR_ONE = "rest_for_one"
    """The crashed child and every child started after it: later children depend on earlier
    ones (e.g. the root, where everything sends to the writer started first)."""


class ChildEntry(Protocol):
    """Signature of a child's entry point.

    The entry reports readiness through ``task_status.started()`` (exactly like a function given
    to ``trio.Nursery.start``); the supervisor starts the next child only after that.
    """

    def __call__(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = ...
    ) -> Coroutine[Any, Any, None]: ...


class SnapshotSource(Protocol):
    """Something that can describe its own children (a nested supervisor)."""

    def snapshot(self, *, path_prefix: str | None = None) -> SupervisorSnapshot: ...


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    # Names become dotted metric paths, so a dot inside a name would make paths ambiguous.
    if not value or "." in value:
        raise ValueError(f"child name must be non-empty and contain no '.': {value!r}")


def _check_non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if math.isnan(value) or value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _check_stall(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None and (math.isnan(value) or value <= 0):
        raise ValueError(f"stall_deadline_s must be > 0 or None, got {value!r}")


@attrs.frozen
class ChildSpec:
    """One child of a supervisor.

    ``shutdown_deadline_s`` bounds how long the child may take to return after a polite stop
    request before it is cancelled (0 means cancel at once; ``math.inf`` waits forever, which only
    makes sense for a nested supervisor that bounds its own children). ``stall_deadline_s``, when
    set, is the longest the child may go without calling ``ctx.progress()`` before it is treated
    as crashed. ``nested`` is set by ``Supervisor.as_child_spec`` so snapshots can show the tree.
    """

    name: str = attrs.field(validator=_check_name)
    entry: ChildEntry = attrs.field(eq=False)
    restart: Restart = Restart.PERMANENT
    shutdown_deadline_s: float = attrs.field(default=5.0, validator=_check_non_negative)
    stall_deadline_s: float | None = attrs.field(default=None, validator=_check_stall)
    nested: SnapshotSource | None = attrs.field(default=None, eq=False, repr=False)
