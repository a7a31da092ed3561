"""The websocket reconnect policy: stalls, backoff with reset, serverShutdown, uptime."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.config.schema import WsConfig
from spark.core.userdata_errors import InvalidWsTransition
from spark.core.ws_policy import (
    CloseNow,
    ConnectNow,
    ReadUntil,
    ReconnectPolicy,
    SleepUntil,
    WsPhase,
)
from spark.supervision.policy import Backoff


def policy(seed: int = 1, **kw: float) -> ReconnectPolicy:
    cfg = WsConfig(stall_timeout_s=30.0, backoff_initial_s=0.25, backoff_max_s=30.0)
    return ReconnectPolicy.from_config(cfg, rng=random.Random(seed), **kw)


def test_first_connect_is_immediate_and_frames_push_the_stall_deadline() -> None:
    p = policy()
    assert p.next_step(0.0) == ConnectNow(0)
    p.on_connected(0.5)
    assert p.connected and p.phase is WsPhase.CONNECTED
    assert p.next_step(0.5) == ReadUntil(30.5)
    p.on_frame(20.0)  # e.g. the server's ping
    assert p.next_step(29.0) == ReadUntil(50.0)
    assert p.uptime(29.0) == pytest.approx(28.5)
    assert p.reconnects == 0


def test_no_frame_for_stall_timeout_closes_and_reconnects_with_backoff() -> None:
    p = policy()
    p.next_step(0.0)
    p.on_connected(0.0)
    p.on_frame(10.0)
    assert p.next_step(40.0) == CloseNow("stall")
    assert p.stalls == 1
    assert p.next_step(40.0) == CloseNow("stall")  # idempotent until closed
    p.on_closed(40.1)
    assert not p.connected and p.uptime(41.0) == 0.0
    step = p.next_step(40.1)
    assert isinstance(step, SleepUntil)
    assert 40.1 + 0.2 <= step.until <= 40.1 + 0.25
    assert p.next_step(step.until) == ConnectNow(1)
    assert p.reconnects == 1


def test_backoff_grows_caps_and_resets_after_a_healthy_connection() -> None:
    p = policy(healthy_after_s=60.0)
    t = 0.0
    delays = []
    for _ in range(10):
        assert isinstance(p.next_step(t), ConnectNow)
        p.on_connect_failed(t)
        delays.append(p.last_delay_s)
        step = p.next_step(t)
        assert isinstance(step, SleepUntil)
        t = step.until
    for n, d in enumerate(delays):
        base = min(30.0, 0.25 * 2**n)
        assert 0.8 * base <= d <= base
    # a connection that stays up 60 s resets the streak
    assert p.next_step(t) == ConnectNow(10)
    p.on_connected(t)
    p.on_frame(t + 61)
    p.on_closed(t + 61)
    assert p.last_delay_s <= 0.25
    # ... one that drops quickly does not
    step = p.next_step(t + 61)
    assert isinstance(step, SleepUntil)
    assert p.next_step(step.until) == ConnectNow(1)
    p.on_connected(step.until)
    p.on_closed(step.until + 1)
    assert 0.4 <= p.last_delay_s <= 0.5


def test_server_shutdown_reconnects_without_backoff() -> None:
    p = policy()
    p.next_step(0.0)
    p.on_connected(0.0)
    p.on_server_shutdown(5.0)
    assert p.next_step(5.0) == CloseNow("server_shutdown")
    p.on_closed(5.1)
    assert p.last_delay_s == 0.0
    assert p.next_step(5.1) == ConnectNow(0)
    assert p.server_shutdowns == 1 and p.reconnects == 1


def test_misuse_raises() -> None:
    p = policy()
    with pytest.raises(InvalidWsTransition):
        p.on_connected(0.0)
    p.next_step(0.0)
    with pytest.raises(InvalidWsTransition):
        p.next_step(0.0)  # connect in flight
    with pytest.raises(InvalidWsTransition):
        p.on_frame(0.0)
    with pytest.raises(InvalidWsTransition):
        p.on_closed(0.0)
    with pytest.raises(ValueError):
        ReconnectPolicy(stall_timeout_s=0, backoff=Backoff())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    events=st.lists(
        st.tuples(st.sampled_from(["frame", "gap", "drop", "shutdown", "fail"]),
                  st.floats(0.01, 100.0)),
        max_size=60,
    ),
)
def test_never_reads_past_the_stall_deadline_and_delays_stay_bounded(
    seed: int, events: list[tuple[str, float]]
) -> None:
    """Whatever happens, a connected reader is never told to keep reading a connection that has
    been silent for stall_timeout_s, and no reconnect waits longer than backoff_max_s."""
    p = policy(seed)
    t = 0.0
    last_frame = None
    for kind, dt in events:
        step = p.next_step(t)
        if isinstance(step, SleepUntil):
            assert step.until - t <= 30.0 + 1e-9
            t = step.until
            continue
        if isinstance(step, ConnectNow):
            if kind == "fail":
                p.on_connect_failed(t)
            else:
                p.on_connected(t)
                last_frame = t
            continue
        if isinstance(step, CloseNow):
            assert last_frame is not None
            p.on_closed(t)
            last_frame = None
            continue
        assert isinstance(step, ReadUntil) and last_frame is not None
        assert step.deadline == last_frame + 30.0
        assert t < step.deadline
        if kind == "frame":
            t = min(t + dt, step.deadline - 1e-6)
            p.on_frame(t)
            last_frame = t
        elif kind == "gap":
            t = t + dt  # maybe past the deadline: next_step must say close
        elif kind == "drop":
            p.on_closed(t)
            last_frame = None
        elif kind == "shutdown":
            p.on_server_shutdown(t)
            last_frame = t
            assert p.next_step(t) == CloseNow("server_shutdown")
        if last_frame is not None and t - last_frame >= 30.0:
            assert p.next_step(t) == CloseNow("stall")
