"""Properties of the sans-IO sliding-window limiter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.runtime.control import SlidingWindowLimiter

WINDOW = 60.0
# Times on a 1/64 s grid are exact in binary floating point, so sums like
# ``now + retry_after`` are exact too and the properties can be checked to the tick.
gaps = st.integers(min_value=0, max_value=64 * 10).map(lambda n: n / 64)
keys = st.sampled_from(["a", "b", "c"])


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, float]]:
    now, calls = 0.0, []
    for gap in draw(st.lists(gaps, min_size=1, max_size=120)):
        now += gap
        calls.append((draw(keys), now))
    return calls


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(1, 12), calls=schedules())
def test_never_more_than_limit_in_any_window(limit: int, calls: list[tuple[str, float]]) -> None:
    limiter = SlidingWindowLimiter(limit, WINDOW)
    allowed: dict[str, list[float]] = {}
    for key, now in calls:
        decision = limiter.check(key, now)
        if decision.allowed:
            allowed.setdefault(key, []).append(now)
            inside = [t for t in allowed[key] if t > now - WINDOW]
            assert len(inside) <= limit
            assert decision.remaining == limit - len(inside)
        else:
            # Refused only when the window really is full.
            inside = [t for t in allowed.get(key, []) if t > now - WINDOW]
            assert len(inside) == limit
            assert decision.remaining == 0


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(1, 12), calls=schedules())
def test_retry_after_is_exact(limit: int, calls: list[tuple[str, float]]) -> None:
    limiter = SlidingWindowLimiter(limit, WINDOW)
    for index, (key, now) in enumerate(calls):
        decision = limiter.check(key, now)
        if decision.allowed:
            continue
        assert 0 < decision.retry_after_s <= WINDOW
        assert int(decision.retry_after_header) == max(1, math.ceil(decision.retry_after_s))
        # A probe on a copy: just before the retry time it is still refused; at it, allowed.
        probe = SlidingWindowLimiter(limit, WINDOW)
        for k, t in calls[:index + 1]:
            probe.check(k, t)
        before = now + decision.retry_after_s - 1 / 64
        if before >= now:
            assert not probe.check(key, before).allowed
        assert probe.check(key, now + decision.retry_after_s).allowed


@given(limit=st.integers(1, 5), calls=schedules(), max_keys=st.integers(1, 4))
def test_memory_is_bounded(limit: int, calls: list[tuple[str, float]], max_keys: int) -> None:
    limiter = SlidingWindowLimiter(limit, WINDOW, max_keys=max_keys)
    for n, (_, now) in enumerate(calls):
        limiter.check(f"key-{n}", now)  # a new key every call
        assert len(limiter) <= max_keys
    for key in ("a", "b", "c"):
        for _, now in calls:
            limiter.check(key, now)
            assert limiter.hits(key) <= limit


def test_keys_are_independent() -> None:
    limiter = SlidingWindowLimiter(2, WINDOW)
    assert limiter.check("a", 0).allowed and limiter.check("a", 1).allowed
    assert not limiter.check("a", 2).allowed
    assert limiter.check("b", 2).allowed


def test_time_going_backwards_does_not_open_the_window() -> None:
    limiter = SlidingWindowLimiter(1, WINDOW)
    assert limiter.check("a", 100).allowed
    decision = limiter.check("a", 10)  # treated as 100
    assert not decision.allowed and decision.retry_after_s == 60


def test_eviction_prefers_idle_keys() -> None:
    limiter = SlidingWindowLimiter(1, WINDOW, max_keys=2)
    limiter.check("idle", 0)
    limiter.check("busy", 50)
    limiter.check("new", 61)  # "idle" has left its window, "busy" has not
    assert limiter.hits("busy") == 1
    assert not limiter.check("busy", 62).allowed


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 1, "window_s": 0},
                                    {"limit": 1, "max_keys": 0}])
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(**kwargs)  # type: ignore[arg-type]
