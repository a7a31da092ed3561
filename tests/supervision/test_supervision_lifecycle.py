"""Starting, stopping and cancelling: order, readiness, deadlines, exception propagation."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from sup_helpers import Life, Recorder, child

from spark.supervision import (
    Backoff,
    ChildContext,
    ChildSpec,
    ChildState,
    InvalidSupervisorConfig,
    Strategy,
    Supervisor,
    SupervisorAlreadyRunning,
)

NO_BACKOFF = Backoff(initial_s=0.0, jitter=0.0)


async def test_children_start_one_at_a_time_in_order_after_readiness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(rec, "a", default=Life(start_delay=1.0)),
            child(rec, "b", default=Life(start_delay=2.0)),
            child(rec, "c"),
        ],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        # run() reports readiness only once the last child is ready.
        assert trio.current_time() == 3.0
        sup.request_stop()
    assert [(e.time, e.what, e.name) for e in rec.events[:6]] == [
        (0.0, "start", "a"),
        (1.0, "ready", "a"),
        (1.0, "start", "b"),
        (3.0, "ready", "b"),
        (3.0, "start", "c"),
        (3.0, "ready", "c"),
    ]


async def test_polite_stop_goes_in_reverse_order_each_under_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(rec, "a", default=Life(stop_delay=1.0), shutdown_deadline_s=5.0),
            # b ignores the polite request; after its 2 s deadline it is cancelled.
            child(rec, "b", default=Life(stop_delay=None), shutdown_deadline_s=2.0),
            child(rec, "c", default=Life(stop_delay=0.5), shutdown_deadline_s=5.0),
        ],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10.0)
        sup.request_stop()
    assert trio.current_time() == 10.0 + 0.5 + 2.0 + 1.0
    stop_events = [(e.time, e.what, e.name) for e in rec.events if e.time >= 10.0]
    assert stop_events == [
        (10.0, "stop_requested", "c"),
        (10.5, "exit", "c"),
        (10.5, "stop_requested", "b"),
        (12.5, "cancelled", "b"),
        (12.5, "stop_requested", "a"),
        (13.5, "exit", "a"),
    ]
    assert all(stats.state is ChildState.STOPPED for _, stats in sup.snapshot().walk())
    assert not sup.running


async def test_zero_shutdown_deadline_cancels_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor("root", [child(rec, "a", default=Life(stop_delay=1.0), shutdown_deadline_s=0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sup.request_stop()
    assert rec.seq(kinds=["stop_requested", "exit", "cancelled"]) == [
        "stop_requested a",
        "cancelled a",
    ]
    assert trio.current_time() == 0.0


async def test_outside_cancellation_stops_children_in_order_then_propagates_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [
            child(rec, "a", default=Life(stop_delay=1.0)),
            child(rec, "b", default=Life(stop_delay=1.0)),
        ],
    )
    raised: list[BaseException] = []
    with trio.move_on_after(5.0) as scope:
        try:
            await sup.run()
        except BaseException as exc:  # only to look at it; re-raised at once
            raised.append(exc)
            raise
    assert scope.cancelled_caught
    assert len(raised) == 1
    assert pytest.RaisesGroup(trio.Cancelled, allow_unwrapped=True, flatten_subgroups=True).matches(
        raised[0]
    )
    # The children were still stopped politely, in reverse order, before Cancelled escaped.
    assert [(e.time, e.what, e.name) for e in rec.events if e.time >= 5.0] == [
        (5.0, "stop_requested", "b"),
        (6.0, "exit", "b"),
        (6.0, "stop_requested", "a"),
        (7.0, "exit", "a"),
    ]


async def test_keyboard_interrupt_in_a_child_is_not_swallowed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()

    async def interrupted(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep(1.0)
        raise KeyboardInterrupt

    sup = Supervisor(
        "root",
        [child(rec, "a"), ChildSpec(name="ki", entry=interrupted), child(rec, "c")],
        backoff=NO_BACKOFF,
    )
    with pytest.RaisesGroup(KeyboardInterrupt, allow_unwrapped=True, flatten_subgroups=True):
        await sup.run()
    # Not treated as a crash: no restart; the others were stopped on the way out.
    snapshot = {stats.name: stats for _, stats in sup.snapshot().walk()}
    assert snapshot["ki"].restarts == 0
    assert rec.seq(kinds=["stop_requested"]) == ["stop_requested c", "stop_requested a"]


async def test_group_holding_a_keyboard_interrupt_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mixed(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep(1.0)
        raise BaseExceptionGroup("mixed", [ValueError("x"), KeyboardInterrupt()])

    sup = Supervisor("root", [ChildSpec(name="mixed", entry=mixed)], backoff=NO_BACKOFF)
    # The child's own group arrives intact, inside the supervisor nursery's group.
    with pytest.RaisesGroup(pytest.RaisesGroup(ValueError, KeyboardInterrupt)):
        await sup.run()


async def test_group_of_plain_exceptions_is_an_ordinary_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def grouped(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal calls
        calls += 1
        task_status.started()
        if calls == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 1.0)
                raise ValueError("inside a nursery")
        await ctx.wait_stop()

    sup = Supervisor("root", [ChildSpec(name="g", entry=grouped)], backoff=NO_BACKOFF)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(1.0)
        stats = sup.snapshot().children[0]
        sup.request_stop()
    assert calls == 2
    assert stats.restarts == 1
    assert stats.state is ChildState.RUNNING
    assert stats.last_error is not None
    assert stats.last_error.startswith("ExceptionGroup: ")


async def test_stop_requested_during_start_stops_the_starting_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor(
        "root",
        [child(rec, "a"), child(rec, "slow", default=Life(start_delay=math.inf))],
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.sleep(1.0)
        sup.request_stop()
    # "slow" never became ready; it cannot see the request while sleeping, so it is cancelled
    # after its deadline; then "a" is stopped.
    assert rec.seq(kinds=["cancelled", "stop_requested", "exit"]) == [
        "cancelled slow",
        "stop_requested a",
        "exit a",
    ]
    assert trio.current_time() == 1.0 + 5.0


async def test_request_stop_before_run_returns_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    sup = Supervisor("root", [child(rec, "a")])
    sup.request_stop()
    await sup.run()
    assert rec.events == []
    # The request applied to that run only: the supervisor can run again.
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sup.request_stop()
    assert rec.seq(kinds=["ready"]) == ["ready a"]


async def test_run_twice_at_the_same_time_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor("root", [child(Recorder(), "a")])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(SupervisorAlreadyRunning):
            await sup.run()
        sup.request_stop()


def test_duplicate_child_names_are_rejected() -> None:
    rec = Recorder()
    with pytest.raises(InvalidSupervisorConfig):
        Supervisor("root", [child(rec, "a"), child(rec, "a")])
    with pytest.raises(InvalidSupervisorConfig):
        Supervisor("bad.name", [])


async def test_nested_supervisor_stops_its_children_before_earlier_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    inner = Supervisor("inner", [child(rec, "x"), child(rec, "y")], strategy=Strategy.ONE_FOR_ALL)
    root = Supervisor(
        "root",
        [child(rec, "writer"), inner.as_child_spec(), child(rec, "last")],
        strategy=Strategy.REST_FOR_ONE,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        assert rec.seq(kinds=["ready"]) == [
            "ready writer",
            "ready x",
            "ready y",
            "ready last",
        ]
        root.request_stop()
    assert rec.seq(kinds=["stop_requested"]) == [
        "stop_requested last",
        "stop_requested y",
        "stop_requested x",
        "stop_requested writer",
    ]
    assert not inner.running


async def test_parent_deadline_cuts_a_nested_polite_stop_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    inner = Supervisor(
        "inner",
        [
            child(rec, "x", default=Life(stop_delay=None), shutdown_deadline_s=100.0),
            child(rec, "y", default=Life(stop_delay=None), shutdown_deadline_s=100.0),
        ],
    )
    root = Supervisor("root", [inner.as_child_spec(shutdown_deadline_s=3.0)])
    assert inner.as_child_spec().shutdown_deadline_s == 201.0
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        root.request_stop()
    # y was asked first and ignored it; at the parent's 3 s deadline the nested supervisor
    # cancels y and then x at once (still in reverse order) instead of waiting 100 s each.
    assert [(e.time, e.what, e.name) for e in rec.events if e.what != "start"][2:] == [
        (0.0, "stop_requested", "y"),
        (3.0, "cancelled", "y"),
        (3.0, "stop_requested", "x"),
        (3.0, "cancelled", "x"),
    ]
    assert trio.current_time() == 3.0
