"""``BackgroundThread``: one OS thread of an actor's own, below the event loop's priority.

Why: blocking work goes to threads so the event loop never waits on it, but a thread that
needs the CPU still competes with the loop for it.  On the reference box (2 cores; the runtime's
loop and its threads share one) the writer's database work — SQLAlchemy and sqlite, ~0.5 ms of
CPU per order — ran in Trio's worker threads at the loop thread's priority, so the kernel
time-sliced the two and every step of the order path got slower whenever a commit was under
way: ``bench/order_path.py`` showed p90 0.80 ms and p99 1.2 ms of internal overhead, with p99s
of 250-350 µs in stretches of plain Python that take 30-70 µs.  With the writer's thread at
``nice`` +10 the kernel runs it whenever the loop thread sleeps (waiting for the venue, the
disk, the next order) and hardly ever in between: p90 0.46-0.48 ms, p99 0.71-0.87 ms, same
session; the writer's CPU per order fell from 0.6 to 0.25 ms (fewer preemptions and GIL
hand-offs).  A database commit a fraction of a millisecond later costs nothing; an order that
leaves later does.

Why not Trio's own worker threads with a lowered priority: without privileges a thread's nice
value can be raised but never lowered again, and Trio's threads are shared — the next job on
that thread might be on the order path (the intent log's fallback append runs in one).  So
the lowered priority stays with a thread that runs nothing else.

Semantics follow ``trio.to_thread.run_sync`` with ``abandon_on_cancel=False``: jobs run one at
a time, in order, in a copy of the caller's context; a caller cancelled before its job started
is released and the job skipped; one cancelled while its job runs waits for the job to finish
(its effect happens), gets its result and sees ``Cancelled`` at its next checkpoint; exceptions
come back to the caller.  Unlike Trio's threads, a job cannot call back into Trio
(``trio.from_thread``).  Per-thread priorities are a Linux feature; elsewhere the thread runs at
the loop's priority and :attr:`BackgroundThread.priority` says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

__all__ = ["BACKGROUND_NICE", "BackgroundThread"]

log = logging.getLogger("spark.supervision.threads")

T = TypeVar("T")

#: How far below the event loop a background thread runs (``nice`` is +10 relative to the
#: process's own value; 0-19 is the range an unprivileged process may use).
BACKGROUND_NICE = 10


class _Job:
    """One call: what to run, in which context, and who waits for it.  ``state`` moves from
    ``queued`` to ``running`` (thread) or ``cancelled`` (the caller's abort), under ``lock``."""

    __slots__ = ("context", "fn", "lock", "state", "task", "token")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.lock = threading.Lock()
        self.state = "queued"

    def abort(self, _: object) -> trio.lowlevel.Abort:
        with self.lock:
            if self.state == "queued":
                self.state = "cancelled"  # never started: the thread will skip it
                return trio.lowlevel.Abort.SUCCEEDED
        return trio.lowlevel.Abort.FAILED  # under way: the caller waits for it

    def run(self) -> None:
        with self.lock:
            if self.state == "cancelled":
                return
            self.state = "running"
        result = outcome.capture(self.context.run, self.fn)
        # RunFinishedError: the Trio run that asked is over; nobody is waiting.
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(trio.lowlevel.reschedule, self.task, result)


class BackgroundThread:
    """A lazily started daemon thread running jobs for Trio callers, one at a time."""

    def __init__(self, name: str, nice: int = BACKGROUND_NICE) -> None:
        if not 0 <= nice <= 19:
            raise ValueError("nice must be between 0 and 19")
        self.name = name
        self._nice = nice
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The thread's priority once it runs: "nice +10", or why it stayed at the loop's.
        self.priority: str | None = None

    async def run_sync(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the thread (in a copy of the caller's context) and return its
        result or raise its exception.  Cancelled before the job started: it never runs.
        Cancelled while it runs: the caller waits for it, gets its result and sees
        ``Cancelled`` at its next checkpoint.  (``trio.from_thread`` does not work in a job.)"""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise RuntimeError(f"background thread {self.name} is closed")
        if self._thread is None:
            thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            thread.start()  # if this raises, nothing is queued and nobody waits
            self._thread = thread
        job = _Job(fn)
        self._jobs.put(job)
        result: T = await trio.lowlevel.wait_task_rescheduled(job.abort)
        return result

    def close(self) -> None:
        """Let the thread exit once the jobs already queued are done.  Idempotent."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                self._jobs.put(None)

    # -- the thread --------------------------------------------------------------------------

    def _main(self) -> None:
        _name_os_thread(self.name)
        self.priority = _lower_priority(self._nice)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.run()


def _name_os_thread(name: str) -> None:
    """Give the OS thread ``name`` (first 15 bytes), so ``top -H`` and ``ps -L`` show which
    thread is the writer.  Linux only; best effort."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


_PR_SET_NAME = 15


def _lower_priority(nice: int) -> str:
    """Lower the calling thread's scheduling priority by ``nice``; says what happened."""
    if sys.platform != "linux" or nice == 0:
        # Elsewhere PRIO_PROCESS names the whole process, not one thread.
        return "as the event loop (per-thread priority needs Linux)" if nice else "nice +0"
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:
        log.warning("background thread stays at the event loop's priority: %s", exc.strerror)
        return f"as the event loop ({exc.strerror})"
    return f"nice +{nice}"
