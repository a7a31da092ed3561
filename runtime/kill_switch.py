"""The kill switch: one owner, published to readers, counted, audited.

Engaged means every new order is rejected (``reason=kill_switch``) and open orders are cancelled
(the order router watches :attr:`KillSwitch.state`).  Both the signal handler (SIGUSR1/SIGUSR2)
and the control port go through :meth:`KillSwitch.set`, so there is exactly one place the state
changes.
"""

from __future__ import annotations

from collections.abc import Callable

from spark.core.published import Published
from spark.runtime.audit import AuditTrail
from spark.runtime.metrics import Metrics


class KillSwitch:
    def __init__(self, metrics: Metrics, audit: AuditTrail, *, engaged: bool = False) -> None:
        self._metrics = metrics
        self._audit = audit
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
