"""``BackgroundThread``: jobs run in one thread of their own, below the loop's priority, with
``trio.to_thread.run_sync``'s result, error and cancellation semantics."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import trio

from spark.supervision.threads import BackgroundThread


async def test_runs_jobs_in_order_in_one_other_thread() -> None:
    worker = BackgroundThread("test-bg")
    try:
        seen: list[tuple[int, int]] = []

        def job(n: int) -> int:
            seen.append((n, threading.get_ident()))
            return n * 2

        results = [await worker.run_sync(lambda n=n: job(n)) for n in range(5)]
        assert results == [0, 2, 4, 6, 8]
        assert [n for n, _ in seen] == list(range(5))
        threads = {ident for _, ident in seen}
        assert len(threads) == 1 and threading.get_ident() not in threads
    finally:
        worker.close()


async def test_concurrent_callers_are_served_one_at_a_time() -> None:
    worker = BackgroundThread("test-bg")
    running = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(worker.run_sync, job)
        assert most == 1
    finally:
        worker.close()


async def test_exceptions_reach_the_caller() -> None:
    worker = BackgroundThread("test-bg")
    try:
        def boom() -> None:
            raise KeyError("missing")

        with pytest.raises(KeyError, match="missing"):
            await worker.run_sync(boom)
        assert await worker.run_sync(lambda: "still works") == "still works"
    finally:
        worker.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux only")
async def test_the_thread_runs_below_the_callers_priority() -> None:
    worker = BackgroundThread("test-bg", nice=7)
    try:
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        theirs = await worker.run_sync(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert theirs == min(19, mine + 7)
        assert worker.priority == "nice +7"
        # The loop's own thread is untouched.
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    finally:
        worker.close()


async def test_a_cancelled_caller_waits_for_its_job_then_sees_cancelled() -> None:
    """As ``trio.to_thread.run_sync``: the job cannot be abandoned halfway, so the caller gets
    its result and the cancellation lands at the caller's next checkpoint."""
    worker = BackgroundThread("test-bg")
    release = threading.Event()
    done: list[str] = []

    def job() -> None:
        release.wait(5)
        done.append("job")

    try:
        with trio.move_on_after(0.05) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, lambda: (time.sleep(0.2),
                                                                     release.set()))
                await worker.run_sync(job)
                done.append("after")
                await trio.sleep_forever()  # cancelled here
        assert scope.cancelled_caught
        assert done == ["job", "after"]
    finally:
        worker.close()


async def test_closed_refuses_new_jobs_and_the_thread_exits() -> None:
    worker = BackgroundThread("test-bg")
    assert await worker.run_sync(lambda: 1) == 1
    thread = worker._thread
    assert thread is not None
    worker.close()
    worker.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await worker.run_sync(lambda: 2)
    await trio.to_thread.run_sync(thread.join, 5)
    assert not thread.is_alive()
