"""The order router: owns every order's state; places, cancels and reconciles; never sends twice.

One task (:meth:`OrderRouter.run`'s loop) owns the :class:`~spark.core.orders.OrderTable` and is
the only code that changes it.  Everything else reaches it through its inbox:

- approved intents from the risk guard (:class:`Submit`), operator confirms and cancels;
- user-data batches and stream up/down from the user-data reader;
- the results of its own venue calls, which run in worker tasks so that a slow venue never stops
  the inbox (at most ``exchange.max_in_flight`` at once) and come back as messages.

Invariants kept here (DESIGN.md):

2. an order is sent at most once: its ``clientOrderId`` is fixed and fsync'd to the intent log
   before the first attempt; a timeout / 5xx / 503 / -1007 puts it in ``UNKNOWN`` and the next
   thing the router does about it is ask the venue (``origClientOrderId``); it resends only when
   the venue says the order does not exist *and* the first request can no longer be accepted;
3. every execution report is applied and persisted once: the order state machine drops
   duplicates by execution id and counts fills by trade id, and the router sends the writer one
   ``ExecutionRecord`` per new report and one ``TradeRecord`` per new fill;
4. after every (re)connect the router reconciles with the venue before new orders go out.

The decisions (transitions, what a venue answer means, reconciliation) are the sans-IO cores in
``spark.core``; this module moves messages and does the I/O.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs
import trio

from spark.actors.breaker import BreakerActor
from spark.actors.intent_log import IntentLog, IntentWrite, LoggedIntent
from spark.actors.messages import (
    LiveFill,
    PriceBoard,
    ShadowOrder,
    StreamDown,
    StreamUp,
    UserEvents,
)
from spark.actors.outlet import RecordOutlet
from spark.actors.reply import Reply
from spark.actors.venue_orders import VenueOrders
from spark.config import SparkConfig
from spark.core import orders as om
from spark.core import reconcile as rc
from spark.core.breaker import Outcome, classify_error
from spark.core.client_ids import is_ours
from spark.core.clock import WallClock
from spark.core.intents import OrderIntent
from spark.core.published import Published
from spark.core.risk import SymbolRules
from spark.exchange.errors import (
    ExchangeError,
    UnknownExecutionStatus,
    VenueRejected,
)
from spark.exchange.events import ExecutionEvent
from spark.exchange.inflight import slot
from spark.exchange.models import OrderStatus, Trade
from spark.runtime.audit import AuditTrail
from spark.runtime.metrics import Metrics
from spark.storage.records import (
    ExecutionRecord,
    OrderUpdate,
    RiskDecision,
    TradeRecord,
)
from spark.supervision import ChildContext

log = logging.getLogger("spark.actors.router")

INBOX_SIZE = 1024  # commands and batches; user data is batched, so this is many events
QUERY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SEND_DEADLINE_MARGIN_MS = 1000
TICK_S = 0.5
CONFIRM_DELAY_S = 1.0
ENTRY_ID_MAX = 64  # the control port's ack route accepts ids up to this length


# -- inbox messages ------------------------------------------------------------------------------

@attrs.frozen
class Submit:
    """An intent the risk guard approved; ``seq`` lets the guard match it in the router's view."""

    intent: OrderIntent
    seq: int
    approved_at: float
    reply: Reply | None = attrs.field(default=None, eq=False)
    #: The guard's approval record: the router persists it once the order is on its way (or
    #: at once when the order is not sent now), so the writer's commit is not competing with
    #: the send for the event loop and the disk.
    decision: RiskDecision | None = attrs.field(default=None, eq=False)
    #: The intent's write-ahead record, begun at intake (``IntentLog.begin``): waited for
    #: before the send, or voided when the order is not sent now.
    write: IntentWrite | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ConfirmCmd:
    client_order_id: str
    actor: str
    reply: Reply = attrs.field(eq=False)


@attrs.frozen
class CancelCmd:
    client_order_id: str
    actor: str
    reply: Reply | None = attrs.field(default=None, eq=False)


@attrs.frozen
class CancelAll:
    reason: str


@attrs.frozen
class _SendDone:
    client_order_id: str
    result: Any  # OrderAck | OrderResult | ExchangeError


@attrs.frozen
class _QueryDone:
    client_order_id: str
    result: Any  # OrderStatus | None (no such order) | ExchangeError
    attempt: int


@attrs.frozen
class _CancelDone:
    client_order_id: str
    result: Any  # OrderStatus | ExchangeError


@attrs.frozen
class _Reconciled:
    view: rc.RouterView
    snapshot: rc.VenueSnapshot | None
    error: str | None
    reason: str


@attrs.frozen
class RouterView:
    """What the router publishes for the risk guard, health and the control port."""

    open_orders: int = 0
    positions: Mapping[str, Decimal] = attrs.field(factory=dict)
    accepted_seq: int = 0
    reconciling: bool = True
    rules: Mapping[str, SymbolRules] = attrs.field(factory=dict)
    reconciliation_pending: tuple[rc.ReconciliationEntry, ...] = ()


class OrderRouter:
    def __init__(
        self,
        *,
        config: Published[SparkConfig],
        venue_factory: Callable[[], VenueOrders],
        breaker: BreakerActor,
        outlet: RecordOutlet,
        metrics: Metrics,
        audit: AuditTrail,
        clock: WallClock,
        intent_log: IntentLog,
        kill_switch: Published[bool],
        prices: Published[PriceBoard] | None,
        drift_inbox: trio.MemorySendChannel[Any] | None,
        send_allowed: bool,
        seed_positions: Callable[[], tuple[dict[str, Decimal], dict[str, int]]],
        load_orders: Callable[
            [list[str]], tuple[list[om.Order], set[tuple[str, int]]]
        ] | None = None,
    ) -> None:
        cfg = config.value
        self._config = config
        self._venue_factory = venue_factory
        self._venue_client: VenueOrders | None = None  # created by run()
        self._breaker = breaker
        self._outlet = outlet
        self._metrics = metrics
        self._audit = audit
        self._clock = clock
        self._log = intent_log
        self._kill_switch = kill_switch
        self._prices = prices
        self._drift = drift_inbox
        self._send_allowed = send_allowed
        self._seed_positions = seed_positions
        self._load_orders = load_orders
        self._prefix = cfg.live.client_id_prefix
        self.table = om.OrderTable()
        self.view: Published[RouterView] = Published(RouterView())
        # The part of the view the trading state derives from, published on its own so the
        # risk guard's watcher wakes when reconciliation entries change, not on every order.
        self.reconciliation: Published[tuple[rc.ReconciliationEntry, ...]] = Published(())
        self._send_tx, self.inbox = trio.open_memory_channel[Any](INBOX_SIZE)
        self._limiter = trio.CapacityLimiter(cfg.exchange.max_in_flight)
        self._nursery: trio.Nursery | None = None
        self._replies: dict[str, Reply] = {}
        self._accepted_seq = 0
        self._reconciling = True
        self._waiting: list[Submit] = []  # approved while reconciling: sent afterwards
        # Records of orders on their way to the venue, held back until the send is done (or
        # the order changes first): approval-time persistence must not delay the bytes.
        self._deferred: dict[str, list[Any]] = {}
        self._last_trade_ids: dict[str, int] = {}
        self._rules: dict[str, SymbolRules] = {}
        self._rules_snapshot: Mapping[str, SymbolRules] = {}  # what readers get; set on load
        self._pending_entries: dict[str, rc.ReconciliationEntry] = {}
        self._acked_entries: set[str] = set()
        self._suspects: set[str] = set()
        # (symbol, trade id) of TRADE reports already in the database for restored orders.
        self._stored_trade_reports: set[tuple[str, int]] = set()
        self.product = "spot"

    @property
    def _venue(self) -> VenueOrders:
        assert self._venue_client is not None, "the venue client is created by run()"
        return self._venue_client

    # -- channels others use ---------------------------------------------------------------------

    def inbox_sender(self) -> trio.MemorySendChannel[Any]:
        return self._send_tx.clone()

    # -- the actor -------------------------------------------------------------------------------

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx.register_mailbox("router", self.inbox)
        self._venue_client = self._venue_factory()
        self.product = self._venue_client.product
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._load_rules()
            await self._restore()
            nursery.start_soon(self._reconcile, "startup")
            nursery.start_soon(self._watch_kill_switch)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._log.keep_ahead)
            nursery.start_soon(self._log.keep_voids_written)
            task_status.started()
            await self._loop(ctx)
            await self._shutdown()
            await self._flush_all_deferred()
            await self._log.flush_voids()  # a restart need not ask about dropped intents
            nursery.cancel_scope.cancel()

    async def _loop(self, ctx: ChildContext) -> None:
        """Handle messages as they come; wake at least every ``TICK_S`` to report progress and
        see a stop request.  Only the *receive* is bounded by a timeout: a handler is never
        cancelled halfway through a state change.  A polite stop lets the inbox drain first."""
        while True:
            if ctx.stop_requested.is_set() and self.inbox.statistics().current_buffer_used == 0:
                return
            message: Any = _NOTHING
            with trio.move_on_after(TICK_S):
                message = await self.inbox.receive()
            if message is not _NOTHING:
                await self._handle(message)
            ctx.progress()

    async def _handle(self, message: Any) -> None:
        try:
            if isinstance(message, UserEvents):
                await self._on_user_events(message)
            elif isinstance(message, Submit):
                await self._on_submit(message)
            elif isinstance(message, _SendDone):
                await self._on_send_done(message)
            elif isinstance(message, _QueryDone):
                await self._on_query_done(message)
            elif isinstance(message, _CancelDone):
                await self._on_cancel_done(message)
            elif isinstance(message, ConfirmCmd):
                await self._on_confirm(message)
            elif isinstance(message, CancelCmd):
                await self._on_cancel(message)
            elif isinstance(message, CancelAll):
                await self._on_cancel_all(message)
            elif isinstance(message, StreamUp):
                if message.gap:
                    self._start_reconcile(f"stream up ({message.connection})")
            elif isinstance(message, StreamDown):
                log.warning("user-data stream down: %s", message.reason)
            elif isinstance(message, _Reconciled):
                await self._on_reconciled(message)
            elif message == "tick":
                await self._on_tick()
            else:  # pragma: no cover - a wiring bug
                log.error("router: unexpected message %r", type(message).__name__)
        except om.OrderError as exc:
            # The venue and our book disagree in a way the state machine refuses to guess
            # about: record it, make it an operator's problem, keep the router alive.
            log.error("order book conflict: %s", exc)
            entry = rc.ReconciliationEntry(
                id=f"conflict:{exc.reason}:{getattr(exc, 'client_order_id', '')}",
                kind=rc.DiscrepancyKind.STATUS_CONFLICT, symbol="", client_order_id=getattr(
                    exc, "client_order_id", None), detail=str(exc), mode="halted")
            self._raise_entries((entry,))
        self._publish()

    # -- startup -------------------------------------------------------------------------------

    async def _load_rules(self) -> None:
        info = await self._venue.rest.exchange_info()
        whitelist = set(self._config.value.risk.whitelist)
        for filters in info.symbols:
            if filters.symbol in whitelist:
                try:
                    self._rules[filters.symbol] = SymbolRules.from_exchange(filters)
                except ValueError as exc:
                    log.error("exchange filters of %s unusable: %s", filters.symbol, exc)
        self._rules_snapshot = dict(self._rules)
        missing = whitelist - set(self._rules)
        if missing:
            log.error("no exchange filters for %s: orders for them will be rejected",
                      ", ".join(sorted(missing)))

    async def _restore(self) -> None:
        """Seed positions and last trade ids from the database; re-learn every id the intent
        log says we may have sent, so reconciliation can ask the venue about each."""
        positions, last_ids = await trio.to_thread.run_sync(self._seed_positions)
        for symbol in self._config.value.risk.whitelist:
            self.table.set_position(symbol, positions.get(symbol, Decimal(0)))
        self._last_trade_ids.update(last_ids)
        intents = await trio.to_thread.run_sync(self._log.read)
        now_ms = self._clock.now_ms()
        # A request the previous process sent just before it died may still reach the venue
        # until then: "no such order" before it means "ask again".
        deadline_ms = (now_ms + self._config.value.exchange.recv_window_ms
                       + SEND_DEADLINE_MARGIN_MS)
        # What the database says about those orders (and any other order not final there):
        # restored as they were, so reconciliation compares like with like.  Final ones stay
        # out of the table — the venue has nothing more to say about them.
        stored: list[om.Order] = []
        if self._load_orders is not None:
            cids = [i.client_order_id for i in intents]
            stored, self._stored_trade_reports = await trio.to_thread.run_sync(
                self._load_orders, cids)
        known = {o.client_order_id for o in stored}
        restored = 0
        for order in stored:
            if order.is_final:
                continue
            # A PENDING one may have left the process: only the venue can tell.  None of them
            # is resent by this process (om.inherit); a parked one is sent once confirmed.
            self.table.add(om.inherit(order, now_ms, deadline_ms))
            restored += 1
        for logged in intents:
            if logged.client_order_id in known or logged.client_order_id in self.table:
                continue
            intent = OrderIntent(
                client_order_id=logged.client_order_id, symbol=logged.symbol,
                side=logged.side,  # type: ignore[arg-type]
                type=logged.type,  # type: ignore[arg-type]
                quantity=logged.quantity, price=logged.price,
                time_in_force=logged.time_in_force,  # type: ignore[arg-type]
                source=logged.source, created_ms=logged.created_ms,
            )
            order = om.new_order(intent, om.OrderState.PENDING, logged.created_ms)
            # Logged but never stored: we may have sent it (or the guard rejected it: the
            # record starts at intake); only the venue can tell, and it is never resent.
            self.table.add(om.inherit(order, now_ms, deadline_ms))
            restored += 1
        if restored:
            log.info("restored %d open or uncertain orders for reconciliation", restored)

    # -- intents ---------------------------------------------------------------------------------

    async def _on_submit(self, msg: Submit) -> None:
        intent = msg.intent
        self._accepted_seq = max(self._accepted_seq, msg.seq)
        existing = self.table.get(intent.client_order_id)
        if existing is not None:
            # A duplicate intent with the same id is answered with the existing order (its
            # record voided by offset: the original's record, same id, stays).
            if msg.write is not None:
                msg.write.discard()
            if msg.reply is not None:
                msg.reply.set({"duplicate": True, **order_json(existing)})
            return
        cfg = self._config.value
        status = om.initial_state(cfg.live.policy, self._send_allowed)
        now_ms = self._clock.now_ms()
        order = om.new_order(intent, status, now_ms)
        self.table.add(order)
        records: list[Any] = [] if msg.decision is None else [msg.decision]
        records.append(self._order_record(order, msg.approved_at))
        if status is om.OrderState.PENDING and not self._reconciling:
            # Send first, record after: the records follow once the send is done (or the
            # order changes before that), never before the bytes have left.
            self._deferred[intent.client_order_id] = records
            self._dispatch(order, msg.reply, msg.approved_at, msg.write)
            return
        if msg.write is not None:
            # Parked, dry run or held back by reconciliation: a later send appends anew.
            msg.write.discard()
        if status is om.OrderState.PENDING:
            self._waiting.append(msg)
            if msg.reply is not None:
                self._replies[intent.client_order_id] = msg.reply
        elif msg.reply is not None:
            msg.reply.set(order_json(order))
        for record in records:
            await self._outlet.send(record)

    def _dispatch(self, order: om.Order, reply: Reply | None, approved_at: float,
                  write: IntentWrite | None = None) -> None:
        if reply is not None:
            self._replies[order.client_order_id] = reply
        assert self._nursery is not None
        self._nursery.start_soon(self._send, order, approved_at, write)

    async def _send(self, order: om.Order, approved_at: float,
                    write: IntentWrite | None) -> None:
        """Worker: make the id durable, ask the breaker, send once, report back."""
        cid = order.client_order_id
        if write is not None:
            await write.wait()  # begun at intake: usually on disk already
        else:
            await self._log.append(LoggedIntent.of(order))
        async with slot(self._limiter):
            now = trio.current_time()
            if self._kill_switch.value:
                # Approved before the switch engaged, not sent yet: it never leaves.
                await self._send_tx.send(_SendDone(cid, _KillSwitchRefused()))
                return
            if not self._breaker.allows_call(now):
                await self._send_tx.send(_SendDone(cid, _BreakerRefused()))
                return
            self._shadow(order)
            started = trio.current_time()
            try:
                result: Any = await self._venue.place(
                    symbol=order.symbol, side=order.side, order_type=order.type,
                    client_order_id=cid, quantity=order.quantity, price=order.price,
                    time_in_force=order.time_in_force if order.type == "LIMIT" else None,
                )
            except ExchangeError as exc:
                result = exc
            except (OSError, trio.TooSlowError) as exc:  # pragma: no cover - defensive
                result = UnknownExecutionStatus(f"{type(exc).__name__}")
            answered = trio.current_time()
            self._breaker.record(_outcome(result), answered - started, answered)
            if not isinstance(result, BaseException):
                # Send → the venue's ACK, taken when its answer is parsed: the router's own
                # inbox (which may hold this order's user-data events) is not the venue's time.
                self._metrics.order_place_ack_seconds.observe(answered - started)
        await self._send_tx.send(_SendDone(cid, result))

    async def _on_send_done(self, msg: _SendDone) -> None:
        await self._flush_deferred(msg.client_order_id)
        order = self.table.get(msg.client_order_id)
        if order is None:  # pragma: no cover - evicted while in flight: impossible for open
            return
        now_ms = self._clock.now_ms()
        result = msg.result
        before = order
        # The user-data stream often reports an order (NEW, even FILLED) before the REST
        # answer arrives.  Once events have moved it past PENDING, the venue has it: a late ACK
        # only counts, and a late "unknown status" needs no query.
        sent_state = order.status in (om.OrderState.PENDING, om.OrderState.UNKNOWN)
        if isinstance(result, _BreakerRefused):
            order = om.mark_rejected(order, now_ms, "circuit_breaker_open")
            self._metrics.order_rejections_total.labels("circuit_breaker_open").inc()
        elif isinstance(result, _KillSwitchRefused):
            order = om.mark_rejected(order, now_ms, "kill_switch")
            self._metrics.order_rejections_total.labels("kill_switch").inc()
        elif isinstance(result, UnknownExecutionStatus):
            if sent_state:
                deadline = (now_ms + self._config.value.exchange.recv_window_ms
                            + SEND_DEADLINE_MARGIN_MS)
                order = om.mark_unknown(attrs.evolve(order, send_deadline_ms=deadline), now_ms)
                log.warning("order %s: execution status unknown (%s); asking the venue",
                            order.client_order_id, result.reason)
                self._query_later(order, 0)
        elif isinstance(result, ExchangeError):
            reason = _rejection_reason(result)
            if sent_state:
                order = om.mark_rejected(order, now_ms, reason)
                self._metrics.order_rejections_total.labels(reason).inc()
                log.warning("order %s rejected by the venue: %s", order.client_order_id, result)
            else:
                log.error("order %s: the venue answered %s after reporting the order (%s)",
                          order.client_order_id, result, order.status.value)
        else:
            if sent_state:
                order = om.apply_ack(order, result.order_id, now_ms)
            self._metrics.live_orders_placed_total.inc()
        if order is not before:
            self.table.put(order)
            await self._order_changed(order, trio.current_time())
        if self._kill_switch.value and order.status in (om.OrderState.NEW,
                                                        om.OrderState.PARTIALLY_FILLED):
            # It was in flight when the kill switch engaged: cancel it now.
            await self._on_cancel(CancelCmd(order.client_order_id, "kill_switch"))
            order = self.table.get(order.client_order_id) or order
        # The caller learns the state now, UNKNOWN included ("placed or not, being resolved");
        # the venue's answer to the follow-up query lands in the order, not in the reply.
        reply = self._replies.pop(order.client_order_id, None)
        if reply is not None:
            reply.set(order_json(order))

    # -- queries (UNKNOWN orders) ----------------------------------------------------------------

    def _query_later(self, order: om.Order, attempt: int) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._query, order.symbol, order.client_order_id, attempt)

    async def _query(self, symbol: str, cid: str, attempt: int) -> None:
        await trio.sleep(QUERY_BACKOFF_S[min(attempt, len(QUERY_BACKOFF_S) - 1)])
        result: Any
        async with slot(self._limiter):
            try:
                result = await self._venue.query(symbol, cid)
            except VenueRejected as exc:
                result = None if exc.code == -2013 else exc
            except ExchangeError as exc:
                result = exc
        await self._send_tx.send(_QueryDone(cid, result, attempt))

    async def _on_query_done(self, msg: _QueryDone) -> None:
        order = self.table.get(msg.client_order_id)
        if order is None or order.status is not om.OrderState.UNKNOWN:
            return
        if isinstance(msg.result, ExchangeError):
            self._query_later(order, msg.attempt + 1)
            return
        now_ms = self._clock.now_ms()
        order, outcome = om.apply_query(order, msg.result, now_ms)
        if outcome.changed:
            self.table.put(order)
        decision = outcome.decision
        if decision is om.QueryDecision.RESEND_ALLOWED:
            log.warning("order %s: the venue has no such order; sending it again (same id)",
                        order.client_order_id)
            self._dispatch(order, self._replies.pop(order.client_order_id, None),
                           trio.current_time())
        elif decision is om.QueryDecision.QUERY_LATER:
            self._query_later(order, msg.attempt + 1)
        elif decision is om.QueryDecision.NOT_SENT:
            _log_not_sent(order)
        elif decision is om.QueryDecision.MISSING_AT_VENUE:
            self._raise_entries((rc.ReconciliationEntry(
                id=f"missing:{order.client_order_id}", kind=rc.DiscrepancyKind.ORDER_NOT_FOUND,
                symbol=order.symbol, client_order_id=order.client_order_id,
                detail=outcome.detail or "order reached the venue but is now unknown",
                mode="halted"),))
        if outcome.missing_fill_qty > 0:
            self._start_reconcile(f"missing fills on {order.client_order_id}")
        if outcome.changed:
            await self._order_changed(order, trio.current_time())
        reply = self._replies.pop(order.client_order_id, None) if order.status is not (
            om.OrderState.UNKNOWN) and decision is not om.QueryDecision.RESEND_ALLOWED else None
        if reply is not None:
            reply.set(order_json(order))

    # -- user data -------------------------------------------------------------------------------

    async def _on_user_events(self, batch: UserEvents) -> None:
        for event in batch.events:
            if isinstance(event, ExecutionEvent):
                await self._on_execution(event, batch.received_at)

    async def _on_execution(self, event: ExecutionEvent, received_at: float) -> None:
        cid = event.orig_client_order_id or event.client_order_id
        order = self.table.get(cid) or self.table.get(event.client_order_id)
        if order is None:
            if is_ours(cid, self._prefix) or is_ours(event.client_order_id, self._prefix):
                # Ours but forgotten (evicted final order) or from before a lost log: the
                # reconciliation pass will record it.
                self._start_reconcile(f"event for unknown own order {cid}")
            else:
                self._audit.record("venue", "order.external", cid, "seen",
                                   {"symbol": event.symbol, "status": event.order_status})
            return
        result = self.table.apply_event(event, self._clock.now_ms())
        if result.duplicate or result.order is None or result.effects is None:
            return
        if self._deferred:  # the order's approval records go before what the venue says
            await self._flush_deferred(result.order.client_order_id)
        # A trade learned twice (socket and reconciliation, under different execution ids) is
        # one fill: its report is stored with the fill it brought, never a second time.
        stored = (event.symbol, event.trade_id) in self._stored_trade_reports
        if event.execution_type != "TRADE" or (result.effects.new_fills and not stored):
            await self._persist_execution(event, result.order, received_at)
        await self._after_change(result.order, result.effects, received_at)

    async def _persist_execution(self, event: ExecutionEvent, order: om.Order,
                                 received_at: float) -> None:
        await self._outlet.send(ExecutionRecord(
            execution_id=f"{self.product}:{event.symbol}:{event.execution_id}",
            client_order_id=order.client_order_id, venue_order_id=event.order_id,
            symbol=event.symbol, side=event.side, execution_type=event.execution_type,
            order_status=event.order_status, last_qty=event.last_qty,
            last_price=event.last_price, cumulative_qty=event.cum_qty,
            commission=event.commission, commission_asset=event.commission_asset,
            trade_id=event.trade_id, event_ms=event.event_time,
            transaction_ms=event.transaction_time, ingress=received_at,
        ))

    async def _after_change(self, order: om.Order, effects: om.Effects,
                            received_at: float) -> None:
        for fill in effects.new_fills:
            self._metrics.live_fills_total.inc()
            if order.status is om.OrderState.PARTIALLY_FILLED:
                self._metrics.live_partial_fills_total.inc()
            if fill.trade_id is not None:
                self._last_trade_ids[fill.symbol] = max(
                    self._last_trade_ids.get(fill.symbol, 0), fill.trade_id)
                await self._outlet.send(TradeRecord(
                    symbol=fill.symbol, trade_id=fill.trade_id,
                    venue_order_id=order.venue_order_id, client_order_id=order.client_order_id,
                    execution_id=fill.execution_id, side=str(fill.side), price=fill.price,
                    qty=fill.qty, quote_qty=fill.quote_qty, commission=fill.commission,
                    commission_asset=fill.commission_asset, is_maker=bool(fill.is_maker),
                    order_status=order.status.value, trade_ms=fill.time_ms, ingress=received_at,
                ))
            if self._drift is not None:
                await self._drift.send(LiveFill(
                    client_order_id=order.client_order_id, symbol=fill.symbol,
                    side=str(fill.side), price=fill.price, quantity=fill.qty,
                    at_ms=fill.time_ms, received_at=received_at, done=order.is_final,
                ))
        if effects.changed:
            await self._order_changed(order, received_at)
        if order.is_final:
            reply = self._replies.pop(order.client_order_id, None)
            if reply is not None:
                reply.set(order_json(order))

    # -- cancels and confirms ------------------------------------------------------------------

    async def _on_confirm(self, cmd: ConfirmCmd) -> None:
        order = self.table.get(cmd.client_order_id)
        if order is None:
            cmd.reply.set({"error": "not_found"})
            return
        if order.status is not om.OrderState.PARKED:
            cmd.reply.set({"error": "conflict", "status": order.status.value})
            return
        order = om.confirm(order, self._clock.now_ms())
        self.table.put(order)
        self._audit.record(cmd.actor, "order.confirm", order.client_order_id, "confirmed")
        await self._order_changed(order, trio.current_time())
        self._dispatch(order, cmd.reply, trio.current_time())

    async def _on_cancel(self, cmd: CancelCmd) -> None:
        order = self.table.get(cmd.client_order_id)
        if order is None:
            if cmd.reply is not None:
                cmd.reply.set({"error": "not_found"})
            return
        now_ms = self._clock.now_ms()
        if order.status is om.OrderState.PARKED:
            order = om.transition(order, om.OrderState.CANCELED, now_ms, "canceled while parked")
            self.table.put(order)
            await self._order_changed(order, trio.current_time())
            if cmd.reply is not None:
                cmd.reply.set(order_json(order))
            return
        if order.is_final or order.status in (om.OrderState.PENDING_CANCEL,
                                              om.OrderState.UNKNOWN, om.OrderState.PENDING):
            if cmd.reply is not None:
                cmd.reply.set({"error": "conflict", "status": order.status.value})
            return
        order = om.request_cancel(order, now_ms)
        self.table.put(order)
        await self._order_changed(order, trio.current_time())
        if cmd.reply is not None:
            self._replies[order.client_order_id] = cmd.reply
        assert self._nursery is not None
        self._nursery.start_soon(self._cancel, order.symbol, order.client_order_id)

    async def _cancel(self, symbol: str, cid: str) -> None:
        result: Any
        async with slot(self._limiter):
            try:
                result = await self._venue.cancel(symbol, cid)
            except ExchangeError as exc:
                result = exc
        await self._send_tx.send(_CancelDone(cid, result))

    async def _on_cancel_done(self, msg: _CancelDone) -> None:
        order = self.table.get(msg.client_order_id)
        if order is None:
            return
        if isinstance(msg.result, VenueRejected) and order.status is (
                om.OrderState.PENDING_CANCEL):
            # -2011: already final at the venue (filled or canceled); the events tell which.
            order = om.cancel_rejected(order, self._clock.now_ms())
            self.table.put(order)
            await self._order_changed(order, trio.current_time())
        elif isinstance(msg.result, OrderStatus) and not order.is_final:
            order, outcome = om.apply_query(order, msg.result, self._clock.now_ms())
            if outcome.changed:
                self.table.put(order)
                await self._order_changed(order, trio.current_time())
        elif isinstance(msg.result, ExchangeError):
            log.warning("cancel of %s failed: %s", msg.client_order_id, msg.result)
        reply = self._replies.pop(msg.client_order_id, None)
        if reply is not None:
            reply.set(order_json(order))

    async def _on_cancel_all(self, msg: CancelAll) -> None:
        # Orders approved but held back while reconciling are never sent.
        waiting, self._waiting = self._waiting, []
        for submit in waiting:
            order = self.table.get(submit.intent.client_order_id)
            if order is not None and order.status is om.OrderState.PENDING:
                order = om.mark_rejected(order, self._clock.now_ms(), msg.reason)
                self.table.put(order)
                self._metrics.order_rejections_total.labels(msg.reason).inc()
                await self._order_changed(order, trio.current_time())
                reply = self._replies.pop(order.client_order_id, None)
                if reply is not None:
                    reply.set(order_json(order))
        open_orders = [o for o in self.table.open_orders() if o.status in (
            om.OrderState.NEW, om.OrderState.PARTIALLY_FILLED, om.OrderState.PARKED)]
        if open_orders:
            log.warning("cancelling %d open orders: %s", len(open_orders), msg.reason)
        for order in open_orders:
            await self._on_cancel(CancelCmd(order.client_order_id, msg.reason))

    async def _watch_kill_switch(self) -> None:
        seen = self._kill_switch.version
        if self._kill_switch.value:
            await self._send_tx.send(CancelAll("kill_switch"))
        while True:
            seen, engaged = await self._kill_switch.wait_changed(seen)
            if engaged:
                await self._send_tx.send(CancelAll("kill_switch"))

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            await self._send_tx.send("tick")

    async def _on_tick(self) -> None:
        now_ms = self._clock.now_ms()
        timeout_ms = int(self._config.value.live.confirm_timeout_s * 1000)
        for order in self.table.open_orders():
            if order.status is om.OrderState.PARKED and now_ms - order.created_ms >= timeout_ms:
                order = om.expire_parked(order, now_ms)
                self.table.put(order)
                await self._order_changed(order, trio.current_time())
                self._audit.record("router", "order.expire", order.client_order_id, "expired",
                                   {"reason": "confirm_timeout"})

    # -- reconciliation ----------------------------------------------------------------------

    def _start_reconcile(self, reason: str) -> None:
        if self._nursery is None:
            return
        self._nursery.start_soon(self._reconcile, reason)

    async def _reconcile(self, reason: str) -> None:
        """Worker: take the router's view, ask the venue, hand both back to the loop."""
        view = self._core_view()
        try:
            async with slot(self._limiter):
                open_orders = await self._venue.open_orders()
                queries: dict[str, OrderStatus | rc.NotFound] = {}
                for cid in rc.plan_queries(view, open_orders):
                    known = next((o for o in view.orders if o.client_order_id == cid), None)
                    if known is None:
                        continue
                    try:
                        queries[cid] = await self._venue.query(known.symbol, cid)
                    except VenueRejected as exc:
                        if exc.code != -2013:
                            raise
                        queries[cid] = rc.NotFound(cid)
                trades: list[Trade] = []
                for symbol in self._config.value.risk.whitelist:
                    last = view.last_trade_ids.get(symbol)
                    trades.extend(await self._venue.trades_since(
                        symbol, None if last is None else last + 1))
            snapshot = rc.VenueSnapshot(time_ms=self._clock.now_ms(), open_orders=open_orders,
                                        queries=queries, trades=tuple(trades))
            await self._send_tx.send(_Reconciled(view, snapshot, None, reason))
        except ExchangeError as exc:
            await self._send_tx.send(_Reconciled(view, None, str(exc), reason))

    def _core_view(self) -> rc.RouterView:
        known = tuple(
            rc.KnownOrder(
                client_order_id=o.client_order_id, symbol=o.symbol, side=str(o.side),
                order_type=str(o.type), time_in_force=str(o.time_in_force or "GTC"),
                quantity=o.quantity, price=o.price or Decimal(0), status=o.status.value,
                executed_qty=o.executed_qty, cum_quote_qty=o.cum_quote,
                venue_order_id=o.venue_order_id)
            for o in self.table if not o.is_final or o.status is not om.OrderState.DRY_RUN)
        uncertain = frozenset(o.client_order_id for o in self.table.unknown_orders())
        applied = frozenset((o.symbol, t) for o in self.table for t in o.trade_ids)
        return rc.RouterView(
            product=self.product,  # type: ignore[arg-type]
            orders=known, uncertain=uncertain, last_trade_ids=dict(self._last_trade_ids),
            applied_trade_ids=applied,
        )

    async def _on_reconciled(self, msg: _Reconciled) -> None:
        if msg.snapshot is None:
            log.error("reconciliation (%s) failed: %s; retrying", msg.reason, msg.error)
            assert self._nursery is not None
            self._nursery.start_soon(self._retry_reconcile, msg.reason)
            return
        result = rc.reconcile(msg.view, msg.snapshot, rc.ReconcileConfig(
            client_id_prefix=self._prefix, mode="halted"))
        now_ms = self._clock.now_ms()
        received = trio.current_time()
        for event in result.events:
            await self._on_execution(event, received)
        for cid in result.absent_at_venue:
            order = self.table.get(cid)
            if order is not None and order.status is om.OrderState.UNKNOWN:
                order, outcome = om.apply_query(order, None, now_ms)
                if outcome.changed:
                    self.table.put(order)
                if outcome.decision is om.QueryDecision.RESEND_ALLOWED:
                    self._dispatch(order, self._replies.pop(cid, None), received)
                elif outcome.decision is om.QueryDecision.QUERY_LATER:
                    self._query_later(order, 0)
                elif outcome.decision is om.QueryDecision.NOT_SENT:
                    _log_not_sent(order)
                if outcome.changed:
                    await self._order_changed(order, received)
        for cid in result.unresolved:
            order = self.table.get(cid)
            if order is not None and order.status is om.OrderState.UNKNOWN:
                self._query_later(order, 0)
        # The view was taken before the venue was asked: an order sent in between is at the
        # venue but not in the view.  Such findings are stale, not discrepancies; its own events
        # (or the next reconciliation) account for it.
        stale_kinds = (rc.DiscrepancyKind.UNKNOWN_ORDER, rc.DiscrepancyKind.UNKNOWN_FILL)
        found = tuple(
            e for e in result.entries
            if not (e.kind in stale_kinds and e.client_order_id is not None
                    and e.client_order_id in self.table)
        )
        # The venue's answers are not one atomic snapshot (open orders, queries and trades are
        # separate calls, and events keep arriving meanwhile), so a finding can be a passing
        # race.  Only a finding seen again by a confirming pass a moment later is raised.
        entries = tuple(e for e in found if e.id in self._suspects)
        unconfirmed = {e.id for e in found} - {e.id for e in entries}
        self._suspects = unconfirmed
        if unconfirmed and self._nursery is not None:
            self._nursery.start_soon(self._confirm_reconcile)
        if entries:
            self._raise_entries(entries)
        log.info("reconciled with the venue (%s): %d events applied, %d discrepancies",
                 msg.reason, len(result.events), len(entries))
        if self._reconciling:
            self._reconciling = False
            waiting, self._waiting = self._waiting, []
            for submit in waiting:
                order = self.table.get(submit.intent.client_order_id)
                if order is not None and order.status is om.OrderState.PENDING:
                    self._dispatch(order, self._replies.pop(order.client_order_id, None),
                                   submit.approved_at)
            await self._log.compact(self._intents_to_keep)

    async def _confirm_reconcile(self) -> None:
        await trio.sleep(CONFIRM_DELAY_S)
        await self._reconcile("confirming findings")

    async def _retry_reconcile(self, reason: str) -> None:
        await trio.sleep(1.0)
        await self._reconcile(reason)

    def _intents_to_keep(self) -> list[LoggedIntent]:
        """What compaction carries over: every order that is not final and may be sent."""
        return [LoggedIntent.of(o) for o in self.table
                if not o.is_final and o.status is not om.OrderState.PARKED]

    def _raise_entries(self, entries: tuple[rc.ReconciliationEntry, ...]) -> None:
        for entry in entries:
            if len(entry.id) > ENTRY_ID_MAX:
                # Keep it acknowledgeable: same finding, same short id.
                digest = hashlib.sha256(entry.id.encode()).hexdigest()[:24]
                entry = attrs.evolve(entry, id=f"{entry.kind.value[:24]}-{digest}")
            if entry.id in self._pending_entries or entry.id in self._acked_entries:
                continue
            self._pending_entries[entry.id] = entry
            log.error("reconciliation: %s %s %s", entry.kind, entry.client_order_id or "",
                      entry.detail)
            self._audit.record("reconciliation", f"reconciliation.{entry.kind}",
                               entry.client_order_id or entry.symbol, "pending",
                               {"id": entry.id, "detail": entry.detail, "mode": entry.mode})

    def acknowledge(self, entry_id: str, actor: str) -> rc.ReconciliationEntry | None:
        entry = self._pending_entries.pop(entry_id, None)
        if entry is not None:
            self._acked_entries.add(entry_id)
            self._audit.record(actor, "reconciliation.ack", entry_id, "acknowledged",
                               {"kind": entry.kind})
            self._publish()
        return entry

    def pending_entries(self) -> list[rc.ReconciliationEntry]:
        return list(self._pending_entries.values())

    # -- shared bookkeeping ------------------------------------------------------------------

    def _shadow(self, order: om.Order) -> None:
        if self._drift is None or self._prices is None:
            return
        quote = self._prices.value.quotes.get(order.symbol)
        if quote is None or quote.mid is None:
            return
        reference = quote.ask if order.side == "BUY" else quote.bid
        try:
            self._drift.send_nowait(ShadowOrder(
                client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                quantity=order.quantity, reference_price=reference, at_ms=self._clock.now_ms()))
        except trio.WouldBlock:
            log.warning("drift gate inbox full: order %s has no paper shadow",
                        order.client_order_id)

    async def _order_changed(self, order: om.Order, ingress: float) -> None:
        if self._deferred:
            await self._flush_deferred(order.client_order_id)
        await self._outlet.send(self._order_record(order, ingress))

    @staticmethod
    def _order_record(order: om.Order, ingress: float) -> OrderUpdate:
        return OrderUpdate(
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            type=order.type, time_in_force=order.time_in_force, quantity=order.quantity,
            price=order.price, status=order.status.value, venue_order_id=order.venue_order_id,
            executed_qty=order.executed_qty, cumulative_quote_qty=order.cum_quote,
            version=order.version, created_ms=order.created_ms, updated_ms=order.updated_ms,
            reason=order.reject_reason, ingress=ingress,
        )

    async def _flush_deferred(self, client_order_id: str) -> None:
        """Persist what an order's approval left for later, before anything newer about it."""
        records = self._deferred.pop(client_order_id, None)
        if records:
            for record in records:
                await self._outlet.send(record)

    async def _flush_all_deferred(self) -> None:
        while self._deferred:
            await self._flush_deferred(next(iter(self._deferred)))

    def _publish(self) -> None:
        pending = tuple(self._pending_entries.values())
        self.view.set(RouterView(
            open_orders=self.table.open_count(),
            positions=self.table.positions,
            accepted_seq=self._accepted_seq,
            reconciling=self._reconciling,
            rules=self._rules_snapshot,
            reconciliation_pending=pending,
        ))
        self.reconciliation.set(pending)

    async def _shutdown(self) -> None:
        cfg = self._config.value
        if cfg.live.on_shutdown != "cancel":
            return
        await self._on_cancel_all(CancelAll("shutdown"))
        deadline = trio.current_time() + min(5.0, cfg.runtime.shutdown_grace_s / 2)
        while any(o.status is om.OrderState.PENDING_CANCEL for o in self.table.open_orders()):
            message: Any = _NOTHING
            with trio.move_on_at(deadline):
                message = await self.inbox.receive()
            if message is _NOTHING:
                log.warning("shutdown: cancels still unanswered; leaving them to reconciliation")
                return
            await self._handle(message)

    # -- reads for the control port ---------------------------------------------------------

    def order_json(self, client_order_id: str) -> dict[str, Any] | None:
        order = self.table.get(client_order_id)
        return None if order is None else order_json(order)

    def orders_json(self, status: str | None) -> list[dict[str, Any]]:
        orders = self.table.open_orders() if status == "open" else list(self.table)
        return [order_json(o) for o in sorted(orders, key=lambda o: o.created_ms)]


_NOTHING: Any = object()


class _KillSwitchRefused:
    """The kill switch engaged after approval and before the send: the order was not sent."""


class _BreakerRefused:
    """The breaker did not allow the call: the order was not sent."""


def _log_not_sent(order: om.Order) -> None:
    log.warning("order %s from before the restart never reached the venue: %s, not resent",
                order.client_order_id, order.status.value)


def _outcome(result: Any) -> Outcome:
    if isinstance(result, BaseException):
        return classify_error(result)
    return Outcome.SUCCESS


def _rejection_reason(exc: ExchangeError) -> str:
    code = getattr(exc, "code", None)
    return f"venue_{exc.reason}" if code is None else f"venue_{exc.reason}_{abs(code)}"


def order_json(order: om.Order) -> dict[str, Any]:
    return {
        "clientOrderId": order.client_order_id,
        "symbol": order.symbol,
        "side": str(order.side),
        "type": str(order.type),
        "timeInForce": None if order.time_in_force is None else str(order.time_in_force),
        "quantity": str(order.quantity),
        "price": None if order.price is None else str(order.price),
        "status": order.status.value,
        "executedQty": str(order.executed_qty),
        "cumulativeQuoteQty": str(order.cum_quote),
        "avgPrice": None if order.avg_price is None else str(order.avg_price),
        "orderId": order.venue_order_id,
        "reason": order.reject_reason,
        "createdMs": order.created_ms,
        "updatedMs": order.updated_ms,
        "version": order.version,
    }

