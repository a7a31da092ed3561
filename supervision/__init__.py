"""spark.supervision — see docs/ARCHITECTURE.md."""

if __name__ != "spark.supervision":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.supervision'; import it under that name")

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
from spark.supervision.spec import ChildEntry, ChildSpec, Restart, SnapshotSource, Strategy
from spark.supervision.stats import (
    ChildState,
    ChildStats,
    MailboxStats,
    SupervisionObserver,
    SupervisorSnapshot,
)
from spark.supervision.supervisor import NESTED_SHUTDOWN_MARGIN_S, Supervisor

__all__ = [
    "NESTED_SHUTDOWN_MARGIN_S",
    "Backoff",
    "BackoffState",
    "ChildContext",
    "ChildEntry",
    "ChildNotReady",
    "ChildSpec",
    "ChildStalled",
    "ChildState",
    "ChildStats",
    "Intensity",
    "InvalidSupervisorConfig",
    "MailboxStats",
    "Restart",
    "RestartIntensityExceeded",
    "RestartWindow",
    "SnapshotSource",
    "Strategy",
    "SupervisionError",
    "SupervisionObserver",
    "Supervisor",
    "SupervisorAlreadyRunning",
    "SupervisorSnapshot",
    "describe_error",
    "restart_set",
    "should_restart",
]
