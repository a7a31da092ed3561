"""Named failures of the supervision package.

Every class carries a stable ``reason`` code so that logs, metrics and the health endpoint
can key on it without parsing messages. Messages contain child names and exception class
names/messages only; a child's exception text is the child's own responsibility.
"""

from __future__ import annotations

from typing import ClassVar


def describe_error(error: BaseException) -> str:
    """Render an exception as the short ``ExcType: message`` form used in stats and logs."""
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


class SupervisionError(Exception):
    """Base of everything this package raises on purpose."""

    reason: ClassVar[str] = "supervision_error"


class RestartIntensityExceeded(SupervisionError):
    """A supervisor saw more restarts than its intensity allows and gave up.

    Raised by ``Supervisor.run`` after all of its children have been stopped. The parent (or
    the runtime, for the root) decides what happens next: for a nested supervisor this is an
    ordinary crash of that child. ``last_error`` is the crash that tipped the balance (also
    chained as ``__cause__``); it is ``None`` when the last exit was a permanent child
    returning normally, which also counts as a restart.
    """

    reason: ClassVar[str] = "restart_intensity_exceeded"

    def __init__(
        self,
        *,
        supervisor: str,
        child: str,
        last_error: BaseException | None,
        max_restarts: int,
        within_s: float,
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.last_error = last_error
        self.max_restarts = max_restarts
        self.within_s = within_s
        cause = describe_error(last_error) if last_error is not None else "returned normally"
        super().__init__(
            f"supervisor {supervisor!r} exceeded its restart intensity "
            f"(more than {max_restarts} restart(s) within {within_s:g}s); "
            f"last exit: child {child!r} ({cause})"
        )


class ChildStalled(SupervisionError):
    """A child with a stall deadline did not call ``ctx.progress()`` in time.

    The supervisor cancels the child and records this error as its crash, so a wedged actor is
    restarted exactly like one that raised.
    """

    reason: ClassVar[str] = "child_stalled"

    def __init__(self, *, child: str, stall_deadline_s: float, silent_for_s: float) -> None:
        self.child = child
        self.stall_deadline_s = stall_deadline_s
        self.silent_for_s = silent_for_s
        super().__init__(
            f"child {child!r} made no progress for {silent_for_s:.3f}s "
            f"(stall deadline {stall_deadline_s:g}s)"
        )


class ChildNotReady(SupervisionError):
    """A child returned without ever calling ``task_status.started()``.

    Mirrors ``trio.Nursery.start``, which also treats this as an error: a child that never became
    ready cannot be relied on by the children started after it.
    """

    reason: ClassVar[str] = "child_not_ready"

    def __init__(self, *, child: str) -> None:
        self.child = child
        super().__init__(f"child {child!r} returned without calling task_status.started()")


class InvalidSupervisorConfig(SupervisionError, ValueError):
    """The supervisor was built with inconsistent children (e.g. duplicate names)."""

    reason: ClassVar[str] = "invalid_supervisor_config"


class SupervisorAlreadyRunning(SupervisionError, RuntimeError):
    """``run()`` was called on a supervisor that is already running.

    A supervisor object may be run again after its previous run ended (that is how a nested
    supervisor is restarted by its parent), but never twice at the same time.
    """

    reason: ClassVar[str] = "supervisor_already_running"
