"""The drift gate actor fed by real fills: a venue price jump closes it, healthy fills reopen it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
from userdata_helpers import (
    Link,
    client_id,
    is_up,
    new_metrics,
    run_link,
    run_market,
    sample,
    sim_venue,
)

from spark.actors.drift_gate import DriftGateActor
from spark.actors.market_stream import MarketStream
from spark.actors.messages import (
    ForceGate,
    GateView,
    LiveFill,
    ShadowOrder,
    UserEvents,
)
from spark.config.schema import DriftGateConfig, SparkConfig
from spark.core.clock import SYSTEM_CLOCK
from spark.core.published import Published
from spark.exchange.events import ExecutionEvent
from spark.supervision import ChildContext

SYMBOL = "BTCUSDT"
CONFIG = DriftGateConfig(max_drift_bps=Decimal(50), max_pnl_delta=Decimal(5),
                         recovery_observations=3, paper_slippage_bps=Decimal(0))


async def reference_price(market: MarketStream, after_version: int) -> tuple[int, Decimal]:
    """The board's mid for SYMBOL once a quote newer than ``after_version`` is published."""
    with trio.fail_after(5):
        version, board = await market.board.wait_changed(after_version)
        while (quote := board.quotes.get(SYMBOL)) is None or quote.mid is None:
            version, board = await market.board.wait_changed(version)
    return version, quote.mid


class Router:
    """The test's stand-in for the order router: shadow at send, a LiveFill per new fill."""

    def __init__(self, link: Link, gate: DriftGateActor) -> None:
        self.link = link
        self.gate = gate
        self.fed: set[str] = set()

    async def order(self, reference: Decimal, qty: str = "0.001",
                    before_send: Any = None) -> str:
        cid = client_id("drift")
        await self.gate.inbox.send(ShadowOrder(cid, SYMBOL, "BUY", Decimal(qty), reference,
                                               SYSTEM_CLOCK.now_ms()))
        if before_send is not None:
            await before_send()
        await self.link.rest.place_order(SYMBOL, "BUY", "MARKET", new_client_order_id=cid,
                                         quantity=Decimal(qty))
        await self.link.executions(
            lambda evs: any(e.client_order_id == cid and e.order_status == "FILLED"
                            for e in evs))
        for item in self.link.items:
            if not isinstance(item, UserEvents):
                continue
            for e in item.events:
                if isinstance(e, ExecutionEvent) and e.is_trade \
                        and e.execution_id not in self.fed and e.client_order_id == cid:
                    self.fed.add(e.execution_id)
                    await self.gate.inbox.send(LiveFill(
                        e.client_order_id, e.symbol, e.side, e.last_price, e.last_qty,
                        e.transaction_time, item.received_at, done=e.order_status == "FILLED"))
        return cid


async def settled(gate: DriftGateActor, decisions: int) -> GateView:
    with trio.fail_after(5):
        while gate.decisions < decisions:
            await trio.sleep(0.01)
    return gate.view.value


async def test_price_jump_closes_the_gate_and_healthy_fills_reopen_it() -> None:
    metrics = new_metrics()
    audit: list[dict[str, Any]] = []
    spark_config = Published(SparkConfig(drift_gate=CONFIG))
    gate = DriftGateActor(CONFIG, metrics, audit=audit.append, spark_config=spark_config,
                          heartbeat_s=0.2)
    ctx = ChildContext("drift_gate")
    async with sim_venue() as sim, run_market(sim, (SYMBOL,)) as market, \
            run_link(sim, "spot", metrics=metrics) as link, trio.open_nursery() as nursery:
        await nursery.start(gate.run, ctx)
        await link.until(is_up())
        router = Router(link, gate)
        version = market.board.version
        await sim.admin("POST", "/_sim/price", {"symbol": SYMBOL, "price": "45000"})
        version, ref = await reference_price(market, version)

        # A healthy fill: live at the paper price (within a tick).
        await router.order(ref)
        view = await settled(gate, 1)
        assert view.state == "open" and view.last_drift_bps is not None
        assert abs(view.last_drift_bps) < 1

        # The price jumps 2 % between sending and filling: 200 bps of drift closes the gate.
        async def jump() -> None:
            await sim.admin("POST", "/_sim/price", {"symbol": SYMBOL, "price": "45900"})

        await router.order(ref, before_send=jump)
        view = await settled(gate, 2)
        assert view.state == "closed" and not view.forced and view.cause == "drift"
        assert view.last_drift_bps is not None and view.last_drift_bps > 150
        assert audit[-1]["state"] == "closed" and audit[-1]["cause"] == "drift"
        assert sample(metrics, "spark_drift_gate_open") == 0
        assert sample(metrics, "spark_drift_gate_close_total") == 1
        assert sample(metrics, "spark_drift_price_bps") > 150

        # Recovery: N (= 3) consecutive healthy fills at the new price reopen it.
        version, ref = await reference_price(market, version)
        for n in range(1, 4):
            await router.order(ref)
            view = await settled(gate, 2 + n)
            assert view.state == ("open" if n == 3 else "closed"), n
        assert audit[-1]["state"] == "open" and audit[-1]["cause"] == "recovered"
        assert sample(metrics, "spark_drift_gate_open") == 1
        assert sample(metrics, "spark_drift_decision_seconds_count") == 5

        # Operator: a forced close is latched, healthy fills do not reopen it.
        view = await gate.force_close("admin:abcd", "maintenance")
        assert view.state == "closed" and view.forced
        assert audit[-1]["operator"] == "admin:abcd" and audit[-1]["cause"] == "operator_close"
        await router.order(ref)
        view = await settled(gate, 6)
        assert view.state == "closed" and view.forced
        await gate.inbox.send(ForceGate(True, "admin:abcd", "done"))
        with trio.fail_after(5):
            while gate.view.value.state != "open":
                await trio.sleep(0.01)
        assert not gate.view.value.forced

        # A reloaded [drift_gate] (SIGHUP) is applied: disabling stops observations.
        spark_config.set(SparkConfig(drift_gate=DriftGateConfig(enabled=False)))
        with trio.fail_after(5):
            while gate.view.value.enabled:
                await trio.sleep(0.01)
        ctx.request_stop()
