"""The drift gate actor: live fills vs. their paper shadow → an open/closed gate.

A thin shell around :class:`spark.core.drift.DriftGate` (which holds every decision; read its
docstring for the why). The actor:

* takes :class:`~spark.actors.messages.ShadowOrder` (a live order was sent: book its paper
  twin), :class:`~spark.actors.messages.LiveFill` (one deduplicated fill),
  :class:`~spark.actors.messages.ShadowDone` and :class:`~spark.actors.messages.ForceGate` on its
  bounded inbox, in order;
* publishes an immutable :class:`~spark.actors.messages.GateView` (``Published[GateView]``) that
  the risk guard and the health route read;
* keeps ``spark_drift_price_bps``, ``spark_paper_live_pnl_delta``, ``spark_drift_gate_open``,
  ``spark_drift_gate_close_total`` and ``spark_drift_decision_seconds`` (from the fill's
  ``received_at`` — when its frame came off the socket — to the decision) current;
* hands every transition (threshold close, recovery, operator action, reload) to ``audit``, a
  plain ``Callable[[dict], None]`` from the runtime, which turns it into an audit row and a
  writer ``GateEvent``;
* applies a reloaded ``[drift_gate]`` when ``config`` (the runtime's ``Published[SparkConfig]``)
  changes (SIGHUP).

The core object lives on the actor, not in one incarnation of ``run``: a crash and restart must
not reopen a gate that drift (or an operator) closed.

Operator actions: :meth:`DriftGateActor.force_open` / :meth:`DriftGateActor.force_close` apply at
once and return the new view (the core is synchronous and Trio runs one task at a time, so this
cannot interleave with the handling of a fill), or send :class:`ForceGate` on the inbox to have
them applied in order with the fills.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import trio

from spark.actors.messages import DriftInput, ForceGate, GateView, LiveFill, ShadowDone, ShadowOrder
from spark.actors.streamio import race
from spark.config.schema import DriftGateConfig, SparkConfig
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.core.drift import DriftGate, GateTransition, Observation
from spark.core.published import Published
from spark.core.userdata_errors import DriftInputError
from spark.runtime.metrics import Metrics
from spark.supervision import ChildContext

__all__ = ["DriftGateActor", "transition_record"]

log = logging.getLogger("spark.actors.drift_gate")

AuditSink = Callable[[dict[str, Any]], None]


def transition_record(t: GateTransition) -> dict[str, Any]:
    """A gate transition as a flat, JSON-friendly dict for the audit trail (amounts as str)."""
    record: dict[str, Any] = {
        "kind": "drift_gate",
        "at_ms": t.at_ms,
        "previous": t.previous.value,
        "state": t.state.value,
        "cause": t.cause.value,
        "detail": t.detail,
        "operator": t.operator,
    }
    obs: Observation | None = t.observation
    if obs is not None:
        record.update({
            "client_order_id": obs.client_order_id,
            "symbol": obs.symbol,
            "side": obs.side,
            "fill_price": str(obs.fill_price),
            "paper_price": str(obs.paper_price),
            "drift_bps": str(obs.drift_bps),
            "window_pnl_delta": str(obs.window_pnl_delta),
        })
    return record


class DriftGateActor:
    """The drift gate actor (see the module docstring)."""

    def __init__(
        self,
        config: DriftGateConfig,
        metrics: Metrics,
        *,
        audit: AuditSink,
        view: Published[GateView] | None = None,
        spark_config: Published[SparkConfig] | None = None,
        clock: WallClock = SYSTEM_CLOCK,
        inbox_size: int = 256,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._audit = audit
        self._spark_config = spark_config
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self.gate = DriftGate(config)
        self.view: Published[GateView] = view if view is not None else Published(GateView())
        #: Only whether the gate is open (what the trading state derives from): the view
        #: changes with every fill's drift, this only on a transition.
        self.is_open: Published[bool] = Published(self.view.value.is_open)
        # Bounded on purpose: the router blocks (backpressure) rather than lose a fill; the
        # gate's work per message is microseconds, so it only fills if the actor is down.
        self.inbox, self._receive = trio.open_memory_channel[DriftInput](inbox_size)
        self._changed_at_ms: int | None = None
        self._cause: str | None = None
        self._seen_closes = 0
        self._waiting: trio.CancelScope | None = None  # the main loop's receive, when idle
        self._reload_due = False
        self.decisions = 0
        self._publish()

    # -- operator ------------------------------------------------------------------------------

    async def force_open(self, operator: str, reason: str = "") -> GateView:
        """Open now and unlatch (audited)."""
        self._apply(ForceGate(True, operator, reason))
        await trio.lowlevel.checkpoint()
        return self.view.value

    async def force_close(self, operator: str, reason: str = "") -> GateView:
        """Close now and latch: only an operator reopens it (audited)."""
        self._apply(ForceGate(False, operator, reason))
        await trio.lowlevel.checkpoint()
        return self.view.value

    def snapshot_json(self) -> dict[str, Any]:
        """The gate as the control port shows it (``GET /api/private/drift-gate``)."""
        view = self.view.value
        return {
            "state": view.state,
            "forced": view.forced,
            "enabled": view.enabled,
            "cause": view.cause,
            "last_drift_bps": None if view.last_drift_bps is None else str(view.last_drift_bps),
            "pnl_delta": str(view.pnl_delta),
            "window_pnl_delta": str(view.window_pnl_delta),
            "close_total": view.close_total,
            "changed_at_ms": view.changed_at_ms,
        }

    async def force(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]:
        """The operator route: open (and unlatch) or close (latched) now, audited."""
        if state == "open":
            await self.force_open(actor, "control port")
        else:
            await self.force_close(actor, "control port")
        return self.snapshot_json()

    # -- the actor -----------------------------------------------------------------------------

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx.register_mailbox("inbox", self._receive)
        self._reload()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_stop_and_reload, ctx)
            task_status.started()
            receive = self._receive
            while not ctx.stop_requested.is_set():
                ctx.progress()
                if self._reload_due:
                    self._reload_due = False
                    self._reload()
                try:
                    message = receive.receive_nowait()
                except trio.WouldBlock:
                    waited = await self._wait()
                    if waited is None:  # a heartbeat, a stop request or a reload
                        self._reload()
                        continue
                    message = waited
                self._apply(message)
            nursery.cancel_scope.cancel()
        # Polite stop: decide what is already queued (it is cheap), then return.
        while True:
            try:
                self._apply(receive.receive_nowait())
            except trio.WouldBlock:
                return

    async def _wait(self) -> DriftInput | None:
        """The next message, or None after a heartbeat or when the watcher interrupts.

        One plain receive per message: the rare events (stop, reload) are watched by a task
        of their own that cancels this wait, instead of a race of tasks per message."""
        with trio.move_on_after(self._heartbeat_s) as scope:
            self._waiting = scope
            try:
                return await self._receive.receive()
            finally:
                self._waiting = None
        return None

    async def _watch_stop_and_reload(self, ctx: ChildContext) -> None:
        """Interrupt the main loop's wait on a stop request or a config reload."""
        cfg = self._spark_config
        seen = cfg.version if cfg is not None else 0

        async def reloaded() -> None:
            nonlocal seen
            if cfg is None:
                await trio.sleep_forever()
            else:
                seen, _ = await cfg.wait_changed(seen)

        while True:
            winner = await race([ctx.wait_stop, reloaded])
            self._reload_due = True
            if self._waiting is not None:
                self._waiting.cancel()
            if winner == 0:
                return

    def _apply(self, message: DriftInput) -> None:
        gate = self.gate
        try:
            if isinstance(message, LiveFill):
                self._fill(message)
                return
            if isinstance(message, ShadowOrder):
                gate.on_order_sent(message.client_order_id, message.symbol, message.side,
                                   message.reference_price, message.at_ms, message.quantity)
            elif isinstance(message, ShadowDone):
                gate.on_order_done(message.client_order_id)
            elif isinstance(message, ForceGate):
                now_ms = self._clock.now_ms()
                if message.open:
                    t = gate.force_open(now_ms, message.operator, message.reason)
                else:
                    t = gate.force_close(now_ms, message.operator, message.reason)
                self._transition(t)
        except DriftInputError as exc:
            # A bad input (no reference price, zero quantity) is the sender's bug; it must not
            # take the gate down with it.
            log.error("drift gate: ignoring %s: %s", type(message).__name__, exc)
        self._publish()

    def _fill(self, fill: LiveFill) -> None:
        gate = self.gate
        try:
            update = gate.on_fill(fill.client_order_id, fill.price, fill.quantity, fill.at_ms)
        except DriftInputError as exc:
            log.error("drift gate: ignoring fill of %s: %s", fill.client_order_id, exc)
            return
        if fill.done:
            gate.on_order_done(fill.client_order_id)
        if update.observation is not None:
            self.decisions += 1
            self._metrics.drift_decision_seconds.observe(
                max(0.0, trio.current_time() - fill.received_at))
        if update.transition is not None:
            self._transition(update.transition)
        self._publish()

    def _transition(self, t: GateTransition) -> None:
        self._changed_at_ms = t.at_ms
        self._cause = t.cause.value
        level = logging.WARNING if t.state.value == "closed" else logging.INFO
        log.log(level, "drift gate %s -> %s (%s): %s", t.previous.value, t.state.value,
                t.cause.value, t.detail)
        try:
            self._audit(transition_record(t))
        except Exception:
            log.exception("drift gate: audit sink failed (transition kept)")

    def _reload(self) -> None:
        if self._spark_config is None:
            return
        new = self._spark_config.value.drift_gate
        if new == self._config:
            return
        self._config = new
        log.info("drift gate: [drift_gate] reloaded")
        t = self.gate.reconfigure(new, self._clock.now_ms())
        if t is not None:
            self._transition(t)
        self._publish()

    def _publish(self) -> None:
        gate = self.gate
        m = gate.metrics()
        metrics = self._metrics
        if m.price_bps is not None:
            metrics.drift_price_bps.set(float(m.price_bps))
        metrics.paper_live_pnl_delta.set(float(m.pnl_delta))
        metrics.drift_gate_open.set(m.gate_open)
        if m.close_total > self._seen_closes:
            metrics.drift_gate_close_total.inc(m.close_total - self._seen_closes)
            self._seen_closes = m.close_total
        self.view.set(GateView(
            state=gate.state.value,
            forced=gate.latched,
            last_drift_bps=m.price_bps,
            pnl_delta=m.pnl_delta,
            window_pnl_delta=gate.window_pnl_delta,
            close_total=m.close_total,
            cause=self._cause,
            changed_at_ms=self._changed_at_ms,
            enabled=self._config.enabled,
        ))
        self.is_open.set(self.view.value.is_open)
