"""The Trio supervisor: starts children in order, watches them, restarts or gives up.

Design in one paragraph: every child incarnation runs in its own wrapper task inside the
supervisor's nursery, under its own *shielded* cancel scope. The shield means nothing but the
supervisor can cancel a child, so even when the supervisor itself is cancelled from outside it can
still stop its children one by one in reverse start order (the writer last). The wrapper catches
``Exception`` from its own child only and records the exit; a single supervisor loop (the nursery
body) makes every decision - restart, back off, give up - using the sans-IO rules in
:mod:`spark.supervision.policy`. ``Cancelled``, ``KeyboardInterrupt`` and groups containing them
are never caught: they tear through the wrapper into the nursery like any other Trio error.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Sequence

import trio

from spark.supervision.context import ChildContext
from spark.supervision.errors import (
    ChildNotReady,
    ChildStalled,
    InvalidSupervisorConfig,
    RestartIntensityExceeded,
    SupervisionError,
    SupervisorAlreadyRunning,
    describe_error,
)
from spark.supervision.policy import (
    Backoff,
    BackoffState,
    Intensity,
    RestartWindow,
    restart_set,
    should_restart,
)
from spark.supervision.spec import ChildSpec, Restart, Strategy
from spark.supervision.stats import (
    ChildState,
    ChildStats,
    SupervisionObserver,
    SupervisorSnapshot,
)

logger = logging.getLogger("spark.supervision")

#: Extra time a parent grants a nested supervisor on top of the sum of its children's shutdown
#: deadlines (those run one after another), so that an orderly nested stop is never cut short.
NESTED_SHUTDOWN_MARGIN_S = 1.0


class _Slot:
    """A child position in the supervisor: its spec plus state that outlives incarnations."""

    __slots__ = (
        "backoff",
        "last_error",
        "launches",
        "pending",
        "restart_at",
        "restarts",
        "run",
        "spec",
        "started_at",
        "state",
    )

    def __init__(self, spec: ChildSpec, backoff: Backoff) -> None:
        self.spec = spec
        self.state = ChildState.STOPPED
        self.restarts = 0  # whole life of the supervisor object: only grows
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.run: _Run | None = None
        # Per supervisor run:
        self.backoff = BackoffState(backoff)
        self.launches = 0
        self.pending = False  # waiting to be (re)started
        self.restart_at = 0.0


class _Run:
    """One incarnation of a child: from launch until its wrapper task has finished."""

    __slots__ = (
        "ctx",
        "done",
        "ended_at",
        "error",
        "handled",
        "ready",
        "scope",
        "slot",
        "stall_error",
        "started_at",
        "stopping",
        "watchdog_scope",
    )

    def __init__(self, slot: _Slot, ctx: ChildContext) -> None:
        self.slot = slot
        self.ctx = ctx
        # Shielded: outside cancellation must not reach the child; only the supervisor stops it.
        self.scope = trio.CancelScope(shield=True)
        self.watchdog_scope = trio.CancelScope()
        self.done = trio.Event()
        self.ready = False
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.stopping = False  # the supervisor asked it to stop: its exit is not a crash
        self.handled = False  # its exit needs no (more) decision from the supervisor loop
        self.error: Exception | None = None
        self.stall_error: ChildStalled | None = None


class _ReadyStatus(trio.TaskStatus[None]):
    """The ``task_status`` handed to a child: readiness goes straight to the supervisor."""

    def __init__(self, supervisor: Supervisor, run: _Run) -> None:
        self._supervisor = supervisor
        self._run = run
        self._called = False

    def started(self, value: None = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._supervisor._on_ready(self._run)


class Supervisor:
    """An OTP-style supervisor for Trio.

    ``await run()`` starts the children one at a time in order (each must call
    ``task_status.started()`` before the next is launched), reports readiness once all are up,
    then restarts exited children according to their restart type and the strategy, with
    exponential backoff per child and a restart intensity limit per run. ``request_stop()`` makes
    ``run()`` stop all children in reverse order and return. When the intensity is exceeded
    ``run()`` stops all children and raises :class:`RestartIntensityExceeded`; when cancelled from
    outside it stops all children and lets ``Cancelled`` propagate.

    A supervisor object can run again after a run has ended (this is how a nested supervisor is
    restarted by its parent); each run starts with a fresh intensity window and backoff, while
    per-child restart counts and last errors accumulate for health reporting.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: Intensity | None = None,
        backoff: Backoff | None = None,
        observer: SupervisionObserver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not name or "." in name:
            raise InvalidSupervisorConfig(f"supervisor name must be non-empty, no '.': {name!r}")
        seen: set[str] = set()
        for spec in children:
            if spec.name in seen:
                raise InvalidSupervisorConfig(
                    f"supervisor {name!r}: duplicate child name {spec.name!r}"
                )
            seen.add(spec.name)
        self._name = name
        self._strategy = strategy
        self._intensity = intensity if intensity is not None else Intensity()
        self._backoff = backoff if backoff is not None else Backoff()
        self._observer = observer
        self._rng = rng if rng is not None else random.Random()
        self._specs = tuple(children)
        self._slots = [_Slot(spec, self._backoff) for spec in self._specs]
        # Run state, reset by _reset().
        self._running = False
        self._stop_requested = False
        self._brutal = False
        self._prefix = ""
        self._inherited_observer: SupervisionObserver | None = None
        self._window = RestartWindow(self._intensity)
        self._exits: deque[_Run] = deque()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._polite_scope: trio.CancelScope | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def children(self) -> tuple[ChildSpec, ...]:
        """Child specs in start order."""
        return self._specs

    @property
    def running(self) -> bool:
        return self._running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise the children until stopped politely (returns) or until giving up (raises).

        ``task_status.started()`` is called once every child has been started (a child that
        cannot start is handled like any crash, so readiness may take a few restarts). If a stop
        is requested before that, ``run()`` returns without reporting readiness.
        """
        await self._run(task_status, parent=None)

    def request_stop(self) -> None:
        """Stop the whole tree politely: children in reverse start order, each under its deadline.

        Idempotent and synchronous (safe from a signal-handling task). Applies to the current run;
        called before ``run()`` it makes the next run return at once.
        """
        self._stop_requested = True
        self._wake()

    def as_child_spec(
        self,
        *,
        name: str | None = None,
        restart: Restart = Restart.PERMANENT,
        shutdown_deadline_s: float | None = None,
    ) -> ChildSpec:
        """Describe this supervisor as a child of another one.

        Its failure (``RestartIntensityExceeded``) is an ordinary crash of that child in the
        parent. The default shutdown deadline is the sum of the children's deadlines (they are
        stopped one after another) plus :data:`NESTED_SHUTDOWN_MARGIN_S`. A parent's polite stop
        propagates down; if the parent's deadline runs out anyway, the remaining children are
        cancelled at once (still in reverse order) instead of being waited for.
        """
        if shutdown_deadline_s is None:
            shutdown_deadline_s = (
                sum(spec.shutdown_deadline_s for spec in self._specs) + NESTED_SHUTDOWN_MARGIN_S
            )

        async def entry(
            ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            await self._run(task_status, parent=ctx)

        return ChildSpec(
            name=self._name if name is None else name,
            entry=entry,
            restart=restart,
            shutdown_deadline_s=shutdown_deadline_s,
            nested=self,
        )

    def snapshot(self, *, path_prefix: str | None = None) -> SupervisorSnapshot:
        """Frozen view of all children (and nested supervisors' children) right now.

        Must be called from within Trio (uptime is measured on ``trio.current_time()``).
        ``path_prefix`` overrides the dotted prefix of child paths (a parent passes the nested
        supervisor's own path); by default it is the prefix of the current or last run.
        """
        prefix = self._prefix if path_prefix is None else path_prefix
        now = trio.current_time()
        return SupervisorSnapshot(
            name=self._name,
            strategy=self._strategy.value,
            running=self._running,
            taken_at=now,
            children=tuple(self._child_stats(slot, prefix, now) for slot in self._slots),
        )

    # -- the run -------------------------------------------------------------------------------

    async def _run(self, task_status: trio.TaskStatus[None], parent: ChildContext | None) -> None:
        if self._running:
            raise SupervisorAlreadyRunning(f"supervisor {self._name!r} is already running")
        self._running = True
        failure: SupervisionError | None = None
        try:
            self._reset(parent)
            if parent is not None:
                parent._on_stop_requested(self.request_stop)
                parent._on_hard_cancel(self._hard_cancel)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    failure = await self._supervise(task_status)
                finally:
                    # Reached on a polite stop, on giving up, and when cancelled from outside;
                    # children are shielded, so they are still there to be stopped in order.
                    await self._stop_all()
        finally:
            self._running = False
            self._stop_requested = False
            self._nursery = None
            self._polite_scope = None
        if failure is not None:
            # Raised outside the nursery so the parent sees the error itself, not a group.
            raise failure

    def _reset(self, parent: ChildContext | None) -> None:
        self._brutal = False
        self._prefix = parent.path if parent is not None else ""
        self._inherited_observer = parent._observer if parent is not None else None
        self._window = RestartWindow(self._intensity)
        self._exits = deque()
        self._wakeup = trio.Event()  # a stop requested before run() is kept in the flag
        for slot in self._slots:
            slot.backoff = BackoffState(self._backoff)
            slot.launches = 0
            slot.pending = False
            slot.run = None
            slot.state = ChildState.STOPPED

    async def _supervise(self, task_status: trio.TaskStatus[None]) -> SupervisionError | None:
        """The decision loop. Returns on a polite stop, or the error to raise when giving up."""
        now = trio.current_time()
        for slot in self._slots:
            slot.pending = True
            slot.restart_at = now
        announced = False
        while not self._stop_requested:
            if self._exits:
                failure = await self._handle_exit(self._exits.popleft())
                if failure is not None:
                    return failure
                continue
            due = self._next_due()
            if due is None:
                if not announced:
                    announced = True
                    logger.info("supervisor %s: all children started", self._label())
                    task_status.started()
                await self._wait_wakeup(math.inf)
            elif due.restart_at > trio.current_time():
                await self._wait_wakeup(due.restart_at)
            else:
                await self._launch(due)
        return None

    def _next_due(self) -> _Slot | None:
        """The pending child to start next: earliest restart time, ties in start order.

        Children restarted together (one_for_all / rest_for_one) share a restart time, so they
        come back in start order; an independent child in a long backoff holds up nobody.
        """
        best: _Slot | None = None
        for slot in self._slots:
            if slot.pending and (best is None or slot.restart_at < best.restart_at):
                best = slot
        return best

    async def _wait_wakeup(self, deadline: float) -> None:
        # Callers check their conditions immediately before calling, with no checkpoint in
        # between, so replacing the event here cannot lose a wake-up.
        self._wakeup = trio.Event()
        with trio.move_on_at(deadline):
            await self._wakeup.wait()

    def _wake(self) -> None:
        self._wakeup.set()

    # -- starting ------------------------------------------------------------------------------

    async def _launch(self, slot: _Slot) -> None:
        """Start one incarnation and wait until it is ready, has exited, or a stop is requested.

        Equivalent to ``nursery.start`` but the wrapper task never raises, so a child that fails
        before readiness is an ordinary crash. Exits of other children that happen meanwhile are
        queued and decided once this start has resolved; a child stuck before readiness is
        caught by its stall deadline, if it has one.
        """
        assert self._nursery is not None
        path = self._path(slot.spec.name)
        ctx = ChildContext(slot.spec.name, path=path)
        ctx._observer = self._effective_observer()
        run = _Run(slot, ctx)
        slot.run = run
        slot.pending = False
        slot.state = ChildState.STARTING
        if slot.launches > 0:
            slot.restarts += 1
            logger.info("restarting child %s (restart #%d)", path, slot.restarts)
            self._notify_restart(path)
        else:
            logger.debug("starting child %s", path)
        slot.launches += 1
        self._nursery.start_soon(self._child_main, run, name=f"supervised:{path}")
        if slot.spec.stall_deadline_s is not None:
            self._nursery.start_soon(self._watchdog, run, name=f"watchdog:{path}")
        while not (run.ready or run.done.is_set() or self._stop_requested):
            await self._wait_wakeup(math.inf)

    async def _child_main(self, run: _Run) -> None:
        """Wrapper task of one incarnation: runs the entry and records how it ended."""
        error: Exception | None = None
        completed = False
        try:
            try:
                with run.scope:
                    await run.slot.spec.entry(run.ctx, task_status=_ReadyStatus(self, run))
            except Exception as exc:
                # This child's failure is data for the supervisor. Only Exception (including an
                # ExceptionGroup of Exceptions) is caught; anything carrying Cancelled or
                # KeyboardInterrupt is a BaseException(Group) and propagates untouched.
                error = exc
            completed = True
        finally:
            if completed:
                self._record_exit(run, error)
            run.done.set()
            run.watchdog_scope.cancel()
            self._wake()

    def _on_ready(self, run: _Run) -> None:
        now = trio.current_time()
        run.ready = True
        run.started_at = now
        slot = run.slot
        slot.started_at = now
        path = self._path(slot.spec.name)
        if not run.stopping:
            slot.state = ChildState.RUNNING
        logger.info("child %s started", path)
        self._notify_started(path)
        self._wake()

    def _record_exit(self, run: _Run, error: Exception | None) -> None:
        slot = run.slot
        path = self._path(slot.spec.name)
        run.ended_at = trio.current_time()
        if run.stall_error is not None:
            if error is not None:
                run.stall_error.__context__ = error
            error = run.stall_error
        elif error is None and not run.ready and not run.stopping:
            error = ChildNotReady(child=path)
        run.error = error
        if error is not None:
            slot.last_error = describe_error(error)
        if run.stopping:
            run.handled = True
            if error is None:
                logger.info("child %s stopped", path)
                slot.state = ChildState.STOPPED
            else:
                logger.warning(
                    "child %s failed while stopping: %s",
                    path,
                    slot.last_error,
                    exc_info=error,
                )
                slot.state = ChildState.FAILED
        else:
            if error is None:
                logger.info("child %s returned", path)
                slot.state = ChildState.STOPPED
            else:
                logger.error("child %s crashed: %s", path, slot.last_error, exc_info=error)
                slot.state = ChildState.FAILED
            self._exits.append(run)
        self._notify_exit(path, error)

    async def _watchdog(self, run: _Run) -> None:
        """Cancel the incarnation if it goes longer than its stall deadline without progress."""
        stall = run.slot.spec.stall_deadline_s
        assert stall is not None
        with run.watchdog_scope:
            while not (run.stopping or run.done.is_set()):
                silent = trio.current_time() - run.ctx.last_progress
                if silent >= stall:
                    path = self._path(run.slot.spec.name)
                    run.stall_error = ChildStalled(
                        child=path, stall_deadline_s=stall, silent_for_s=silent
                    )
                    logger.error("child %s stalled (%.3fs without progress)", path, silent)
                    self._cancel_run(run)
                    return
                await trio.sleep_until(run.ctx.last_progress + stall)

    # -- deciding ------------------------------------------------------------------------------

    async def _handle_exit(self, run: _Run) -> SupervisionError | None:
        slot = run.slot
        if run.handled or slot.run is not run:
            return None  # superseded: it was taken down with a sibling or stopped on purpose
        run.handled = True
        error = run.error
        path = self._path(slot.spec.name)
        uptime = (
            run.ended_at - run.started_at
            if run.started_at is not None and run.ended_at is not None
            else 0.0
        )
        slot.backoff.note_exit(uptime)
        if not should_restart(slot.spec.restart, abnormal=error is not None):
            logger.info("child %s (%s) will not be restarted", path, slot.spec.restart.value)
            return None
        now = trio.current_time()
        if not self._window.record(now):
            failure = RestartIntensityExceeded(
                supervisor=self._label(),
                child=path,
                last_error=error,
                max_restarts=self._intensity.max_restarts,
                within_s=self._intensity.within_s,
            )
            failure.__cause__ = error
            logger.error("%s", failure)
            slot.state = ChildState.FAILED
            return failure
        index = self._slots.index(slot)
        group = [self._slots[i] for i in restart_set(self._strategy, len(self._slots), index)]
        restart_at = now + slot.backoff.next_delay(self._rng)
        for sibling in reversed(group):
            if sibling is slot or not self._is_active(sibling):
                continue
            await self._stop_child(sibling)
            if sibling.spec.restart is Restart.TEMPORARY:
                sibling.pending = False
            else:
                sibling.pending = True
                sibling.restart_at = restart_at
                sibling.state = ChildState.BACKING_OFF
        slot.pending = True
        slot.restart_at = restart_at
        slot.state = ChildState.BACKING_OFF
        logger.info(
            "child %s restarts in %.3fs (%s)",
            path,
            max(0.0, restart_at - trio.current_time()),
            self._strategy.value,
        )
        return None

    @staticmethod
    def _is_active(slot: _Slot) -> bool:
        """Running, starting, waiting to restart, or exited with the decision still pending."""
        return slot.pending or (slot.run is not None and not slot.run.handled)

    # -- stopping ------------------------------------------------------------------------------

    async def _stop_all(self) -> None:
        """Stop every child in reverse start order, each under its own deadline."""
        for slot in reversed(self._slots):
            if slot.pending:
                slot.pending = False
                slot.state = ChildState.STOPPED
            if slot.run is not None:
                await self._stop_child(slot)
        self._exits.clear()

    async def _stop_child(self, slot: _Slot) -> None:
        """Ask politely, wait (shielded) up to the shutdown deadline, then cancel and wait."""
        run = slot.run
        if run is None:
            return
        if run.done.is_set():
            run.handled = True  # an exit still queued is absorbed by this stop
            return
        run.stopping = True
        slot.state = ChildState.STOPPING
        path = self._path(slot.spec.name)
        deadline = slot.spec.shutdown_deadline_s
        logger.info("stopping child %s (deadline %gs)", path, deadline)
        run.ctx.request_stop()
        if not self._brutal and deadline > 0:
            with trio.CancelScope(shield=True) as polite:
                self._polite_scope = polite
                with trio.move_on_after(deadline):
                    await run.done.wait()
            self._polite_scope = None
        if not run.done.is_set():
            if not self._brutal and deadline > 0:
                logger.warning("child %s did not stop within %gs; cancelling it", path, deadline)
            self._cancel_run(run)
            with trio.CancelScope(shield=True):
                await run.done.wait()

    def _cancel_run(self, run: _Run) -> None:
        # Tell a nested supervisor first, so it cancels its own children instead of waiting on
        # their polite deadlines (its shutdown is shielded and would otherwise ignore us).
        run.ctx._fire_hard_cancel()
        run.scope.cancel()

    def _hard_cancel(self) -> None:
        """Our parent is cancelling us: skip remaining polite waits, cancel children directly."""
        self._brutal = True
        if self._polite_scope is not None:
            self._polite_scope.cancel()

    # -- reporting -----------------------------------------------------------------------------

    def _child_stats(self, slot: _Slot, prefix: str, now: float) -> ChildStats:
        path = f"{prefix}.{slot.spec.name}" if prefix else slot.spec.name
        run = slot.run
        live = run is not None and not run.done.is_set()
        uptime = 0.0
        if run is not None and live and run.started_at is not None:
            uptime = now - run.started_at
        nested = slot.spec.nested
        return ChildStats(
            name=slot.spec.name,
            path=path,
            state=slot.state,
            restarts=slot.restarts,
            last_error=slot.last_error,
            started_at=slot.started_at,
            uptime_s=uptime,
            mailboxes=run.ctx.mailbox_stats() if run is not None and live else (),
            children=nested.snapshot(path_prefix=path).children if nested is not None else (),
        )

    def _path(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def _label(self) -> str:
        return self._prefix or self._name

    def _effective_observer(self) -> SupervisionObserver | None:
        return self._observer if self._observer is not None else self._inherited_observer

    def _notify_started(self, path: str) -> None:
        observer = self._effective_observer()
        if observer is not None:
            try:
                observer.on_started(path)
            except Exception:
                logger.exception("supervision observer failed in on_started(%s)", path)

    def _notify_exit(self, path: str, error: BaseException | None) -> None:
        observer = self._effective_observer()
        if observer is not None:
            try:
                observer.on_exit(path, error)
            except Exception:
                logger.exception("supervision observer failed in on_exit(%s)", path)

    def _notify_restart(self, path: str) -> None:
        observer = self._effective_observer()
        if observer is not None:
            try:
                observer.on_restart(path)
            except Exception:
                logger.exception("supervision observer failed in on_restart(%s)", path)
