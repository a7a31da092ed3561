"""The readers' event buffer, the forwarder's batching and the bulk lag histogram."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from userdata_helpers import new_metrics, sample

from spark.actors.messages import StreamDown, StreamUp, UserEvents, UserStreamItem
from spark.actors.streamio import EventBuffer, LagHistogram, StreamCounters, forward
from spark.exchange.events import BalanceUpdate
from spark.runtime.metrics import FAST_BUCKETS


def ev(n: int) -> BalanceUpdate:
    from decimal import Decimal

    return BalanceUpdate(event_time=n, asset="USDT", delta=Decimal(n), clear_time=n)


def flatten(items: list[UserStreamItem]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, UserEvents):
            out.extend((item.connection, e.event_time) for e in item.events)
        else:
            out.append((type(item).__name__, item.connection))
    return out


Op = tuple[str, Any]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("up"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("take"), st.none()),
), max_size=60), st.integers(1, 5))
def test_buffer_keeps_order_loses_nothing_and_never_mixes_connections(
        ops: list[Op], batch_max: int) -> None:
    buffer = EventBuffer(capacity=1000, batch_max=batch_max)
    expected: list[tuple[str, Any]] = []
    taken: list[UserStreamItem] = []
    n = 0
    for op, conn in ops:
        if op == "put":
            n += 1
            buffer.put(conn, ev(n), float(n))
            expected.append((conn, n))
        elif op == "up":
            buffer.notice(StreamUp(conn, True, 0.0))
            expected.append(("StreamUp", conn))
        else:
            item = buffer.take_nowait()
            if item is not None:
                taken.append(item)
    while (item := buffer.take_nowait()) is not None:
        taken.append(item)
    assert flatten(taken) == expected
    assert buffer.events == 0 and len(buffer) == 0
    for item in taken:
        if isinstance(item, UserEvents):
            assert 1 <= len(item.events) <= batch_max
            # received_at is the arrival of the batch's first event
            assert item.received_at == float(item.events[0].event_time)


async def test_capacity_makes_readers_wait_and_taking_frees_space() -> None:
    buffer = EventBuffer(capacity=3, batch_max=10)
    for n in range(3):
        buffer.put("a", ev(n), 0.0)
    assert buffer.full
    freed: list[bool] = []

    async def reader() -> None:
        await buffer.wait_space()
        freed.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert freed == []
        batch = buffer.take_nowait()
        assert isinstance(batch, UserEvents) and len(batch.events) == 3
    assert freed == [True] and not buffer.full


async def test_forward_batches_a_burst_and_keeps_notices_in_order() -> None:
    buffer = EventBuffer(capacity=10_000, batch_max=64)
    send, receive = trio.open_memory_channel[UserStreamItem](100)
    metrics = new_metrics()
    counters = StreamCounters(metrics, "user")

    async def burst() -> None:
        buffer.notice(StreamUp("a", True, 0.0))
        for n in range(200):  # one event per scheduling round, like a socket reader
            buffer.put("a", ev(n), 0.0)
            counters.frames += 1
            await trio.lowlevel.checkpoint()
        buffer.notice(StreamDown("a", "stop", 1.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: None,
                                           counters=counters, heartbeat_s=1.0))
        await burst()
        got: list[UserStreamItem] = []
        with trio.fail_after(5):
            while not got or not isinstance(got[-1], StreamDown):
                got.append(await receive.receive())
        nursery.cancel_scope.cancel()
    assert flatten(got) == [("StreamUp", "a"), *[("a", n) for n in range(200)],
                            ("StreamDown", "a")]
    batches = [g for g in got if isinstance(g, UserEvents)]
    assert len(batches) <= 200 / 4  # not one hand-over per event
    assert sample(metrics, "spark_ws_messages_total", stream="user") == 200


async def test_forward_waits_for_the_router_without_dropping() -> None:
    buffer = EventBuffer(capacity=10_000, batch_max=2)
    send, receive = trio.open_memory_channel[UserStreamItem](1)
    counters = StreamCounters(new_metrics(), "user")
    for n in range(20):
        buffer.put("a", ev(n), 0.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: None,
                                           counters=counters, heartbeat_s=0.05))
        got: list[UserStreamItem] = []
        with trio.fail_after(5):
            while len(flatten(got)) < 20:
                await trio.sleep(0.01)  # a slow router
                got.append(await receive.receive())
        nursery.cancel_scope.cancel()
    assert flatten(got) == [("a", n) for n in range(20)]


@pytest.mark.parametrize("values", [
    [0.0, 0.0001, 0.00010001, 0.001, 0.0025, 0.5, 1.0, 9.99, 10.0, 10.01, 1e9],
    [0.003] * 7 + [0.2] * 3,
])
def test_lag_histogram_matches_per_value_observe(values: list[float]) -> None:
    registry = CollectorRegistry()
    reference = Histogram("ref_seconds", "x", buckets=FAST_BUCKETS, registry=registry)
    bulk_target = Histogram("bulk_seconds", "x", buckets=FAST_BUCKETS, registry=registry)
    bulk = LagHistogram(bulk_target)
    for v in values:
        reference.observe(v)
        bulk.observe(v)
    assert registry.get_sample_value("bulk_seconds_count") == 0  # not flushed yet
    bulk.flush()
    bulk.flush()  # idempotent
    for le in [*map(str, FAST_BUCKETS), "+Inf"]:
        assert registry.get_sample_value("bulk_seconds_bucket", {"le": le}) == \
            registry.get_sample_value("ref_seconds_bucket", {"le": le}), le
    assert registry.get_sample_value("bulk_seconds_sum") == pytest.approx(
        registry.get_sample_value("ref_seconds_sum"))
