"""The circuit breaker actor: owns :class:`spark.core.breaker.Breaker`.

The router asks it before every order call (:meth:`BreakerActor.allows_call`) and reports every
outcome (:meth:`BreakerActor.record`).  Both are synchronous calls on the breaker's owner — the
router and the breaker share one Trio thread, so each call is one atomic step of the state
machine, like handling a message, without a round trip through a channel on the hot path.
The actor's own task applies time-driven transitions (cooldown → half-open), SIGHUP reloads,
and is the place operators' force-open/close land.  Every transition is published as a
snapshot, counted in ``spark_circuit_breaker_state`` / ``spark_circuit_breaker_trips_total``,
audited and written as a ``breaker_events`` row.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import trio

from spark.actors.outlet import RecordOutlet
from spark.config import SparkConfig
from spark.core.breaker import Breaker, BreakerSnapshot, BreakerState, Outcome, Transition
from spark.core.clock import WallClock
from spark.core.published import Published
from spark.runtime.audit import AuditTrail
from spark.runtime.metrics import Metrics
from spark.storage.records import BreakerEvent
from spark.supervision import ChildContext

log = logging.getLogger("spark.actors.breaker")

POLL_INTERVAL_S = 0.25


class BreakerActor:
    def __init__(
        self,
        config: Published[SparkConfig],
        metrics: Metrics,
        audit: AuditTrail,
        outlet: RecordOutlet,
        clock: WallClock,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._audit = audit
        self._outlet = outlet
        self._clock = clock
        self.core = Breaker(config.value.circuit_breaker)
        self.view: Published[BreakerSnapshot] = Published(self.core.snapshot())
        metrics.circuit_breaker_state.set(self.core.metric_value)

    # -- the router's synchronous calls ------------------------------------------------------

    def allows_call(self, now: float) -> bool:
        allowed = self.core.allows_call(now)
        self._publish()
        return allowed

    def record(self, outcome: Outcome, duration_s: float, now: float) -> None:
        self.core.record(outcome, duration_s, now)
        self._publish()

    # -- operators (BreakerApi for the control port) -----------------------------------------

    def state_name(self) -> str:
        return self.core.state.value

    def snapshot_json(self) -> dict[str, Any]:
        snap = self.core.snapshot(trio.current_time())
        last = snap.last_transition
        return {
            "state": snap.state.value,
            "dry_run": snap.dry_run,
            "trips": snap.trips,
            "calls_in_window": snap.calls,
            "failures_in_window": snap.failures,
            "slow_calls_in_window": snap.slow_calls,
            "failure_rate": round(snap.failure_rate, 4),
            "slow_call_rate": round(snap.slow_call_rate, 4),
            "forced_by": snap.forced_by,
            "last_transition": None if last is None else {
                "from": last.from_state.value, "to": last.to_state.value,
                "reason": last.reason, "actor": last.actor,
            },
        }

    async def force(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]:
        now = trio.current_time()
        if state == "open":
            self.core.force_open(now, actor)
        else:
            self.core.force_close(now, actor)
        self._publish()
        return self.snapshot_json()

    # -- the actor ---------------------------------------------------------------------------

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        seen = self._config.version
        while not ctx.stop_requested.is_set():
            with trio.move_on_after(POLL_INTERVAL_S):
                await ctx.stop_requested.wait()
            ctx.progress()
            if self._config.version != seen:
                seen = self._config.version
                self.core.reconfigure(self._config.value.circuit_breaker)
            self.core.poll(trio.current_time())
            self._publish()

    def _publish(self) -> None:
        transitions = self.core.take_transitions()
        if not transitions:
            return
        for t in transitions:
            self._on_transition(t)
        self.view.set(self.core.snapshot())
        self._metrics.circuit_breaker_state.set(self.core.metric_value)

    def _on_transition(self, t: Transition) -> None:
        if t.to_state is BreakerState.OPEN:
            self._metrics.circuit_breaker_trips_total.inc()
        actor = t.actor or "circuit_breaker"
        level = logging.WARNING if t.to_state is not BreakerState.CLOSED else logging.INFO
        log.log(level, "circuit breaker %s -> %s (%s)", t.from_state.value, t.to_state.value,
                t.reason)
        self._audit.record(actor, "circuit_breaker.transition", "circuit_breaker", t.to_state.value,
                           {"from": t.from_state.value, "reason": t.reason, "detail": t.detail})
        self._outlet.post(BreakerEvent(
            at_ms=self._clock.now_ms(), from_state=t.from_state.value, to_state=t.to_state.value,
            reason=t.reason, source=actor, ingress=trio.current_time(),
        ))
