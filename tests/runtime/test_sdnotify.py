"""sd_notify over a real Unix datagram socket, as systemd would receive it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from spark.runtime.loop_lag import LoopLagMonitor
from spark.runtime.metrics import Metrics
from spark.runtime.sdnotify import SdNotifier
from spark.supervision import ChildContext


@pytest.fixture
def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_ready_stopping_watchdog(tmp_path: Path, notify_socket: socket.socket) -> None:
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert n.enabled
    assert n.ready()
    assert notify_socket.recv(256) == b"READY=1\nSTATUS=running"
    assert n.watchdog()
    assert notify_socket.recv(256) == b"WATCHDOG=1"
    assert n.stopping()
    assert notify_socket.recv(256) == b"STOPPING=1\nSTATUS=stopping"


def test_no_socket_is_a_quiet_no_op() -> None:
    n = SdNotifier({})
    assert not n.enabled and not n.ready() and n.watchdog_interval_s is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000",
           "WATCHDOG_PID": str(os.getpid())}
    assert SdNotifier(env).watchdog_interval_s == 15.0
    assert SdNotifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval_s is None


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_loop_lag_monitor_pings_the_watchdog_while_healthy(
    tmp_path: Path, notify_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    metrics = Metrics(process=False)
    monitor = LoopLagMonitor(metrics, 0.25, SdNotifier(env))
    ctx = ChildContext("loop_lag")
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run, ctx)
        await trio.sleep(5.1)
        ctx.request_stop()
    notify_socket.setblocking(False)
    pings = []
    while True:
        try:
            pings.append(notify_socket.recv(64))
        except BlockingIOError:
            break
    # One ping per second (half of WATCHDOG_USEC) over ~5 s of healthy loop.
    assert pings == [b"WATCHDOG=1"] * len(pings) and 4 <= len(pings) <= 6
    assert metrics.loop_lag_seconds._value.get() == 0.0
