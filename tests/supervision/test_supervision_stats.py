"""What the runtime sees: snapshots, mailbox depths, observer calls, log lines."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from sup_helpers import Boom, Life, Recorder, RecordingObserver, child

from spark.supervision import (
    Backoff,
    ChildContext,
    ChildSpec,
    ChildState,
    ChildStats,
    MailboxStats,
    Supervisor,
    describe_error,
)

NO_BACKOFF = Backoff(initial_s=0.0, jitter=0.0)


def _mailbox_actor(fill: list[int]) -> ChildSpec:
    """Registers an 8-slot inbox, buffers ``fill[n]`` messages in incarnation n; first crashes."""
    incarnation = 0

    async def run(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal incarnation
        mine = incarnation
        incarnation += 1
        send, receive = trio.open_memory_channel[int](8)
        async with send, receive:
            ctx.register_mailbox("inbox", receive)
            for i in range(fill[mine]):
                send.send_nowait(i)
            task_status.started()
            if mine == 0:
                await trio.sleep(1.0)
                raise Boom("a crashed")
            await ctx.wait_stop()

    return ChildSpec(name="a", entry=run)


async def test_snapshot_shows_states_restarts_errors_uptime_mailboxes_and_the_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    inner = Supervisor("inner", [child(rec, "b")])
    root = Supervisor(
        "root",
        [_mailbox_actor([2, 3]), inner.as_child_spec()],
        backoff=Backoff(initial_s=2.0, jitter=0.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        await trio.sleep(1.5)
        backing_off = root.snapshot()
        await trio.sleep(8.5)
        running = root.snapshot()
        root.request_stop()
    stopped = root.snapshot()

    a = backing_off.children[0]
    assert a == ChildStats(
        name="a",
        path="a",
        state=ChildState.BACKING_OFF,
        restarts=0,
        last_error="Boom: a crashed",
        started_at=0.0,
        uptime_s=0.0,
        mailboxes=(),
    )

    assert running.name == "root"
    assert running.strategy == "one_for_one"
    assert running.running
    assert running.taken_at == 10.0
    a = running.children[0]
    assert a.state is ChildState.RUNNING
    assert a.restarts == 1
    assert a.last_error == "Boom: a crashed"  # the last error stays visible after recovery
    assert a.started_at == 3.0
    assert a.uptime_s == 7.0
    assert a.mailboxes == (MailboxStats(name="inbox", depth=3, capacity=8),)
    nested = running.children[1]
    assert (nested.name, nested.state, nested.uptime_s) == ("inner", ChildState.RUNNING, 10.0)
    assert [(s.path, s.state) for s in nested.children] == [("inner.b", ChildState.RUNNING)]
    assert [path for path, _ in running.walk()] == ["a", "inner", "inner.b"]

    assert not stopped.running
    assert all(s.state is ChildState.STOPPED for _, s in stopped.walk())
    assert all(s.uptime_s == 0.0 and s.mailboxes == () for _, s in stopped.walk())


async def test_observer_sees_starts_exits_and_restarts_with_dotted_paths(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    observer = RecordingObserver()
    inner = Supervisor("inner", [child(rec, "b")])  # inherits the root's observer
    root = Supervisor(
        "root",
        [child(rec, "a", lives=[Life(uptime=1.0)]), inner.as_child_spec()],
        backoff=NO_BACKOFF,
        observer=observer,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        await trio.sleep(2.0)
        root.request_stop()
    assert observer.calls == [
        ("started", "a", None),
        ("started", "inner.b", None),
        ("started", "inner", None),
        ("exit", "a", "Boom"),
        ("restart", "a", None),
        ("started", "a", None),
        ("exit", "inner.b", None),
        ("exit", "inner", None),
        ("exit", "a", None),
    ]


async def test_a_failing_observer_cannot_break_supervision(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_started(self, path: str) -> None:
            raise RuntimeError("metrics down")

        def on_exit(self, path: str, error: BaseException | None) -> None:
            raise RuntimeError("metrics down")

        def on_restart(self, path: str) -> None:
            raise RuntimeError("metrics down")

    rec = Recorder()
    sup = Supervisor(
        "root", [child(rec, "a", lives=[Life(uptime=1.0)])], backoff=NO_BACKOFF, observer=Broken()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2.0)
        sup.request_stop()
    assert rec.count("ready", "a") == 2
    assert any("observer failed" in r.getMessage() for r in caplog.records)


async def test_crashes_are_logged_with_the_child_path_and_exception(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spark.supervision")
    rec = Recorder()
    inner = Supervisor("inner", [child(rec, "b", lives=[Life(uptime=1.0)])], backoff=NO_BACKOFF)
    root = Supervisor("root", [inner.as_child_spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        await trio.sleep(2.0)
        root.request_stop()
    crashes = [
        r for r in caplog.records if r.name == "spark.supervision" and r.levelno == logging.ERROR
    ]
    assert len(crashes) == 1
    assert crashes[0].getMessage() == "child inner.b crashed: Boom: b crashed"
    assert crashes[0].exc_info is not None
    assert isinstance(crashes[0].exc_info[1], Boom)
    assert any(r.getMessage() == "restarting child inner.b (restart #1)" for r in caplog.records)


async def test_child_context_works_on_its_own_for_actor_tests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = ChildContext("writer")
    assert (ctx.name, ctx.path) == ("writer", "writer")
    await trio.sleep(5.0)
    ctx.progress()
    assert ctx.last_progress == 5.0
    send, receive = trio.open_memory_channel[str](4)
    ctx.register_mailbox("inbox", receive)
    send.send_nowait("x")
    assert ctx.mailbox_stats() == (MailboxStats("inbox", 1, 4),)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctx.wait_stop)
        await trio.sleep(1.0)
        ctx.request_stop()
        ctx.request_stop()  # idempotent
    assert ctx.stop_requested.is_set()


def test_describe_error() -> None:
    assert describe_error(ValueError("bad value")) == "ValueError: bad value"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"
    assert describe_error(RuntimeError()) == "RuntimeError"
