"""What a supervised child gets to see of its supervisor.

A child must be able to (1) prove it is alive, (2) notice that it is being asked to stop so it can
finish in-flight work and return, and (3) expose its mailbox depth for metrics. Everything else
about supervision stays out of the actor's way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from spark.supervision.stats import MailboxStats, SupervisionObserver


class ChildContext:
    """Per-incarnation handle passed to a child's entry point.

    A fresh context is built for every start of a child, so a restarted actor never sees a stop
    request, a progress stamp or a mailbox left over from its previous life.

    Actor tests may construct one directly (``ChildContext("writer")``) and call
    :meth:`request_stop` to exercise the polite-stop path without a supervisor.
    """

    __slots__ = (
        "_cancel_hooks",
        "_last_progress",
        "_mailboxes",
        "_name",
        "_observer",
        "_path",
        "_stop",
        "_stop_hooks",
    )

    def __init__(self, name: str, *, path: str | None = None) -> None:
        self._name = name
        self._path = path if path is not None else name
        self._stop = trio.Event()
        self._last_progress = trio.current_time()
        self._mailboxes: dict[str, trio.MemoryReceiveChannel[Any]] = {}
        self._stop_hooks: list[Callable[[], None]] = []
        self._cancel_hooks: list[Callable[[], None]] = []
        # The supervisor's observer, handed down so a nested supervisor without its own observer
        # reports into the same one.
        self._observer: SupervisionObserver | None = None

    @property
    def name(self) -> str:
        """The child's name as given in its spec."""
        return self._name

    @property
    def path(self) -> str:
        """Dotted path from the root supervisor (``venue_link.ws_reader``); used as metric label."""
        return self._path

    # -- liveness ---------------------------------------------------------------------------

    def progress(self) -> None:
        """Record that the child is alive and making progress.

        Called on hot paths (every message handled), so it only stores the current Trio time;
        the supervisor's watchdog does the comparison against the stall deadline.
        """
        self._last_progress = trio.current_time()

    @property
    def last_progress(self) -> float:
        """Trio time of the last :meth:`progress` call (or of the start of this incarnation)."""
        return self._last_progress

    # -- polite stop ------------------------------------------------------------------------

    @property
    def stop_requested(self) -> trio.Event:
        """Set when the supervisor asks this child to finish its in-flight work and return.

        After the child's shutdown deadline the supervisor cancels it, so a child should check
        this between units of work rather than ignore it.
        """
        return self._stop

    async def wait_stop(self) -> None:
        """Block until a polite stop is requested."""
        await self._stop.wait()

    def request_stop(self) -> None:
        """Ask the child to stop (idempotent). Normally called by the supervisor."""
        if self._stop.is_set():
            return
        self._stop.set()
        for hook in self._stop_hooks:
            hook()

    # -- mailboxes --------------------------------------------------------------------------

    def register_mailbox(self, name: str, channel: trio.MemoryReceiveChannel[Any]) -> None:
        """Make a bounded mailbox's depth visible in the supervisor's snapshot.

        Registering the same name again replaces the earlier channel (an actor that rebuilds its
        channels keeps one entry per mailbox).
        """
        self._mailboxes[name] = channel

    def mailbox_stats(self) -> tuple[MailboxStats, ...]:
        """Current depth of every registered mailbox, in registration order."""
        result: list[MailboxStats] = []
        for name, channel in self._mailboxes.items():
            stats = channel.statistics()
            result.append(
                MailboxStats(
                    name=name, depth=stats.current_buffer_used, capacity=stats.max_buffer_size
                )
            )
        return tuple(result)

    # -- supervisor plumbing (used by a nested supervisor running as this child) ---------------

    def _on_stop_requested(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when a polite stop is requested (immediately if it already was)."""
        self._stop_hooks.append(hook)
        if self._stop.is_set():
            hook()

    def _on_hard_cancel(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` just before the supervisor cancels this child outright."""
        self._cancel_hooks.append(hook)

    def _fire_hard_cancel(self) -> None:
        for hook in self._cancel_hooks:
            hook()
