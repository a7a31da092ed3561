"""The kill switch: one owner, published to readers, counted, audited.

Engaged means every new order is rejected (``reason=kill_switch``) and open orders are cancelled
(the order router watches :attr:`KillSwitch.state`).  Both the signal handler (SIGUSR1/SIGUSR2)
and the control port go through :meth:`KillSwitch.set`, so there is exactly one place the state
changes.

The state survives restarts: an engaged kill switch is written to ``<state_dir>/kill-switch``
before :meth:`KillSwitch.set` returns, and a runtime that starts and finds it engaged stays
halted until an operator releases it — a crash and a supervisor restart must not quietly resume
trading.  (A few bytes written synchronously: it must be durable the moment the operator is
told it is engaged, and it happens only on an operator's action.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from spark.core.published import Published
from spark.runtime.audit import AuditTrail
from spark.runtime.metrics import Metrics


class KillSwitch:
    def __init__(
        self,
        metrics: Metrics,
        audit: AuditTrail,
        *,
        engaged: bool = False,
        state_file: Path | None = None,
    ) -> None:
        self._metrics = metrics
        self._audit = audit
        self._file = state_file
        self.restored = False
        if not engaged and state_file is not None and _read(state_file):
            engaged = self.restored = True
        self.state: Published[bool] = Published(engaged)
        # Persistence hooks (the writer's kill_switch_events): (engaged, changed, actor, source).
        self.sinks: list[Callable[[bool, bool, str, str], None]] = []
        metrics.kill_switch_engaged.set(1 if engaged else 0)

    @property
    def engaged(self) -> bool:
        return self.state.value

    def set(self, engaged: bool, *, actor: str, source: str) -> bool:
        """Engage or release; returns whether the state changed.  Always audited."""
        changed = self.state.set(engaged)
        if self._file is not None:
            _write(self._file, engaged)
        self._metrics.kill_switch_engaged.set(1 if engaged else 0)
        self._audit.record(
            actor,
            "kill_switch.engage" if engaged else "kill_switch.release",
            "kill_switch",
            "changed" if changed else "unchanged",
            {"engaged": engaged, "source": source},
        )
        for sink in self.sinks:
            sink(engaged, changed, actor, source)
        return changed


def _read(path: Path) -> bool:
    try:
        return path.read_text().strip() == "engaged"
    except FileNotFoundError:
        return False


def _write(path: Path, engaged: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write("engaged\n" if engaged else "released\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
