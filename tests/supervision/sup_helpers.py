"""Scripted children and an event recorder for the supervision tests.

Every child records what happened to it (with the Trio time), so tests can assert exact
sequences and virtual timestamps under ``MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import trio

from spark.supervision import ChildContext, ChildEntry, ChildSpec, Restart


class Boom(Exception):
    """The crash our scripted children raise."""


@attrs.frozen
class Event:
    time: float
    what: str
    name: str


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, what: str, name: str) -> None:
        self.events.append(Event(trio.current_time(), what, name))

    def seq(self, *, since: float = -math.inf, kinds: Sequence[str] | None = None) -> list[str]:
        """``"what name"`` strings, optionally from a time on and for some kinds only."""
        return [
            f"{e.what} {e.name}"
            for e in self.events
            if e.time >= since and (kinds is None or e.what in kinds)
        ]

    def times(self, what: str, name: str) -> list[float]:
        return [e.time for e in self.events if e.what == what and e.name == name]

    def count(self, what: str, name: str) -> int:
        return len(self.times(what, name))


@attrs.frozen
class Life:
    """What one incarnation does.

    It records ``start``, sleeps ``start_delay``, then either raises before readiness
    (``fail_before_ready``) or calls ``started()`` and records ``ready``. Then it runs for
    ``uptime`` (forever if None) and then ends as ``end``: "crash" raises Boom, "return" returns.
    If a stop is requested first it records ``stop_requested``, takes ``stop_delay`` (forever if
    None: it ignores the request) and returns, recording ``exit``; a cancellation is recorded as
    ``cancelled``.
    """

    start_delay: float = 0.0
    fail_before_ready: bool = False
    uptime: float | None = None
    end: str = "crash"
    stop_delay: float | None = 0.0


def scripted(
    rec: Recorder, name: str, lives: Sequence[Life] = (), default: Life = Life()
) -> ChildEntry:
    """An entry whose n-th incarnation follows ``lives[n]`` (``default`` after the list)."""
    incarnation = 0

    async def run(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal incarnation
        life = lives[incarnation] if incarnation < len(lives) else default
        incarnation += 1
        rec.add("start", name)
        try:
            if life.start_delay:
                await trio.sleep(life.start_delay)
            if life.fail_before_ready:
                rec.add("crash", name)
                raise Boom(f"{name} failed to start")
            task_status.started()
            rec.add("ready", name)
            with trio.move_on_after(math.inf if life.uptime is None else life.uptime):
                await ctx.wait_stop()
            if ctx.stop_requested.is_set():
                rec.add("stop_requested", name)
                await trio.sleep(math.inf if life.stop_delay is None else life.stop_delay)
                rec.add("exit", name)
                return
            if life.end == "crash":
                rec.add("crash", name)
                raise Boom(f"{name} crashed")
            rec.add("return", name)
        except trio.Cancelled:
            rec.add("cancelled", name)
            raise

    return run


def child(
    rec: Recorder,
    name: str,
    lives: Sequence[Life] = (),
    default: Life = Life(),
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown_deadline_s: float = 5.0,
    stall_deadline_s: float | None = None,
) -> ChildSpec:
    return ChildSpec(
        name=name,
        entry=scripted(rec, name, lives, default),
        restart=restart,
        shutdown_deadline_s=shutdown_deadline_s,
        stall_deadline_s=stall_deadline_s,
    )


class RecordingObserver:
    """A SupervisionObserver that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def on_started(self, path: str) -> None:
        self.calls.append(("started", path, None))

    def on_exit(self, path: str, error: BaseException | None) -> None:
        self.calls.append(("exit", path, None if error is None else type(error).__name__))

    def on_restart(self, path: str) -> None:
        self.calls.append(("restart", path, None))
