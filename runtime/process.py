"""The runtime process: builds the supervision tree from config and runs it under Trio.

Tree (see docs/ARCHITECTURE.md)::

    process (one_for_one, no restarts: a failed subtree stops the process with exit 1)
    ├── ops (one_for_one): loop-lag monitor, control port
    └── trading (rest_for_one): the trading actors (and any extra children, e.g. strategies)

Signals, config reload, the kill switch and the audit trail live here, outside the tree: they
belong to the process, not to any actor.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from spark.config import ConfigError, Settings, SparkConfig, load
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.core.published import Published
from spark.runtime.audit import AuditTrail
from spark.runtime.kill_switch import KillSwitch
from spark.runtime.loop_lag import LoopLagMonitor
from spark.runtime.metrics import Metrics
from spark.runtime.sdnotify import SdNotifier
from spark.runtime.signals import handle_signals
from spark.supervision import (
    Backoff,
    ChildContext,
    ChildSpec,
    ChildState,
    Intensity,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorSnapshot,
)

if TYPE_CHECKING:
    from spark.runtime.backend import BreakerApi, ExportApi, GateApi, OrdersApi, ReconciliationApi

log = logging.getLogger("spark.runtime")

EXIT_OK = 0
EXIT_FAILURE = 1


class MetricsObserver:
    """Feeds supervision events into ``spark_actor_up`` and ``spark_actor_restarts_total``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_started(self, path: str) -> None:
        self._metrics.actor_up.labels(path).set(1)
        self._metrics.actor_restarts_total.labels(path)

    def on_exit(self, path: str, error: BaseException | None) -> None:
        self._metrics.actor_up.labels(path).set(0)
        if error is not None:
            log.error("actor %s crashed: %s: %s", path, type(error).__name__, error,
                      extra={"actor": path})

    def on_restart(self, path: str) -> None:
        self._metrics.actor_restarts_total.labels(path).inc()
        log.warning("actor %s restarting", path, extra={"actor": path})


class Runtime:
    """One runtime instance: its config, metrics, kill switch, audit trail and tree."""

    def __init__(
        self,
        settings: Settings,
        *,
        extra_children: Sequence[ChildSpec] = (),
        clock: WallClock = SYSTEM_CLOCK,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env
        cfg = settings.config
        self.clock = clock
        self.config: Published[SparkConfig] = Published(cfg)
        self.metrics = Metrics(process=cfg.metrics.process_metrics)
        self.audit = AuditTrail(clock)
        self.kill_switch = KillSwitch(
            self.metrics, self.audit, engaged=cfg.runtime.kill_switch,
            state_file=Path(cfg.runtime.state_dir) / "kill-switch",
        )
        if self.kill_switch.restored:
            log.warning("the kill switch was engaged when the runtime last stopped: it stays "
                        "engaged until an operator releases it (SIGUSR2 or ctl kill-switch off)")
        self.notifier = SdNotifier(self.env)
        self.loop_lag = LoopLagMonitor(self.metrics, cfg.metrics.loop_lag_interval_s,
                                       self.notifier)
        self.control_address: tuple[str, int] | None = None
        self.venue_url: str | None = None
        # Components wired by later parts of the tree; None until they exist in this build.
        self.orders_api: OrdersApi | None = None
        self.breaker_api: BreakerApi | None = None
        self.gate_api: GateApi | None = None
        self.export_api: ExportApi | None = None
        self.reconciliation_api: ReconciliationApi | None = None
        self._observer = MetricsObserver(self.metrics)
        # In sim mode the runtime starts its own venue unless rest_url names a running one.
        self.embedded_venue = cfg.exchange.mode == "sim" and not cfg.exchange.rest_url
        if not self.embedded_venue and cfg.exchange.rest_url:
            self.venue_url = cfg.exchange.rest_url
        self._extra_children = tuple(extra_children)
        self._stop_reason: str | None = None
        self._forced = False
        self._cancel_scope: trio.CancelScope | None = None
        self.ops = Supervisor(
            "ops",
            self._ops_children(),
            strategy=Strategy.ONE_FOR_ONE,
            intensity=self._intensity(),
            backoff=self._backoff(),
            observer=self._observer,
        )
        from spark.runtime.trading import Trading

        self.trade = Trading(self)
        self.orders_api = self.trade.orders_api
        self.breaker_api = self.trade.breaker
        self.gate_api = self.trade.drift
        self.reconciliation_api = _Reconciliation(self.trade)
        self.export_api = self._export_trades
        self.trading = Supervisor(
            "trading",
            self._trading_children(),
            strategy=Strategy.REST_FOR_ONE,
            intensity=self._intensity(),
            backoff=self._backoff(),
            observer=self._observer,
        )
        top = [self.ops.as_child_spec()]
        if self.embedded_venue:
            self.sim = Supervisor(
                "sim",
                [self._venue_child()],
                strategy=Strategy.ONE_FOR_ONE,
                intensity=self._intensity(),
                backoff=self._backoff(),
                observer=self._observer,
            )
            top.append(self.sim.as_child_spec())
        top.append(self.trading.as_child_spec())
        self.root = Supervisor(
            "process",
            top,
            strategy=Strategy.ONE_FOR_ONE,
            intensity=Intensity(max_restarts=0, within_s=1.0),
            observer=self._observer,
        )

    # -- tree ------------------------------------------------------------------------------------

    def _intensity(self) -> Intensity:
        s = self.settings.config.supervision
        return Intensity(max_restarts=s.max_restarts, within_s=s.within_s)

    def _backoff(self) -> Backoff:
        s = self.settings.config.supervision
        return Backoff(initial_s=s.backoff_initial_s, max_s=s.backoff_max_s)

    def _ops_children(self) -> list[ChildSpec]:
        deadline = self.settings.config.supervision.shutdown_deadline_s
        children = [
            ChildSpec(name="loop_lag", entry=self.loop_lag.run, restart=Restart.PERMANENT,
                      shutdown_deadline_s=deadline),
        ]
        children.extend(self._control_children())
        return children

    def _control_children(self) -> list[ChildSpec]:
        """The control port; see :mod:`spark.runtime.control_child`."""
        from spark.runtime.control_child import control_port_spec

        return [control_port_spec(self)]

    def _venue_child(self) -> ChildSpec:
        """The simulated venue, on a loopback port that stays the same across restarts."""
        from spark.venue import serve

        cfg = self.settings.config
        venue_cfg = attrs.evolve(cfg.venue, api_key=self.settings.secrets.sim_api_key)
        secret = self.settings.secrets.sim_api_secret

        async def run_venue(
            ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            bound = venue_cfg
            if self.venue_url is not None:
                bound = attrs.evolve(venue_cfg, port=int(self.venue_url.rsplit(":", 1)[1]))
            async with trio.open_nursery() as nursery:
                self.venue_url = await nursery.start(
                    partial(serve, bound, api_secret=secret.reveal())
                )
                task_status.started()
                await ctx.wait_stop()
                nursery.cancel_scope.cancel()

        return ChildSpec(name="venue", entry=run_venue, restart=Restart.PERMANENT,
                         shutdown_deadline_s=cfg.supervision.shutdown_deadline_s)

    def _trading_children(self) -> list[ChildSpec]:
        return [*self.trade.children(), *self._extra_children]

    # -- state others read -------------------------------------------------------------------

    def snapshot(self) -> SupervisorSnapshot:
        return self.root.snapshot()

    def actors(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path, stats in self.snapshot().walk():
            out[path] = {
                "state": stats.state.value,
                "restarts": stats.restarts,
                "last_error": stats.last_error,
                "uptime_s": round(stats.uptime_s, 3),
            }
        return out

    def status(self) -> str:
        snap = self.snapshot()
        if not snap.running:
            return "down"
        states = [stats.state for _, stats in snap.walk()]
        if any(s is ChildState.FAILED for s in states):
            return "down"
        if any(s is not ChildState.RUNNING for s in states):
            return "degraded"
        return "ok"

    def breaker_state_name(self) -> str:
        return "not_running" if self.breaker_api is None else self.breaker_api.state_name()

    def trading_state_name(self) -> str:
        # Derived now, so a kill switch flipped a moment ago shows at once.
        return self.trade.guard.refresh_trading_state().state.value

    def drift_gate_state_name(self) -> str:
        return self.trade.gate.value.state

    def venue_connected(self) -> bool:
        return self.trade.venue_connected()

    def venue_last_event_age_s(self) -> float | None:
        return self.trade.last_event_age_s()

    def database_ok(self) -> bool:
        return self.trade.writer.health().database_ok

    def spooled_events(self) -> int:
        return self.trade.writer.health().spooled_events

    def ready_to_trade(self) -> tuple[bool, str]:
        if self.status() == "down":
            return False, "down"
        if self.kill_switch.engaged:
            return False, "kill_switch"
        if self.orders_api is None:
            return False, "no_order_path"
        view = self.trade.router.view.value
        if view.reconciling:
            return False, "reconciling"
        quotes = self.trade.prices.value.quotes
        if any(quotes.get(s) is None for s in self.settings.config.risk.whitelist):
            return False, "no_reference_prices"
        state = self.trading_state_name()
        if state != "ACTIVE":
            return False, state.lower()
        return True, "ok"

    def metrics_text(self) -> bytes:
        for path, stats in self.snapshot().walk():
            for mailbox in stats.mailboxes:
                label = path if mailbox.name == stats.name else f"{path}.{mailbox.name}"
                self.metrics.mailbox_depth.labels(label).set(mailbox.depth)
        return self.metrics.exposition()

    def _export_trades(self, since: Any, until: Any) -> Any:
        from spark.storage.export import aiter_trades_csv

        return aiter_trades_csv(self.settings.config.database.url, since, until,
                                metrics=self.metrics,
                                nice=self.settings.config.writer.thread_nice)

    # -- signal target -------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self.notifier.stopping()
            if self._nursery is not None:
                self._nursery.start_soon(self._grace_timer,
                                         self.settings.config.runtime.shutdown_grace_s)
        self.root.request_stop()

    def force_stop(self, reason: str) -> None:
        self._forced = True
        log.error("forced stop (%s): cancelling every actor now", reason)
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def set_kill_switch(self, engaged: bool, source: str) -> None:
        self.kill_switch.set(engaged, actor=source, source=source)
        log.warning("kill switch %s by %s", "ENGAGED" if engaged else "released", source)

    def reload(self) -> None:
        """SIGHUP: reload the reloadable sections; an invalid file keeps the old config."""
        source = self.settings.source
        if source is None:
            log.warning("SIGHUP: no config file to reload")
            return
        try:
            fresh = load(source, self.env).config
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload rejected: %s", problem)
            self.audit.record("signal:SIGHUP", "config.reload", str(source), "rejected",
                              {"problems": [str(p) for p in exc.problems]})
            return
        current = self.config.value
        changed = [name for name in current.reloadable
                   if getattr(fresh, name) != getattr(current, name)]
        ignored = [f.name for f in attrs.fields(SparkConfig)
                   if f.name not in current.reloadable
                   and getattr(fresh, f.name) != getattr(current, f.name)]
        if ignored:
            log.warning("reload: %s changed but need a restart; keeping the running values",
                        ", ".join(ignored))
        updated = attrs.evolve(current, **{name: getattr(fresh, name) for name in changed})
        self.config.set(updated)
        log.info("reload: applied %s", ", ".join(changed) or "nothing (no changes)")
        self.audit.record("signal:SIGHUP", "config.reload", str(source), "applied",
                          {"sections": changed, "needs_restart": ignored})

    # -- running -------------------------------------------------------------------------------

    async def main(self) -> int:
        """Run until stopped; returns the process exit code (0 graceful, 1 failure)."""
        code = EXIT_OK
        with trio.CancelScope() as scope:
            self._cancel_scope = scope
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(handle_signals, self)
                try:
                    await self.root.run(task_status=_ReadyHook(self))
                except RestartIntensityExceeded as exc:
                    log.critical("the supervision tree gave up, stopping with exit 1: %s", exc,
                                 extra={"actor": exc.child})
                    code = EXIT_FAILURE
                nursery.cancel_scope.cancel()
        if self._forced:
            code = EXIT_FAILURE
        log.info("runtime stopped", extra={"exit_code": code, "reason": self._stop_reason})
        return code

    def _on_ready(self) -> None:
        # Everything alive now (modules, config, the actor tree, connection pools) lives as
        # long as the process: move it out of the cyclic collector's generations so a full
        # collection no longer walks it, which took the longest GC pauses off the order path.
        gc.freeze()
        self.notifier.ready()
        log.info("runtime ready", extra={"control": self.control_address, "venue": self.venue_url})

    async def _grace_timer(self, grace_s: float) -> None:
        await trio.sleep(grace_s)
        log.error("shutdown took longer than runtime.shutdown_grace_s = %s", grace_s)
        self.force_stop("grace period exceeded")

    _nursery: trio.Nursery | None = None


def prepare_database(url: str) -> str | None:
    """Make sure the database can take the runtime's rows; returns a problem to report, or None.

    A brand-new, empty database (the embedded SQLite default on a fresh machine) is created at
    the current schema; an existing database at an older schema is refused — migrating data is an
    operator's decision (``spark-runtime db upgrade``).  An unreachable database is not a startup
    error: the writer spools until it answers.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from spark.storage import migrate
    from spark.storage.engine import make_engine, mask_text
    from spark.storage.errors import SchemaBehind, SchemaUnknown

    engine = make_engine(url)
    try:
        try:
            current = migrate.current_revisions(engine)
            if not current and not sa.inspect(engine).get_table_names():
                log.info("empty database: creating the schema")
                migrate.upgrade(engine)
            migrate.check_schema_current(engine)
        except (SchemaBehind, SchemaUnknown) as exc:
            return str(exc)
        except SQLAlchemyError as exc:
            log.warning("database not reachable at start (%s); the writer will spool until it is",
                        mask_text(str(exc).splitlines()[0]))
    finally:
        engine.dispose()
    return None


class _Reconciliation:
    """Reconciliation entries for the control port (pending until an operator acknowledges)."""

    def __init__(self, trade: Any) -> None:
        self._trade = trade

    def entries(self) -> list[dict[str, Any]]:
        return [
            {"id": e.id, "kind": str(e.kind), "symbol": e.symbol,
             "clientOrderId": e.client_order_id, "detail": e.detail, "mode": e.mode}
            for e in self._trade.router.pending_entries()
        ]

    async def ack(self, id: str, actor: str) -> dict[str, Any]:
        from spark.runtime.control.errors import NotFound

        entry = self._trade.router.acknowledge(id, actor)
        if entry is None:
            raise NotFound(f"no pending reconciliation entry {id}")
        return {"id": id, "acknowledged": True}


class _ReadyHook(trio.TaskStatus[None]):
    """Lets the runtime know when the whole tree is up (sd_notify READY, a log line)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def started(self, value: None = None) -> None:
        self._runtime._on_ready()


def run_from_config(path: str, env: Mapping[str, str] | None = None) -> int:
    """``spark-runtime run``: load, harden, configure logging, run.  Exit 2 on config errors."""
    from spark.runtime.hardening import RootRefused, check_user, harden_process
    from spark.runtime.logs import configure

    env = os.environ if env is None else env
    try:
        settings = load(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    cfg = settings.config
    configure(cfg.runtime.log_level, cfg.runtime.log_format, settings.secrets.known_secret_values())
    harden_process()
    try:
        check_user(allow_root=cfg.runtime.allow_root, simulated=cfg.exchange.mode == "sim")
    except RootRefused as exc:
        log.critical("%s", exc)
        return 2
    from spark.runtime.control.errors import ControlPortRefused

    db_problem = prepare_database(cfg.database.url)
    if db_problem is not None:
        log.critical("%s", db_problem)
        print(f"spark-runtime run: {db_problem}", file=sys.stderr)
        return 2
    try:
        runtime = Runtime(settings, env=env)
    except ControlPortRefused as exc:
        log.critical("%s", exc)
        print(f"spark-runtime run: {exc}", file=sys.stderr)
        return 2
    return trio.run(runtime.main)
