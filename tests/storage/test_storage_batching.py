"""The writer's sans-IO decisions: batch bounds, routing, backoff (time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.storage.batching import Batcher, Destination, WriterCore


def test_batch_due_by_size() -> None:
    b: Batcher[int] = Batcher(max_size=3, max_delay_s=10.0)
    assert not b.due(0.0) and b.flush_at is None
    b.add(1, 0.0)
    b.add(2, 0.1)
    assert not b.due(0.2)
    b.add(3, 0.2)
    assert b.full and b.due(0.2)
    assert b.take() == [1, 2, 3]
    assert len(b) == 0 and not b.due(100.0)


def test_batch_due_by_age_of_the_oldest() -> None:
    b: Batcher[str] = Batcher(max_size=100, max_delay_s=0.005)
    b.add("a", 10.0)
    b.add("b", 10.004)
    assert b.flush_at == pytest.approx(10.005)
    assert not b.due(10.0049)
    assert b.due(10.005)
    b.take()
    b.add("c", 11.0)  # the clock restarts with the next batch
    assert b.flush_at == pytest.approx(11.005)


def test_zero_delay_flushes_at_once() -> None:
    b: Batcher[int] = Batcher(max_size=100, max_delay_s=0.0)
    b.add(1, 5.0)
    assert b.due(5.0)


@given(
    arrivals=st.lists(st.floats(0, 0.01), min_size=1, max_size=200),
    max_size=st.integers(1, 20),
    delay=st.floats(0, 0.02),
)
def test_property_no_item_waits_past_the_bound_and_none_is_lost(
    arrivals: list[float], max_size: int, delay: float
) -> None:
    """Simulate: items arrive at increasing times; flush whenever due (checked at each step)."""
    b: Batcher[int] = Batcher(max_size=max_size, max_delay_s=delay)
    now = 0.0
    flushed: list[int] = []
    for i, gap in enumerate(arrivals):
        # Before the next arrival, the actor wakes at flush_at if that comes first.
        if b.flush_at is not None and b.flush_at <= now + gap:
            now = max(now, b.flush_at)
            assert b.due(now)
            flushed.extend(b.take())
        now += gap
        b.add(i, now)
        if b.due(now):
            batch = b.take()
            assert len(batch) <= max_size
            flushed.extend(batch)
    flushed.extend(b.take())
    assert flushed == list(range(len(arrivals)))


def test_core_routes_to_database_while_healthy() -> None:
    core = WriterCore(retry_initial_s=0.5, retry_max_s=4.0)
    assert core.destination() is Destination.DATABASE
    assert not core.attempt_due(0.0) and core.wake_at() is None


def test_core_backoff_doubles_up_to_the_cap_and_resets() -> None:
    core = WriterCore(retry_initial_s=0.5, retry_max_s=4.0)
    now = 100.0
    delays = []
    for _ in range(6):
        retry_at = core.write_failed(now, "OperationalError: down")
        delays.append(retry_at - now)
        assert core.destination() is Destination.SPOOL
        assert not core.attempt_due(retry_at - 0.001)
        assert core.attempt_due(retry_at)
        assert core.wake_at() == retry_at
        now = retry_at
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert core.last_error == "OperationalError: down" and not core.database_ok
    core.write_succeeded()
    assert core.database_ok and core.last_error is None
    assert core.write_failed(now, "again") - now == 0.5


def test_core_drains_the_spool_before_writing_directly_again() -> None:
    core = WriterCore(retry_initial_s=0.5, retry_max_s=4.0)
    core.write_failed(0.0, "down")
    core.spool_changed(10)
    core.write_succeeded()  # the database answered
    assert core.database_ok and not core.healthy
    assert core.destination() is Destination.SPOOL  # new records queue behind the backlog
    assert core.attempt_due(0.0)  # replay immediately, no backoff
    core.spool_changed(0)
    assert core.healthy and core.destination() is Destination.DATABASE
    assert not core.attempt_due(0.0)


def test_core_rejects_nonsense_policy() -> None:
    with pytest.raises(ValueError):
        WriterCore(retry_initial_s=0, retry_max_s=1)
    with pytest.raises(ValueError):
        WriterCore(retry_initial_s=2, retry_max_s=1)


def test_time_in_the_inbox_counts_towards_the_bound() -> None:
    b: Batcher[str] = Batcher(max_size=100, max_delay_s=0.005)
    b.add("queued while the last batch was written", 9.998)  # taken at 10.0, arrived earlier
    assert b.flush_at == pytest.approx(10.003)
    b.add("older still", 9.990)
    assert b.due(10.0)


def test_extend_adds_in_order_and_keeps_the_earliest_arrival() -> None:
    b: Batcher[int] = Batcher(max_size=5, max_delay_s=1.0)
    b.extend([], 0.0)
    assert len(b) == 0 and b.flush_at is None
    b.extend([1, 2], 3.0)
    b.add(3, 2.5)  # waiting since earlier still: the bound moves up
    b.extend([4], 9.0)  # a later arrival does not push it back
    assert b.flush_at == pytest.approx(3.5)
    b.extend([5], 9.0)
    assert b.full and b.take() == [1, 2, 3, 4, 5]
