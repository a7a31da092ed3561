"""Loop lag, and the cost of a supervised actor hop vs. a bare Trio channel round trip.

Run by hand: ``python bench/loop_lag.py [--n 200000]``.  One run measures, in the same process:

- the floor: a message to a task in a plain nursery over a memory channel and its reply back;
- the supervised hop: the same exchange with a child started by ``spark.supervision.Supervisor``
  that calls ``ctx.progress()`` per message (as every actor does) and registers its mailbox;
- loop lag sampled by the runtime's own ``LoopLagMonitor`` while the supervised hop runs.

It prints both rates and their ratio (supervised / floor; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from spark.runtime.loop_lag import LoopLagMonitor
from spark.runtime.metrics import Metrics
from spark.runtime.sdnotify import SdNotifier
from spark.supervision import ChildContext, ChildSpec, Supervisor

BUFFER = 1


async def echo_bare(
    inbox: trio.MemoryReceiveChannel[int], outbox: trio.MemorySendChannel[int]
) -> None:
    async for message in inbox:
        await outbox.send(message)


async def drive(
    n: int, to_actor: trio.MemorySendChannel[int], replies: trio.MemoryReceiveChannel[int]
) -> float:
    start = time.perf_counter()
    for i in range(n):
        await to_actor.send(i)
        await replies.receive()
    return time.perf_counter() - start


async def bare(n: int) -> float:
    to_actor, inbox = trio.open_memory_channel[int](BUFFER)
    outbox, replies = trio.open_memory_channel[int](BUFFER)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_bare, inbox, outbox)
        elapsed = await drive(n, to_actor, replies)
        nursery.cancel_scope.cancel()
    return elapsed


async def supervised(n: int, lag_samples: list[float]) -> float:
    to_actor, inbox = trio.open_memory_channel[int](BUFFER)
    outbox, replies = trio.open_memory_channel[int](BUFFER)

    async def echo(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx.register_mailbox("echo", inbox)
        task_status.started()
        async for message in inbox:
            ctx.progress()
            await outbox.send(message)

    metrics = Metrics(process=False)
    monitor = LoopLagMonitor(metrics, 0.01, SdNotifier({}))

    async def sample(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as inner:
            await inner.start(monitor.run, ctx)
            task_status.started()
            while True:
                await trio.sleep(0.01)
                lag_samples.append(monitor.last_lag_s)

    # The bench children ignore polite stops; a short deadline cancels them at the end.
    sup = Supervisor("bench", [ChildSpec(name="echo", entry=echo, shutdown_deadline_s=0.01),
                               ChildSpec(name="lag", entry=sample, shutdown_deadline_s=0.01)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        elapsed = await drive(n, to_actor, replies)
        sup.request_stop()
    return elapsed


async def main(n: int) -> None:
    await bare(1000)  # warm up
    floor = await bare(n)
    lags: list[float] = []
    hop = await supervised(n, lags)
    floor_rate, hop_rate = n / floor, n / hop
    print(f"round trips: {n}")
    print(f"bare channel round trip : {floor_rate:12,.0f} /s  ({floor / n * 1e6:.2f} us each)")
    print(f"supervised actor hop    : {hop_rate:12,.0f} /s  ({hop / n * 1e6:.2f} us each)")
    print(f"ratio supervised/bare   : {hop_rate / floor_rate:.3f}")
    if lags:
        lags.sort()
        p99 = lags[int(len(lags) * 0.99) - 1] if len(lags) > 1 else lags[0]
        print(f"loop lag under load     : median {statistics.median(lags) * 1e3:.3f} ms, "
              f"p99 {p99 * 1e3:.3f} ms, max {lags[-1] * 1e3:.3f} ms ({len(lags)} samples)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    trio.run(main, parser.parse_args().n)
