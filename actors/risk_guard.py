"""The risk guard: every intent passes here before the order router sees it.

Around the pure :func:`spark.core.risk.evaluate`: this actor assembles the
:class:`~spark.core.risk.RiskContext` from the snapshots others publish (kill switch, breaker,
drift gate, reference prices, the router's open orders and positions, exchange filters), adds
what it alone knows — the intents it approved that the router has not taken in yet, and its own
rolling count of approvals — evaluates, and forwards approved intents to the router.

It is also the owner of the runtime's trading state (ACTIVE / REDUCING / HALTED), derived with
:func:`spark.core.trading_state.derive` whenever an input changes and before every decision, so
the state it publishes is the one it decides with.

Every decision is counted (``spark_order_rejections_total{reason}``), written to the
``risk_decisions`` table, and rejections go to the audit trail.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import attrs
import trio

from spark.actors.breaker import BreakerActor
from spark.actors.intent_log import IntentWrite
from spark.actors.messages import PriceBoard
from spark.actors.outlet import RecordOutlet
from spark.actors.reply import Reply
from spark.actors.router import RouterView, Submit
from spark.config import SparkConfig
from spark.core import risk
from spark.core.clock import WallClock
from spark.core.intents import OrderIntent
from spark.core.published import Published
from spark.core.reconcile import ReconciliationEntry
from spark.core.trading_state import TradingState, TradingStatus, derive
from spark.runtime.audit import AuditTrail
from spark.runtime.metrics import Metrics
from spark.storage.records import RiskDecision as RiskDecisionRecord
from spark.supervision import ChildContext

log = logging.getLogger("spark.actors.risk_guard")

INBOX_SIZE = 256
PRICE_STALE_AFTER_S = 10.0


@attrs.frozen
class PlaceRequest:
    intent: OrderIntent
    actor: str
    reply: Reply | None = attrs.field(default=None, eq=False)
    #: The intent's write-ahead record, begun at intake; voided here on a rejection.
    write: IntentWrite | None = attrs.field(default=None, eq=False)


class RiskGuard:
    def __init__(
        self,
        *,
        config: Published[SparkConfig],
        kill_switch: Published[bool],
        breaker: BreakerActor,
        gate_open: Published[bool] | None,
        prices: Published[PriceBoard] | None,
        router_view: Published[RouterView],
        router_reconciliation: Published[tuple[ReconciliationEntry, ...]],
        router_inbox: trio.MemorySendChannel[Any],
        outlet: RecordOutlet,
        metrics: Metrics,
        audit: AuditTrail,
        clock: WallClock,
        reconciliation_mode: str = "halted",
    ) -> None:
        self._config = config
        self._kill_switch = kill_switch
        self._breaker = breaker
        # Narrow inputs, published apart from the full views: the drift gate's open/closed and
        # the router's reconciliation entries change rarely; the views change with every order
        # and fill, and the trading state derives from none of that.
        self._gate_open = gate_open
        self._router_reconciliation = router_reconciliation
        self._prices = prices
        self._router_view = router_view
        self._router = router_inbox
        self._outlet = outlet
        self._metrics = metrics
        self._audit = audit
        self._clock = clock
        self._reconciliation_mode = reconciliation_mode
        self._send, self.inbox = trio.open_memory_channel[PlaceRequest](INBOX_SIZE)
        self._recent = risk.RollingCounter()
        self._seq = 0
        self._pending: dict[int, OrderIntent] = {}
        self._inputs_changed = trio.Event()
        self.trading: Published[TradingStatus] = Published(self._derive())
        metrics.trading_state.set(self.trading.value.state.metric_value)

    def sender(self) -> trio.MemorySendChannel[PlaceRequest]:
        return self._send.clone()

    # -- trading state ---------------------------------------------------------------------

    def _derive(self) -> TradingStatus:
        snap = self._breaker.view.value
        pending = bool(self._router_reconciliation.value)
        return derive(
            self._kill_switch.value,
            snap.state,
            self._gate_open.value if self._gate_open is not None else True,
            pending,
            self._reconciliation_mode,
            breaker_dry_run=snap.dry_run,
        )

    def refresh_trading_state(self) -> TradingStatus:
        status = self._derive()
        if self.trading.set(status):
            self._metrics.trading_state.set(status.state.metric_value)
            level = logging.INFO if status.state is TradingState.ACTIVE else logging.WARNING
            log.log(level, "trading state %s (%s)", status.state.value,
                    ", ".join(status.reasons) or "all clear")
        return status

    def _note_input_changed(self) -> None:
        self._inputs_changed.set()

    async def _watch_inputs(self) -> None:
        """Re-derive the trading state whenever one of its inputs publishes a change."""
        sources: list[Published[Any]] = [self._kill_switch, self._breaker.view,
                                         self._router_reconciliation]
        if self._gate_open is not None:
            sources.append(self._gate_open)
        for source in sources:
            source.add_listener(self._note_input_changed)
        try:
            while True:
                await self._inputs_changed.wait()
                self._inputs_changed = trio.Event()
                self.refresh_trading_state()
        finally:
            for source in sources:
                source.remove_listener(self._note_input_changed)

    # -- the actor ---------------------------------------------------------------------------

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx.register_mailbox("risk_guard", self.inbox)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_inputs)
            task_status.started()
            while not ctx.stop_requested.is_set():
                # Only the wait is bounded; a decision is never cancelled halfway.
                request: PlaceRequest | None = None
                with trio.move_on_after(1.0):
                    request = await self.inbox.receive()
                if request is not None:
                    await self._decide(request)
                ctx.progress()
            nursery.cancel_scope.cancel()

    async def _decide(self, request: PlaceRequest) -> None:
        cfg = self._config.value
        now_s = trio.current_time()
        now_ms = self._clock.now_ms()
        view = self._router_view.value
        # Approvals the router has already taken in are in its view; drop them here.
        for seq in [s for s in self._pending if s <= view.accepted_seq]:
            del self._pending[seq]
        status = self.refresh_trading_state()
        positions: dict[str, Decimal | None] = dict(view.positions)
        for intent in self._pending.values():
            # Count approved-but-not-yet-booked orders as if filled: the strict reading.
            current = positions.get(intent.symbol)
            if current is not None:
                positions[intent.symbol] = current + intent.signed_quantity
        ctx = risk.RiskContext(
            trading_state=status.state,
            kill_switch=self._kill_switch.value,
            breaker_state=self._breaker.view.value.state,
            gate_open=self._gate_open.value if self._gate_open is not None else True,
            reference_prices=self._reference_prices(cfg, now_s),
            rules=dict(view.rules),
            positions=positions,
            open_orders=view.open_orders + len(self._pending),
            recent_orders=self._recent.count(now_s),
            breaker_dry_run=self._breaker.view.value.dry_run,
        )
        decision = risk.evaluate(request.intent, ctx, cfg.risk, now_ms, now_s)
        intent = request.intent
        record = RiskDecisionRecord(
            client_order_id=intent.client_order_id, symbol=intent.symbol,
            approved=decision.approved, reason=decision.reason or "approved",
            detail=decision.detail, decided_ms=now_ms, ingress=now_s,
        )
        if not decision.approved:
            if request.write is not None:
                request.write.discard()
            await self._outlet.send(record)
            reason = decision.reason or "rejected"
            self._metrics.order_rejections_total.labels(reason).inc()
            self._audit.record(request.actor, "order.reject", intent.client_order_id, reason,
                               {"symbol": intent.symbol, "detail": decision.detail})
            log.info("order %s rejected: %s (%s)", intent.client_order_id, reason,
                     decision.detail)
            if request.reply is not None:
                request.reply.set({"rejected": True, "reason": reason,
                                   "detail": decision.detail,
                                   "clientOrderId": intent.client_order_id})
            return
        self._recent.add(now_s)
        self._seq += 1
        self._pending[self._seq] = intent
        # The router persists the approval once the order is on its way: the writer's
        # commit must not compete with the send.
        await self._router.send(Submit(intent, self._seq, now_s, request.reply, record,
                                       request.write))

    def _reference_prices(self, cfg: SparkConfig, now_s: float) -> dict[str, Decimal | None]:
        if self._prices is None:
            return {}
        board = self._prices.value
        out: dict[str, Decimal | None] = {}
        for symbol in cfg.risk.whitelist:
            quote = board.quotes.get(symbol)
            fresh = quote is not None and now_s - quote.received_at <= PRICE_STALE_AFTER_S
            out[symbol] = quote.mid if fresh and quote is not None else None
        return out


