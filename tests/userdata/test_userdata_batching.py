"""How the forwarder cuts batches (idle, size, deadline), the buffer's bookkeeping, and the
lag histogram's bulk path for whole-millisecond lags."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from userdata_helpers import new_metrics

from spark.actors import streamio
from spark.actors.messages import StreamDown, UserEvents, UserStreamItem
from spark.actors.streamio import EventBuffer, LagHistogram, StreamCounters, forward
from spark.exchange.events import BalanceUpdate
from spark.runtime.metrics import FAST_BUCKETS


def ev(n: int) -> BalanceUpdate:
    return BalanceUpdate(event_time=n, asset="USDT", delta=Decimal(n), clear_time=n)


async def test_an_isolated_event_leaves_when_the_process_goes_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Under the autojump clock time jumps to the next deadline whenever every task waits; the
    # forwarder's idle wait comes first, so the event must arrive before the burst deadline.
    buffer = EventBuffer(capacity=100, batch_max=64)
    send, receive = trio.open_memory_channel[UserStreamItem](10)
    counters = StreamCounters(new_metrics(), "user")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: None,
                                           counters=counters, heartbeat_s=60.0))
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        buffer.put("a", ev(1), start)
        with trio.fail_after(1):
            item = await receive.receive()
        assert isinstance(item, UserEvents) and [e.event_time for e in item.events] == [1]
        assert trio.current_time() - start < streamio._BURST_WAIT_S
        nursery.cancel_scope.cancel()


async def test_a_busy_burst_is_cut_at_the_batch_size_without_waiting_for_idle() -> None:
    buffer = EventBuffer(capacity=10_000, batch_max=512)
    send, receive = trio.open_memory_channel[UserStreamItem](100)
    counters = StreamCounters(new_metrics(), "user")
    size = streamio._BURST_BATCH
    sizes: list[int] = []

    async def busy_reader() -> None:  # one event per scheduling round: never idle
        for n in range(3 * size):
            buffer.put("a", ev(n), 0.0)
            await trio.lowlevel.checkpoint()
        buffer.notice(StreamDown("a", "stop", 0.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: None,
                                           counters=counters, heartbeat_s=60.0))
        nursery.start_soon(busy_reader)
        with trio.fail_after(5):
            while True:
                item = await receive.receive()
                if isinstance(item, StreamDown):
                    break
                assert isinstance(item, UserEvents)
                sizes.append(len(item.events))
        nursery.cancel_scope.cancel()
    assert sum(sizes) == 3 * size
    # Batches, never one hand-over per event; a batch is cut once it holds ``size`` events
    # (the reader may add one more before the forwarder runs).
    assert len(sizes) <= 6 and max(sizes) <= size + 1


async def test_a_notice_closes_the_batch_being_held() -> None:
    buffer = EventBuffer(capacity=100, batch_max=64)
    send, receive = trio.open_memory_channel[UserStreamItem](10)
    counters = StreamCounters(new_metrics(), "user")

    async def spinner() -> None:  # keeps the process busy: no idle, only the notice can end it
        while True:
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: None,
                                           counters=counters, heartbeat_s=60.0))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(spinner)
        start = trio.current_time()
        buffer.put("a", ev(1), start)
        await trio.lowlevel.checkpoint()
        buffer.notice(StreamDown("a", "gone", start))
        with trio.fail_after(1):
            first = await receive.receive()
            second = await receive.receive()
        assert isinstance(first, UserEvents) and isinstance(second, StreamDown)
        nursery.cancel_scope.cancel()


async def test_heartbeat_reports_progress_while_idle_and_while_held_back() -> None:
    buffer = EventBuffer(capacity=100, batch_max=4)
    send, receive = trio.open_memory_channel[UserStreamItem](0)  # nobody takes: held back
    counters = StreamCounters(new_metrics(), "user")
    beats: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: forward(buffer, send, progress=lambda: beats.append(
            trio.current_time()), counters=counters, heartbeat_s=0.05))
        await trio.sleep(0.3)  # idle
        idle_beats = len(beats)
        buffer.put("a", ev(1), 0.0)
        await trio.sleep(0.3)  # the router does not take the batch
        held_beats = len(beats) - idle_beats
        got = await receive.receive()
        nursery.cancel_scope.cancel()
    assert idle_beats >= 3 and held_beats >= 3
    assert isinstance(got, UserEvents)


def test_put_reports_full_and_high_water_is_the_peak() -> None:
    buffer = EventBuffer(capacity=3, batch_max=2)
    assert [buffer.put("a", ev(n), 0.0) for n in range(4)] == [False, False, True, True]
    assert buffer.high_water == 4 and buffer.full
    buffer.take_nowait()
    assert buffer.events == 2 and buffer.high_water == 4
    buffer.take_nowait()
    buffer.put("a", ev(9), 0.0)
    assert buffer.events == 1 and buffer.high_water == 4


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(
    st.integers(-100, 30_000),
    st.sampled_from([round(b * 1000) + d for b in FAST_BUCKETS for d in (-1, 0, 1)]),
), max_size=40), max_size=4))
def test_whole_millisecond_lags_bin_like_observe(flushes: list[list[int]]) -> None:
    """The bulk path (sorted, one bisection per bucket) gives the same buckets as observing each
    lag in seconds, negative lags (clock offset) counted as 0."""
    registry = CollectorRegistry()
    reference = Histogram("ref_seconds", "x", buckets=FAST_BUCKETS, registry=registry)
    bulk = LagHistogram(Histogram("bulk_seconds", "x", buckets=FAST_BUCKETS,
                                  registry=registry))
    for lags in flushes:
        for lag_ms in lags:
            reference.observe(lag_ms / 1000.0 if lag_ms > 0 else 0.0)
            bulk.pending_ms.append(lag_ms)  # what a reader does per event
        bulk.flush()
    for le in [*map(str, FAST_BUCKETS), "+Inf"]:
        assert registry.get_sample_value("bulk_seconds_bucket", {"le": le}) == \
            registry.get_sample_value("ref_seconds_bucket", {"le": le}), le
    assert registry.get_sample_value("bulk_seconds_sum") == pytest.approx(
        registry.get_sample_value("ref_seconds_sum"))


@pytest.mark.parametrize("bound", [*FAST_BUCKETS, 0.0003, 0.0029, 7.5, math.inf])
def test_bucket_limits_in_whole_milliseconds(bound: float) -> None:
    limit = streamio._max_ms_within(bound)
    if math.isinf(bound):
        assert math.isinf(limit)
    else:
        assert limit / 1000.0 <= bound < (limit + 1) / 1000.0
