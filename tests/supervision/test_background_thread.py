"""``BackgroundThread``: jobs run in one thread of their own, below the loop's priority, with
``trio.to_thread.run_sync``'s result, error and cancellation semantics."""

from __future__ import annotations

import contextvars
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


async def test_a_caller_cancelled_before_its_job_starts_is_released_and_the_job_skipped() -> None:
    worker = BackgroundThread("test-bg")
    release = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        release.wait(5)
        ran.append("blocker")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run_sync, blocker)
            await trio.sleep(0.01)  # the blocker is running; the next job queues behind it
            with trio.move_on_after(0.05) as scope:
                await worker.run_sync(lambda: ran.append("queued"))
            assert scope.cancelled_caught  # released at once, not after the blocker
            release.set()
        assert await worker.run_sync(lambda: "next") == "next"
        assert ran == ["blocker"]  # the cancelled job never ran
    finally:
        release.set()
        worker.close()


async def test_jobs_see_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    worker = BackgroundThread("test-bg")
    try:
        var.set("caller")
        assert await worker.run_sync(var.get) == "caller"
    finally:
        worker.close()


async def test_a_base_exception_in_a_job_reaches_the_caller_and_the_thread_lives_on() -> None:
    worker = BackgroundThread("test-bg")
    try:
        def leave() -> None:
            raise SystemExit(3)

        with pytest.raises(SystemExit):
            await worker.run_sync(leave)
        assert await worker.run_sync(lambda: "alive") == "alive"
    finally:
        worker.close()


async def test_a_thread_that_cannot_start_fails_the_call_instead_of_hanging(
        monkeypatch: pytest.MonkeyPatch) -> None:
    worker = BackgroundThread("test-bg")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    for _ in range(2):  # the second call must not wait on a job nobody runs
        with trio.fail_after(2), pytest.raises(RuntimeError, match="can't start"):
            await worker.run_sync(lambda: 1)
    monkeypatch.undo()
    try:
        assert await worker.run_sync(lambda: 2) == 2  # and it starts once it can
    finally:
        worker.close()


async def test_close_lets_queued_jobs_finish() -> None:
    worker = BackgroundThread("test-bg")
    release = threading.Event()
    done: list[int] = []

    def job(n: int) -> int:
        release.wait(5)
        done.append(n)
        return n

    results: list[int] = []

    async def call(n: int) -> None:
        results.append(await worker.run_sync(lambda: job(n)))

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(call, n)
            await trio.sleep(0.01)
        worker.close()
        release.set()
    assert sorted(results) == [0, 1, 2] and done == [0, 1, 2]


@pytest.mark.skipif(sys.platform != "linux", reason="OS thread names via prctl are Linux only")
async def test_the_os_thread_carries_the_name() -> None:
    worker = BackgroundThread("spark-writer-with-a-long-name")
    try:
        tid = await worker.run_sync(threading.get_native_id)
        with open(f"/proc/self/task/{tid}/comm") as comm:
            assert comm.read().strip() == "spark-writer-wi"  # the kernel keeps 15 bytes
    finally:
        worker.close()
