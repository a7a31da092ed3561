"""The drift gate actor waits with one plain receive per message; a stop request or a config
reload still reaches it at once, not at the next heartbeat (which these tests set to an hour)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
from userdata_helpers import new_metrics

from spark.actors.drift_gate import DriftGateActor
from spark.actors.messages import ShadowDone, ShadowOrder
from spark.config.schema import DriftGateConfig, SparkConfig
from spark.core.published import Published
from spark.supervision import ChildContext

CONFIG = DriftGateConfig(max_drift_bps=Decimal(50), max_pnl_delta=Decimal(5),
                         recovery_observations=3, paper_slippage_bps=Decimal(0))
HOUR = 3600.0


def new_gate(spark_config: Published[SparkConfig] | None) -> DriftGateActor:
    audit: list[dict[str, Any]] = []
    return DriftGateActor(CONFIG, new_metrics(), audit=audit.append,
                          spark_config=spark_config, heartbeat_s=HOUR)


async def test_reload_and_stop_interrupt_an_idle_wait() -> None:
    spark_config = Published(SparkConfig(drift_gate=CONFIG))
    gate = new_gate(spark_config)
    ctx = ChildContext("drift_gate")
    stopped = trio.Event()

    async def run() -> None:
        await gate.run(ctx)
        stopped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.view.value.enabled
        spark_config.set(SparkConfig(drift_gate=DriftGateConfig(enabled=False)))
        with trio.fail_after(2):
            while gate.view.value.enabled:
                await trio.sleep(0.001)
        # A second reload: the watcher keeps watching after the first.
        spark_config.set(SparkConfig(drift_gate=CONFIG))
        with trio.fail_after(2):
            while not gate.view.value.enabled:
                await trio.sleep(0.001)
        ctx.request_stop()
        with trio.fail_after(2):
            await stopped.wait()


async def test_messages_are_applied_without_a_heartbeat_and_a_stop_drains_the_inbox() -> None:
    gate = new_gate(None)
    ctx = ChildContext("drift_gate")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gate.run, ctx)
        await trio.testing.wait_all_tasks_blocked()
        await gate.inbox.send(ShadowOrder("c1", "BTCUSDT", "BUY", Decimal("0.001"),
                                          Decimal(45000), 1))
        with trio.fail_after(2):
            while gate.gate.shadow("c1") is None:
                await trio.sleep(0.001)
        ctx.request_stop()
        gate.inbox.send_nowait(ShadowDone("c1"))  # queued as the stop lands: still applied
    assert gate.gate.shadow("c1") is None
