"""Restart decisions in a running tree: strategies, intensity, backoff, restart types, stalls."""

from __future__ import annotations

import math
import random

import pytest
import trio
import trio.testing
from sup_helpers import Boom, Life, Recorder, child

from spark.supervision import (
    Backoff,
    ChildContext,
    ChildNotReady,
    ChildSpec,
    ChildStalled,
    ChildState,
    ChildStats,
    Intensity,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    SupervisionError,
    Supervisor,
)

NO_BACKOFF = Backoff(initial_s=0.0, jitter=0.0)
CRASH_AFTER_1S = Life(uptime=1.0, end="crash")


def _stats(sup: Supervisor) -> dict[str, ChildStats]:
    return {path: stats for path, stats in sup.snapshot().walk()}


async def _run_for(sup: Supervisor, seconds: float) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(seconds)
        sup.request_stop()


# -- strategies -------------------------------------------------------------------------------


def _three(rec: Recorder) -> list[ChildSpec]:
    return [child(rec, "a"), child(rec, "b", lives=[CRASH_AFTER_1S]), child(rec, "c")]


async def test_one_for_one_restarts_only_the_crashed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor("root", _three(rec), strategy=Strategy.ONE_FOR_ONE, backoff=NO_BACKOFF)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2.0)
        assert rec.seq(since=1.0) == ["crash b", "start b", "ready b"]
        sup.request_stop()
    assert rec.count("start", "a") == rec.count("start", "c") == 1


async def test_one_for_all_stops_all_in_reverse_then_restarts_all_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor("root", _three(rec), strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2.0)
        assert rec.seq(since=1.0) == [
            "crash b",
            "stop_requested c",
            "exit c",
            "stop_requested a",
            "exit a",
            "start a",
            "ready a",
            "start b",
            "ready b",
            "start c",
            "ready c",
        ]
        stats = _stats(sup)
        sup.request_stop()
    # Siblings taken down with the crashed child were restarted too, and say so.
    assert [stats[name].restarts for name in "abc"] == [1, 1, 1]


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor("root", _three(rec), strategy=Strategy.REST_FOR_ONE, backoff=NO_BACKOFF)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2.0)
        assert rec.seq(since=1.0) == [
            "crash b",
            "stop_requested c",
            "exit c",
            "start b",
            "ready b",
            "start c",
            "ready c",
        ]
        sup.request_stop()
    assert rec.count("start", "a") == 1


async def test_group_restart_waits_for_the_crashed_childs_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        _three(rec),
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(initial_s=2.0, jitter=0.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(1.5)
        assert {name: s.state for name, s in _stats(sup).items()} == {
            "a": ChildState.BACKING_OFF,
            "b": ChildState.BACKING_OFF,
            "c": ChildState.BACKING_OFF,
        }
        await trio.sleep(2.0)
        sup.request_stop()
    assert rec.times("start", "a") == [0.0, 3.0]
    assert rec.times("start", "b") == [0.0, 3.0]


# -- intensity --------------------------------------------------------------------------------


async def test_n_restarts_within_the_window_are_tolerated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "flaky", lives=[CRASH_AFTER_1S] * 3)],
        intensity=Intensity(max_restarts=3, within_s=10.0),
        backoff=NO_BACKOFF,
    )
    await _run_for(sup, 20.0)
    assert rec.count("crash", "flaky") == 3
    assert _stats(sup)["flaky"].restarts == 3


async def test_one_restart_too_many_within_the_window_escalates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "steady"), child(rec, "flaky", default=CRASH_AFTER_1S)],
        intensity=Intensity(max_restarts=3, within_s=10.0),
        backoff=NO_BACKOFF,
    )
    with pytest.raises(RestartIntensityExceeded) as info, trio.fail_after(100.0):
        await sup.run()
    error = info.value
    assert isinstance(error, SupervisionError)
    assert error.reason == "restart_intensity_exceeded"
    assert error.child == "flaky"
    assert error.supervisor == "root"
    assert isinstance(error.last_error, Boom)
    assert error.__cause__ is error.last_error
    assert trio.current_time() == 4.0  # crashes at 1, 2, 3 were restarted; the 4th was one too many
    assert rec.count("crash", "flaky") == 4
    # Before raising, the supervisor stopped what was still running.
    assert rec.seq(kinds=["stop_requested", "exit"]) == ["stop_requested steady", "exit steady"]
    stats = _stats(sup)
    assert stats["flaky"].state is ChildState.FAILED
    assert stats["steady"].state is ChildState.STOPPED


async def test_restarts_spread_wider_than_the_window_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "flaky", default=Life(uptime=6.0, end="crash"))],
        intensity=Intensity(max_restarts=2, within_s=10.0),
        backoff=NO_BACKOFF,
    )
    await _run_for(sup, 61.0)
    assert rec.count("crash", "flaky") == 10


async def test_a_permanent_child_returning_normally_is_restarted_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "returns", default=Life(uptime=1.0, end="return"))],
        intensity=Intensity(max_restarts=2, within_s=10.0),
        backoff=NO_BACKOFF,
    )
    with pytest.raises(RestartIntensityExceeded) as info, trio.fail_after(100.0):
        await sup.run()
    assert rec.count("return", "returns") == 3
    assert info.value.last_error is None
    assert info.value.__cause__ is None
    assert "returned normally" in str(info.value)


# -- backoff ----------------------------------------------------------------------------------


async def test_restart_times_follow_the_jittered_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(
                rec,
                "x",
                default=Life(fail_before_ready=True),
                lives=[Life(fail_before_ready=True)] * 5 + [Life()],
            )
        ],
        intensity=Intensity(max_restarts=100, within_s=1000.0),
        backoff=Backoff(initial_s=1.0, multiplier=2.0, max_s=8.0, jitter=0.5),
        rng=random.Random(42),
    )
    await _run_for(sup, 1.0)
    draws = random.Random(42)
    expected = [0.0]
    for base in (1.0, 2.0, 4.0, 8.0, 8.0):
        expected.append(expected[-1] + base * (1 - 0.5 * draws.random()))
    assert rec.times("start", "x") == pytest.approx(expected)


async def test_backoff_resets_once_a_child_has_been_up_long_enough(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    short, long = Life(uptime=1.0, end="crash"), Life(uptime=10.0, end="crash")
    sup = Supervisor(
        "root",
        [child(rec, "x", lives=[short, short, short, long, short])],
        intensity=Intensity(max_restarts=100, within_s=1000.0),
        backoff=Backoff(initial_s=1.0, multiplier=2.0, max_s=8.0, jitter=0.0, healthy_after_s=5.0),
    )
    await _run_for(sup, 30.0)
    # up 1 s, wait 1; up 1, wait 2; up 1, wait 4; up 10 (healthy), wait 1 again; up 1, wait 2.
    assert rec.times("start", "x") == [0.0, 2.0, 5.0, 10.0, 21.0, 24.0]


# -- restart types ----------------------------------------------------------------------------


async def test_transient_child_is_restarted_after_a_crash_but_not_after_returning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(
                rec,
                "job",
                lives=[CRASH_AFTER_1S, Life(uptime=1.0, end="return")],
                restart=Restart.TRANSIENT,
            )
        ],
        backoff=NO_BACKOFF,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10.0)
        stats = _stats(sup)["job"]
        sup.request_stop()
    assert rec.seq(kinds=["start", "crash", "return"]) == [
        "start job",
        "crash job",
        "start job",
        "return job",
    ]
    assert stats.state is ChildState.STOPPED
    assert stats.restarts == 1


async def test_temporary_child_is_never_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "once", default=CRASH_AFTER_1S, restart=Restart.TEMPORARY), child(rec, "b")],
        backoff=NO_BACKOFF,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10.0)
        stats = _stats(sup)
        sup.request_stop()
    assert rec.count("start", "once") == 1
    assert stats["once"].state is ChildState.FAILED
    assert stats["once"].last_error == "Boom: once crashed"
    assert stats["b"].state is ChildState.RUNNING


async def test_temporary_sibling_taken_down_by_one_for_all_stays_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(rec, "tmp", restart=Restart.TEMPORARY),
            child(rec, "b", lives=[CRASH_AFTER_1S]),
        ],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=NO_BACKOFF,
    )
    await _run_for(sup, 5.0)
    assert rec.count("start", "tmp") == 1
    assert rec.count("start", "b") == 2


async def test_a_child_that_fails_before_ready_counts_as_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "a"), child(rec, "b", lives=[Life(start_delay=1.0, fail_before_ready=True)])],
        backoff=Backoff(initial_s=0.5, jitter=0.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        # Readiness of the whole supervisor waits for b's successful second start.
        assert trio.current_time() == 1.5
        stats = _stats(sup)["b"]
        sup.request_stop()
    assert stats.restarts == 1
    assert stats.last_error == "Boom: b failed to start"


async def test_a_child_that_returns_without_started_is_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def lazy(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        return None

    sup = Supervisor(
        "root",
        [ChildSpec(name="lazy", entry=lazy)],
        intensity=Intensity(max_restarts=1, within_s=10.0),
        backoff=NO_BACKOFF,
    )
    with pytest.raises(RestartIntensityExceeded) as info, trio.fail_after(100.0):
        await sup.run()
    assert isinstance(info.value.last_error, ChildNotReady)


# -- liveness ---------------------------------------------------------------------------------


async def test_a_stalled_child_is_cancelled_and_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    incarnations = 0
    errors: list[BaseException | None] = []

    class Observer:
        def on_started(self, path: str) -> None:
            pass

        def on_exit(self, path: str, error: BaseException | None) -> None:
            errors.append(error)

        def on_restart(self, path: str) -> None:
            pass

    async def worker(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal incarnations
        incarnations += 1
        task_status.started()
        beats = 3 if incarnations == 1 else math.inf
        done = 0
        while done < beats:
            await trio.sleep(1.0)
            ctx.progress()
            done += 1
        await trio.sleep_forever()  # wedged: no more progress

    sup = Supervisor(
        "root",
        [ChildSpec(name="w", entry=worker, stall_deadline_s=2.0)],
        backoff=NO_BACKOFF,
        observer=Observer(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(4.9)
        assert incarnations == 1
        await trio.sleep(0.2)  # last progress at 3.0, deadline 2 s: stalled at 5.0
        assert incarnations == 2
        stats = _stats(sup)["w"]
        await trio.sleep(20.0)  # the second incarnation keeps beating: no further restart
        assert incarnations == 2
        sup.request_stop()
    assert stats.restarts == 1
    assert stats.last_error is not None
    assert stats.last_error.startswith("ChildStalled: ")
    assert isinstance(errors[0], ChildStalled)
    assert errors[0].silent_for_s == pytest.approx(2.0)


async def test_a_child_stuck_before_ready_is_caught_by_its_stall_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "stuck", lives=[Life(start_delay=math.inf)], stall_deadline_s=3.0)],
        backoff=NO_BACKOFF,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert trio.current_time() == 3.0
        sup.request_stop()
    assert rec.seq(kinds=["start", "cancelled", "ready"]) == [
        "start stuck",
        "cancelled stuck",
        "start stuck",
        "ready stuck",
    ]


# -- escalation -------------------------------------------------------------------------------


async def test_failure_escalates_through_a_nested_supervisor_to_the_root(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    inner = Supervisor(
        "inner",
        [child(rec, "flaky", default=CRASH_AFTER_1S)],
        intensity=Intensity(max_restarts=2, within_s=100.0),
        backoff=NO_BACKOFF,
    )
    root = Supervisor(
        "root",
        [child(rec, "writer"), inner.as_child_spec(), child(rec, "router")],
        strategy=Strategy.REST_FOR_ONE,
        intensity=Intensity(max_restarts=1, within_s=100.0),
        backoff=NO_BACKOFF,
    )
    with pytest.raises(RestartIntensityExceeded) as info, trio.fail_after(100.0):
        await root.run()
    top = info.value
    assert (top.supervisor, top.child) == ("root", "inner")
    nested = top.__cause__
    assert isinstance(nested, RestartIntensityExceeded)
    assert (nested.supervisor, nested.child) == ("inner", "inner.flaky")
    assert isinstance(nested.__cause__, Boom)
    # inner gave up twice (3 crashes each, at 1-3 and 4-6); the root restarted it once.
    assert rec.count("crash", "flaky") == 6
    assert trio.current_time() == 6.0
    # rest_for_one: the router was restarted along with inner; the writer never was.
    assert rec.count("start", "router") == 2
    assert rec.count("start", "writer") == 1
    assert rec.seq(kinds=["stop_requested"])[-2:] == [
        "stop_requested router",
        "stop_requested writer",
    ]
