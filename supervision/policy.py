"""Sans-IO restart decisions: which children, whether at all, how soon.

Everything here is plain synchronous code with time passed in, so the arithmetic can be checked
with hypothesis and replayed in virtual time; the Trio supervisor only asks and obeys.
"""

from __future__ import annotations

import random
from collections import deque

import attrs

from spark.supervision.spec import Restart, Strategy


def should_restart(restart: Restart, *, abnormal: bool) -> bool:
    """Whether a child that exited on its own (not because it was stopped) is started again."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return abnormal
    return False


def restart_set(strategy: Strategy, count: int, crashed: int) -> range:
    """Indices (in start order) of the children restarted when child ``crashed`` exits."""
    if not 0 <= crashed < count:
        raise IndexError(f"crashed index {crashed} outside 0..{count - 1}")
    if strategy is Strategy.ONE_FOR_ONE:
        return range(crashed, crashed + 1)
    if strategy is Strategy.ONE_FOR_ALL:
        return range(count)
    return range(crashed, count)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _non_negative_int(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Intensity:
    """At most ``max_restarts`` restarts within any ``within_s`` seconds (OTP MaxR/MaxT).

    The point is to stop a crash loop from spinning forever: past the limit the supervisor gives
    up and lets its parent (ultimately the process) decide.
    """

    max_restarts: int = attrs.field(default=5, validator=_non_negative_int)
    within_s: float = attrs.field(default=60.0, validator=_positive)


class RestartWindow:
    """Sliding window of restart times for one supervisor run.

    A restart at ``now`` is allowed if, counting it, no more than ``max_restarts`` restarts lie in
    the half-open window ``(now - within_s, now]``: a restart exactly ``within_s`` ago has left
    the window (as in OTP). Memory is bounded by ``max_restarts + 1`` timestamps.
    """

    def __init__(self, intensity: Intensity) -> None:
        self._intensity = intensity
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; return False when it exceeds the intensity.

        Times must not go backwards (Trio time is monotonic).
        """
        if self._times and now < self._times[-1]:
            raise ValueError("restart times must be non-decreasing")
        horizon = now - self._intensity.within_s
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        self._times.append(now)
        if len(self._times) > self._intensity.max_restarts:
            # Keep only what can still matter; the supervisor fails on False anyway.
            while len(self._times) > self._intensity.max_restarts + 1:
                self._times.popleft()
            return False
        return True

    @property
    def recent(self) -> tuple[float, ...]:
        """Restart times currently remembered (for diagnostics and tests)."""
        return tuple(self._times)


def _check_jitter(_instance: object, _attribute: object, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"jitter must be within [0, 1], got {value!r}")


def _check_multiplier(_instance: object, _attribute: object, value: float) -> None:
    if not value >= 1:
        raise ValueError(f"multiplier must be >= 1, got {value!r}")


def _check_healthy_after(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"healthy_after_s must be >= 0 or None, got {value!r}")


@attrs.frozen
class Backoff:
    """Exponential backoff with jitter between restarts of the same child.

    The n-th consecutive restart (n = 0, 1, ...) waits ``min(max_s, initial_s * multiplier**n)``
    reduced by a random fraction of up to ``jitter`` (so restarts of many children spread out but
    never exceed ``max_s``). A child that stayed up for ``healthy_after_s`` (default ``max_s``)
    before exiting is considered healthy again and its next restart starts from ``initial_s``.
    ``initial_s=0`` restarts immediately, like OTP.
    """

    initial_s: float = attrs.field(default=0.1, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    max_s: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.1, validator=_check_jitter)
    healthy_after_s: float | None = attrs.field(default=None, validator=_check_healthy_after)

    @property
    def healthy_after(self) -> float:
        """Uptime after which the backoff resets."""
        return self.max_s if self.healthy_after_s is None else self.healthy_after_s

    def base_delay(self, attempt: int) -> float:
        """Un-jittered delay before consecutive restart number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        if self.initial_s == 0:
            return 0.0
        try:
            value = self.initial_s * self.multiplier**attempt
        except OverflowError:  # only reachable for absurd attempt counts; the cap applies
            return self.max_s
        return min(self.max_s, value)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Jittered delay before consecutive restart number ``attempt``."""
        base = self.base_delay(attempt)
        return base * (1.0 - self.jitter * rng.random())


class BackoffState:
    """Consecutive-restart counter for one child, driven by the supervisor."""

    def __init__(self, policy: Backoff) -> None:
        self._policy = policy
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Number of consecutive restarts since the child was last healthy."""
        return self._attempt

    def note_exit(self, uptime_s: float) -> None:
        """Tell the state how long the exiting incarnation had been up (0 if never ready)."""
        if uptime_s >= self._policy.healthy_after:
            self._attempt = 0

    def next_delay(self, rng: random.Random) -> float:
        """Delay before the next restart; advances the consecutive-restart counter."""
        delay = self._policy.delay(self._attempt, rng)
        self._attempt += 1
        return delay
