"""The trading subtree: builds the trading actors from config and wires their channels.

```
trading (rest_for_one)
├── writer        ← started first, stopped last: everything else may send to it
├── venue_link    ← listenKey keeper + user-data and market readers (one_for_all)
├── breaker
├── drift_gate
├── risk_guard    ← intents in; owner of the trading state
└── router        ← approved intents + user data in; REST out; records to the writer
```

Objects are built when the runtime is built (so the control port can hold references to the
order API from the start); anything that needs the venue's address (REST client, websockets)
is created when its actor starts, because in sim mode the venue's port is only known once the
``sim.venue`` child is up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio

from spark.actors.breaker import BreakerActor
from spark.actors.drift_gate import DriftGateActor
from spark.actors.intent_log import IntentLog
from spark.actors.messages import GateView, PriceBoard
from spark.actors.orders_api import OrdersApi
from spark.actors.outlet import RecordOutlet
from spark.actors.risk_guard import RiskGuard
from spark.actors.router import OrderRouter
from spark.actors.venue_link import VenueLinkHandles, build_venue_link
from spark.actors.venue_orders import VenueOrders
from spark.actors.writer import Writer, open_inbox
from spark.core import orders as om
from spark.core.live_gate import describe_missing, live_gate
from spark.core.published import Published
from spark.exchange.credentials import Credentials
from spark.exchange.rest import RestClient, RestConfig
from spark.exchange.venues import VenueProfile, venue_profile
from spark.runtime.metrics import Metrics
from spark.storage.records import AuditEntry, GateEvent, KillSwitchEvent
from spark.storage.settings import DatabaseSettings, WriterSettings
from spark.supervision import ChildContext, ChildSpec, Restart

if TYPE_CHECKING:
    from spark.runtime.process import Runtime

log = logging.getLogger("spark.runtime")


class RestMetrics:
    """Feeds the REST client's observations into Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def on_bytes_sent(self, endpoint: str, since_call_s: float, budget_wait_s: float) -> None:
        pass  # time-to-socket is a benchmark's concern (bench/order_path.py), not a metric

    def on_response(self, endpoint: str, status: str, elapsed_s: float) -> None:
        self._m.exchange_requests_total.labels(endpoint, status).inc()

    def on_used_weight(self, used: int) -> None:
        self._m.exchange_used_weight.set(used)

    def on_rate_limit_state(self, blocked_until: float | None, banned_until: float | None) -> None:
        if banned_until is not None:
            log.error("the venue banned this IP (418) until %s", banned_until)


class Trading:
    """The trading actors of one runtime and the handles others need."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        settings = runtime.settings
        cfg = settings.config
        self.product = "futures" if cfg.exchange.mode.startswith("futures") else "spot"
        metrics, audit, clock = runtime.metrics, runtime.audit, runtime.clock

        # Writer: its inbox outlives writer restarts; everyone sends through the outlet.
        self.writer_settings = WriterSettings.from_config(cfg.writer)
        self.database = DatabaseSettings.from_config(cfg.database)
        writer_tx, writer_rx = open_inbox(self.writer_settings)
        self.writer = Writer(self.writer_settings, self.database, writer_rx, metrics)
        self.writer_inbox = writer_rx
        self.outlet = RecordOutlet(writer_tx)
        audit.attach(self._audit_to_db)
        runtime.kill_switch.sinks.append(self._kill_switch_to_db)

        # Who may send: sim always (unless dry_run); real venues need EXECUTE + credentials.
        self.credentials = self._credentials()
        decision = live_gate(cfg.exchange.mode, cfg.live.policy, cfg.live.execute,
                             self.credentials is not None)
        self.send_allowed = decision.send_allowed
        if not decision.send_allowed:
            log.warning("orders will be recorded but not sent: %s",
                        describe_missing(list(decision.missing)))
        self.missing_for_live = tuple(decision.missing)

        self.prices: Published[PriceBoard] = Published(PriceBoard())
        self.gate: Published[GateView] = Published(GateView())
        self.breaker = BreakerActor(runtime.config, metrics, audit, self.outlet, clock)
        self.drift = DriftGateActor(cfg.drift_gate, metrics, audit=self._gate_transition,
                                    view=self.gate, spark_config=runtime.config, clock=clock)
        self.link: VenueLinkHandles | None = None
        self._link_spec: ChildSpec | None = None
        self.rest_metrics = RestMetrics(metrics)
        intent_log = IntentLog(cfg.runtime.state_dir)
        self.router = OrderRouter(
            config=runtime.config,
            venue_factory=self._venue_orders,
            breaker=self.breaker,
            outlet=self.outlet,
            metrics=metrics,
            audit=audit,
            clock=clock,
            intent_log=intent_log,
            kill_switch=runtime.kill_switch.state,
            prices=self.prices,
            drift_inbox=self.drift.inbox,
            send_allowed=self.send_allowed,
            seed_positions=self._seed_positions,
            load_orders=self._load_orders,
        )
        self.guard = RiskGuard(
            config=runtime.config,
            kill_switch=runtime.kill_switch.state,
            breaker=self.breaker,
            gate_open=self.drift.is_open,
            prices=self.prices,
            router_view=self.router.view,
            router_reconciliation=self.router.reconciliation,
            router_inbox=self.router.inbox_sender(),
            outlet=self.outlet,
            metrics=metrics,
            audit=audit,
            clock=clock,
        )
        self.orders_api = OrdersApi(
            guard=self.guard.sender(), router=self.router, router_inbox=self.router.inbox_sender(),
            prefix=cfg.live.client_id_prefix, clock=clock, intent_log=intent_log,
        )
        self.rest: RestClient | None = None

    # -- venue access ----------------------------------------------------------------------

    def _credentials(self) -> Credentials | None:
        settings = self.rt.settings
        secrets = settings.secrets
        if settings.config.exchange.mode == "sim":
            return Credentials.hmac(secrets.sim_api_key, secrets.sim_api_secret)
        if secrets.api_key and secrets.private_key_file:
            return Credentials.ed25519(secrets.api_key, secrets.private_key_file)
        if secrets.api_key and secrets.api_secret:
            return Credentials.hmac(secrets.api_key, secrets.api_secret)
        return None

    def profile(self) -> VenueProfile:
        cfg = self.rt.settings.config.exchange
        if self.rt.embedded_venue:
            assert self.rt.venue_url is not None, "the sim venue has not started"
            return venue_profile("sim", rest_url=self.rt.venue_url,
                                 ws_url="ws" + self.rt.venue_url[len("http"):],
                                 sim_product=self.product)  # type: ignore[arg-type]
        return venue_profile(cfg.mode, rest_url=cfg.rest_url or None, ws_url=cfg.ws_url or None,
                             sim_product=self.product)  # type: ignore[arg-type]

    def _venue_orders(self) -> VenueOrders:
        assert self.rest is not None, "the exchange child starts before the router"
        return VenueOrders(self.rest, self.product)

    async def _run_exchange(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Owns the one REST client (HTTP keep-alive pool, rate budget, server-time offset)."""
        cfg = self.rt.settings.config.exchange
        in_flight = cfg.max_in_flight
        rest = RestClient(
            self.profile(), self.credentials,
            config=RestConfig(read_timeout_s=cfg.request_timeout_s, max_in_flight=in_flight,
                              pool_size=in_flight + 4, recv_window_ms=cfg.recv_window_ms,
                              share=cfg.weight_share),
            observer=self.rest_metrics, clock=self.rt.clock,
        )
        try:
            await rest.sync_time()
            self.rest = rest
            task_status.started()
            await ctx.wait_stop()
        finally:
            self.rest = None
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await rest.aclose()

    async def _run_venue_link(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The venue link sub-tree, built once (its channels outlive restarts), plus a mirror of
        its reference prices into the runtime's own ``Published[PriceBoard]``."""
        assert self.rest is not None and self.credentials is not None
        if self._link_spec is None:
            self._link_spec, self.link = build_venue_link(
                config=self.rt.settings.config, profile=self.profile(), rest=self.rest,
                credentials=self.credentials, metrics=self.rt.metrics, clock=self.rt.clock,
                symbols=self.rt.settings.config.risk.whitelist,
            )
        assert self.link is not None
        link = self.link
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_mirror, link.prices, self.prices)
            await self._link_spec.entry(ctx, task_status=task_status)
            nursery.cancel_scope.cancel()

    async def _forward_user_data(self) -> None:
        """User-data items from the venue link into the router's inbox, in order."""
        assert self.link is not None
        inbox = self.router.inbox_sender()
        async for item in self.link.events:
            await inbox.send(item)

    def venue_connected(self) -> bool:
        return self.link is not None and self.link.connected

    def last_event_age_s(self) -> float | None:
        return None if self.link is None else self.link.last_event_age_s()

    def _gate_transition(self, record: dict[str, Any]) -> None:
        self.rt.audit.record(str(record.get("operator") or "drift_gate"), "drift_gate.transition",
                             "drift_gate", str(record.get("state")), record)
        self.outlet.post(GateEvent(
            at_ms=int(record.get("at_ms") or self.rt.clock.now_ms()),
            from_state=None if record.get("previous") is None else str(record.get("previous")),
            to_state=str(record.get("state")), reason=str(record.get("cause") or ""),
            source=str(record.get("operator") or "drift_gate"), ingress=trio.current_time(),
        ))

    # -- persistence hooks ---------------------------------------------------------------------

    def _audit_to_db(self, event: Any) -> None:
        self.outlet.post(AuditEntry(
            at_ms=event.time_ms, actor=event.actor, action=event.action, target=event.target,
            result=event.result, detail=dict(event.detail), ingress=trio.current_time(),
        ))

    def _kill_switch_to_db(self, engaged: bool, changed: bool, actor: str, source: str) -> None:
        if not changed:
            return
        self.outlet.post(KillSwitchEvent(
            at_ms=self.rt.clock.now_ms(), from_state="off" if engaged else "on",
            to_state="on" if engaged else "off", reason=source, source=actor,
            ingress=trio.current_time(),
        ))

    def _seed_positions(self) -> tuple[dict[str, Decimal], dict[str, int]]:
        """Net position and last trade id per symbol from the trades this runtime stored."""
        from spark.storage.engine import make_engine
        from spark.storage.schema import trades

        engine = make_engine(self.database)
        positions: dict[str, Decimal] = {}
        last_ids: dict[str, int] = {}
        try:
            with engine.connect() as conn:
                rows = conn.execution_options(yield_per=10_000).execute(
                    sa.select(trades.c.symbol, trades.c.side, trades.c.qty, trades.c.trade_id))
                for symbol, side, qty, trade_id in rows:
                    signed = Decimal(qty) if side == "BUY" else -Decimal(qty)
                    positions[symbol] = positions.get(symbol, Decimal(0)) + signed
                    last_ids[symbol] = max(last_ids.get(symbol, 0), int(trade_id))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not read positions from the database (%s); starting flat",
                        type(exc).__name__)
        finally:
            engine.dispose()
        return positions, last_ids

    def _load_orders(
        self, client_order_ids: list[str]
    ) -> tuple[list[om.Order], set[tuple[str, int]]]:
        """The stored state of the given orders and of every order not final in the database,
        with the fills stored for them — what the router knew before it stopped."""
        from spark.storage.engine import make_engine
        from spark.storage.schema import executions, orders, trades

        finals = [s.value for s in om.FINAL_STATES]
        executed: set[tuple[str, int]] = set()
        engine = make_engine(self.database)
        out: list[om.Order] = []
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(orders).where(sa.or_(
                    orders.c.client_order_id.in_(client_order_ids),
                    orders.c.status.not_in(finals),
                ))).mappings().all()
                by_cid = {r["client_order_id"]: r for r in rows}
                fills: dict[str, list[Any]] = {}
                if by_cid:
                    for t in conn.execute(sa.select(trades).where(
                            trades.c.client_order_id.in_(list(by_cid)))).mappings():
                        fills.setdefault(t["client_order_id"], []).append(t)
                    # TRADE reports stored even where their trade row is not (a crash between
                    # two writer batches): reconciliation must add the trade, not the report.
                    for e in conn.execute(sa.select(executions.c.symbol, executions.c.trade_id)
                                          .where(executions.c.client_order_id.in_(list(by_cid)),
                                                 executions.c.execution_type == "TRADE",
                                                 executions.c.trade_id.is_not(None))):
                        executed.add((e.symbol, int(e.trade_id)))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not read stored orders (%s); the venue will be asked about each",
                        type(exc).__name__)
            return [], set()
        finally:
            engine.dispose()
        out = [stored_order(r, fills.get(cid, [])) for cid, r in by_cid.items()]
        return out, executed

    # -- the subtree -------------------------------------------------------------------------

    def children(self) -> list[ChildSpec]:
        sup = self.rt.settings.config.supervision
        deadline = sup.shutdown_deadline_s
        return [
            ChildSpec(name="writer", entry=self._run_writer, restart=Restart.PERMANENT,
                      shutdown_deadline_s=max(deadline, 10.0)),
            ChildSpec(name="exchange", entry=self._run_exchange, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline),
            ChildSpec(name="venue_link", entry=self._run_venue_link, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline * 4),
            ChildSpec(name="breaker", entry=self.breaker.run, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline, stall_deadline_s=sup.stall_timeout_s),
            ChildSpec(name="drift_gate", entry=self.drift.run, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline),
            ChildSpec(name="risk_guard", entry=self.guard.run, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline, stall_deadline_s=sup.stall_timeout_s),
            ChildSpec(name="router", entry=self._run_router, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline, stall_deadline_s=sup.stall_timeout_s),
        ]

    async def _run_writer(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx.register_mailbox("writer", self.writer_inbox)
        async with trio.open_nursery() as nursery:
            # Feeds records parked by synchronous callers into the inbox, in order.
            nursery.start_soon(self.outlet.run)
            # Returns after draining its inbox once ctx asks it to stop (it is stopped last).
            await self.writer.run(ctx, task_status=task_status)
            nursery.cancel_scope.cancel()

    async def _run_router(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_user_data)
            await self.router.run(ctx, task_status=task_status)
            nursery.cancel_scope.cancel()


async def _mirror(source: Published[PriceBoard], target: Published[PriceBoard]) -> None:
    version = source.version
    target.set(source.value)
    while True:
        version, board = await source.wait_changed(version)
        target.set(board)


def stored_order(row: Mapping[Any, Any], trades: Sequence[Mapping[Any, Any]]) -> om.Order:
    """An order as the database holds it (its row and its trade rows).

    The row and the trades are written in different writer batches, so a crash can keep a
    trade whose order update was lost (the row still says PENDING, nothing executed).  As in
    :class:`~spark.core.orders.Order`, recorded fills above the row's cumulative figure win:
    they are facts, and reconciliation adds the venue's later trades on top of them."""
    fills_qty = sum((Decimal(t["qty"]) for t in trades), Decimal(0))
    fills_quote = sum((Decimal(t["quote_qty"]) for t in trades), Decimal(0))
    executed = Decimal(row["executed_qty"])
    cum_quote = Decimal(row["cumulative_quote_qty"])
    if fills_qty > executed:
        executed, cum_quote = fills_qty, fills_quote
    return om.Order(
        client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"],
        type=row["type"], quantity=Decimal(row["quantity"]),
        price=None if row["price"] is None else Decimal(row["price"]),
        time_in_force=row["time_in_force"], status=om.OrderState(row["status"]),
        venue_order_id=row["venue_order_id"], executed_qty=executed, cum_quote=cum_quote,
        avg_price=(fills_quote / fills_qty) if fills_qty else None,
        fills_qty=fills_qty, fills_quote=fills_quote, version=int(row["version"]),
        created_ms=int(row["created_ms"]), updated_ms=int(row["updated_ms"]),
        trade_ids=frozenset(int(t["trade_id"]) for t in trades),
        reject_reason=row["reason"],
    )
