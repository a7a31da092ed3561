"""The sans-IO restart rules: intensity window, backoff arithmetic, restart sets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.supervision import (
    Backoff,
    BackoffState,
    ChildSpec,
    Intensity,
    Restart,
    RestartWindow,
    Strategy,
    restart_set,
    should_restart,
)

# -- should_restart / restart_set ------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "abnormal", "expected"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.PERMANENT, False, True),
        (Restart.TRANSIENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TEMPORARY, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_should_restart(restart: Restart, abnormal: bool, expected: bool) -> None:
    assert should_restart(restart, abnormal=abnormal) is expected


def test_restart_sets() -> None:
    assert list(restart_set(Strategy.ONE_FOR_ONE, 4, 1)) == [1]
    assert list(restart_set(Strategy.ONE_FOR_ALL, 4, 1)) == [0, 1, 2, 3]
    assert list(restart_set(Strategy.REST_FOR_ONE, 4, 1)) == [1, 2, 3]
    assert list(restart_set(Strategy.REST_FOR_ONE, 4, 3)) == [3]
    with pytest.raises(IndexError):
        restart_set(Strategy.ONE_FOR_ONE, 2, 2)


@given(
    strategy=st.sampled_from(Strategy),
    count=st.integers(min_value=1, max_value=20),
    data=st.data(),
)
def test_restart_set_always_contains_the_crashed_child_and_is_ordered(
    strategy: Strategy, count: int, data: st.DataObject
) -> None:
    crashed = data.draw(st.integers(min_value=0, max_value=count - 1))
    chosen = list(restart_set(strategy, count, crashed))
    assert crashed in chosen
    assert chosen == sorted(chosen)
    assert all(0 <= i < count for i in chosen)
    # Nothing started before the crashed child is touched except under one_for_all.
    if strategy is not Strategy.ONE_FOR_ALL:
        assert min(chosen) == crashed


# -- intensity --------------------------------------------------------------------------------


def test_n_restarts_within_the_window_are_allowed_the_next_one_is_not() -> None:
    window = RestartWindow(Intensity(max_restarts=3, within_s=10.0))
    assert [window.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert window.record(3.0) is False


def test_restarts_spread_over_more_than_the_window_are_fine() -> None:
    window = RestartWindow(Intensity(max_restarts=2, within_s=10.0))
    assert all(window.record(t) for t in (0.0, 6.0, 12.0, 18.0, 24.0, 30.0))


def test_a_restart_exactly_one_window_ago_has_left_the_window() -> None:
    window = RestartWindow(Intensity(max_restarts=1, within_s=10.0))
    assert window.record(0.0)
    assert window.record(10.0)  # (0, 10] holds only this one
    assert not window.record(19.999)  # (9.999, 19.999] holds 10.0 and 19.999


def test_zero_restarts_allowed_means_the_first_restart_fails() -> None:
    assert RestartWindow(Intensity(max_restarts=0, within_s=1.0)).record(5.0) is False


def test_time_must_not_go_backwards() -> None:
    window = RestartWindow(Intensity())
    window.record(5.0)
    with pytest.raises(ValueError):
        window.record(4.0)


@given(
    max_restarts=st.integers(min_value=0, max_value=6),
    within_s=st.floats(min_value=0.5, max_value=50.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=40),
)
def test_window_matches_a_brute_force_model(
    max_restarts: int, within_s: float, gaps: list[float]
) -> None:
    window = RestartWindow(Intensity(max_restarts=max_restarts, within_s=within_s))
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        in_window = [t for t in times if now - within_s < t <= now]
        expected = len(in_window) <= max_restarts
        assert window.record(now) is expected
        if not expected:
            return  # the supervisor gives up here; later answers are irrelevant
        assert len(window.recent) <= max_restarts + 1


def test_intensity_validation() -> None:
    with pytest.raises(ValueError):
        Intensity(max_restarts=-1)
    with pytest.raises(ValueError):
        Intensity(within_s=0)


# -- backoff ----------------------------------------------------------------------------------


def test_base_delays_grow_geometrically_up_to_the_cap() -> None:
    policy = Backoff(initial_s=0.5, multiplier=3.0, max_s=10.0, jitter=0.0)
    assert [policy.base_delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert policy.base_delay(10_000) == 10.0  # no overflow for absurd attempt counts


def test_zero_initial_delay_restarts_immediately() -> None:
    policy = Backoff(initial_s=0.0, max_s=10.0)
    assert policy.base_delay(50) == 0.0
    assert policy.delay(3, random.Random(1)) == 0.0


def test_jitter_uses_the_injected_rng() -> None:
    policy = Backoff(initial_s=1.0, multiplier=2.0, max_s=8.0, jitter=0.5)
    draws = random.Random(7)
    expected = [base * (1 - 0.5 * draws.random()) for base in (1.0, 2.0, 4.0, 8.0, 8.0)]
    state = BackoffState(policy)
    rng = random.Random(7)
    assert [state.next_delay(rng) for _ in range(5)] == pytest.approx(expected)


@given(
    initial=st.floats(min_value=0.0, max_value=10.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=100.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    attempt=st.integers(min_value=0, max_value=2_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_within_jitter_of_the_base_and_never_above_the_cap(
    initial: float, multiplier: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = Backoff(initial_s=initial, multiplier=multiplier, max_s=cap, jitter=jitter)
    base = policy.base_delay(attempt)
    assert 0.0 <= base <= cap
    assert base <= policy.base_delay(attempt + 1) or base == cap
    delay = policy.delay(attempt, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base


def test_backoff_resets_after_a_healthy_run() -> None:
    policy = Backoff(initial_s=1.0, multiplier=2.0, max_s=8.0, jitter=0.0, healthy_after_s=5.0)
    state = BackoffState(policy)
    rng = random.Random(0)
    state.note_exit(0.5)
    assert state.next_delay(rng) == 1.0
    state.note_exit(4.9)
    assert state.next_delay(rng) == 2.0
    state.note_exit(5.0)  # up long enough: healthy again
    assert state.next_delay(rng) == 1.0
    assert state.attempt == 1


def test_healthy_after_defaults_to_the_max_backoff() -> None:
    assert Backoff(max_s=12.0).healthy_after == 12.0
    assert Backoff(max_s=12.0, healthy_after_s=3.0).healthy_after == 3.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": -1.0},
        {"multiplier": 0.5},
        {"max_s": -1.0},
        {"jitter": 1.5},
        {"healthy_after_s": -1.0},
    ],
)
def test_backoff_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# -- specs ------------------------------------------------------------------------------------


async def _noop(ctx: object, *, task_status: object = None) -> None:
    return None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "a.b"},
        {"name": "a", "shutdown_deadline_s": -1.0},
        {"name": "a", "stall_deadline_s": 0.0},
    ],
)
def test_child_spec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ChildSpec(entry=_noop, **kwargs)  # type: ignore[arg-type]
