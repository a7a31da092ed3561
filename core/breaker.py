"""The circuit breaker in front of the venue: a sans-IO state machine modelled on resilience4j.

Why: when the venue is sick (5xx, timeouts, unknown execution status, an IP ban) every further
order adds another order whose fate is unknown and another reconciliation. The breaker watches
the outcomes of venue calls and stops new orders while the failure (or slow-call) rate is high,
then lets a few probe calls through to find out whether the venue has recovered.

States (``spark_circuit_breaker_state``: 0 closed/disabled, 1 open/forced open, 2 half-open):

* ``CLOSED`` - calls flow; outcomes go into a *time-based* sliding window of ``window_s``
  seconds. Once the window holds at least ``min_calls`` counted calls and the failure share is
  ``>= failure_rate_threshold`` or the slow share (duration ``> slow_call_duration_s``) is
  ``>= slow_call_rate_threshold``, the breaker trips to ``OPEN``.
* ``OPEN`` - no calls for ``open_cooldown_s``; the first :meth:`Breaker.allows_call` (or
  :meth:`Breaker.poll`) after that moves to ``HALF_OPEN``. Outcomes of calls that were already in
  flight when it tripped are ignored.
* ``HALF_OPEN`` - at most ``half_open_probes`` probe calls (each :meth:`~Breaker.allows_call`
  that returns True reserves one slot). All probes succeed → ``CLOSED`` with a fresh window; any
  probe fails or is slow → ``OPEN`` again (a new trip). A probe whose outcome is not reported
  within ``open_cooldown_s`` also reopens it, so a lost report cannot wedge the breaker; a quiet
  half-open phase (no calls at all) simply waits.
* ``FORCED_OPEN`` - an operator opened it (``ctl breaker open``). It blocks every call, even in
  dry-run, and stays until an operator changes it; outcomes are ignored.
* ``DISABLED`` - an operator switched it off: every call is allowed, nothing is recorded.

An operator "close" (:meth:`~Breaker.force_close`) from any state returns to ``CLOSED`` with an
empty window. ``dry_run`` (config) runs the same machine and records the same trips — the state
says ``OPEN`` when it would be open — but :meth:`~Breaker.allows_call` stays True except in
``FORCED_OPEN``, so a new threshold can be watched in production before it may block anything.

What counts: :class:`Outcome` ``FAILURE`` is the venue failing (5xx, unknown execution status,
-1007, timeouts, 418 bans, the venue unreachable); ``SUCCESS`` is a normal answer; ``IGNORED`` is
everything that says nothing about the venue's health — rejections of bad input (-1013, -2010 …),
auth and timestamp errors, 429s (our own pace), cancelled calls — so a stream of bad intents can
neither trip nor heal the breaker. :func:`classify_error` maps exceptions to outcomes. ``IGNORED``
outcomes do not count and release a half-open probe slot. Slowness is judged from the duration
(``> slow_call_duration_s``) of any counted outcome, so there is no separate "slow success".

Every state change is a :class:`Transition` (from, to, reason, at, actor) for the audit trail:
returned by the call that caused it and queued for :meth:`Breaker.take_transitions`. Trips
(automatic transitions into ``OPEN``) are counted in :attr:`Breaker.trips`
(``spark_circuit_breaker_trips_total``); an operator's force-open is not a trip.

Time: ``now`` is monotonic seconds (``trio.current_time()``), passed in; the breaker has no clock.
The caller must report an outcome (possibly ``IGNORED``) for every call it was allowed to make.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Final

import attrs

from spark.config.schema import CircuitBreakerConfig
from spark.exchange import errors

__all__ = [
    "ALLOWED_TRANSITIONS",
    "COOLDOWN_ELAPSED",
    "OPERATOR_CLOSE",
    "OPERATOR_DISABLE",
    "OPERATOR_OPEN",
    "PROBES_SUCCEEDED",
    "PROBE_FAILED",
    "PROBE_SLOW",
    "PROBE_TIMEOUT",
    "TRANSITION_REASONS",
    "TRIP_FAILURE_RATE",
    "TRIP_SLOW_CALL_RATE",
    "Breaker",
    "BreakerError",
    "BreakerSnapshot",
    "BreakerState",
    "Outcome",
    "Transition",
    "blocks_orders",
    "classify_error",
]

# Transition reasons (stable: they are audit rows).
TRIP_FAILURE_RATE: Final = "failure_rate"
TRIP_SLOW_CALL_RATE: Final = "slow_call_rate"
COOLDOWN_ELAPSED: Final = "cooldown_elapsed"
PROBE_FAILED: Final = "probe_failed"
PROBE_SLOW: Final = "probe_slow"
PROBE_TIMEOUT: Final = "probe_timeout"
PROBES_SUCCEEDED: Final = "probes_succeeded"
OPERATOR_OPEN: Final = "operator_open"
OPERATOR_CLOSE: Final = "operator_close"
OPERATOR_DISABLE: Final = "operator_disable"
TRANSITION_REASONS: Final = frozenset({
    TRIP_FAILURE_RATE, TRIP_SLOW_CALL_RATE, COOLDOWN_ELAPSED, PROBE_FAILED, PROBE_SLOW,
    PROBE_TIMEOUT, PROBES_SUCCEEDED, OPERATOR_OPEN, OPERATOR_CLOSE, OPERATOR_DISABLE,
})

_TRANSITIONS_KEPT: Final = 256  # outbox bound: the actor drains it after every call


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    FORCED_OPEN = "FORCED_OPEN"
    DISABLED = "DISABLED"

    @property
    def metric_value(self) -> int:
        """``spark_circuit_breaker_state``: 0 closed, 1 open (incl. forced), 2 half-open."""
        return _METRIC[self]


_METRIC: Final = {
    BreakerState.CLOSED: 0,
    BreakerState.DISABLED: 0,
    BreakerState.OPEN: 1,
    BreakerState.FORCED_OPEN: 1,
    BreakerState.HALF_OPEN: 2,
}

_S = BreakerState
ALLOWED_TRANSITIONS: Final[dict[BreakerState, frozenset[BreakerState]]] = {
    # CLOSED -> CLOSED is an operator close: it empties the window and is audited.
    _S.CLOSED: frozenset({_S.OPEN, _S.FORCED_OPEN, _S.DISABLED, _S.CLOSED}),
    _S.OPEN: frozenset({_S.HALF_OPEN, _S.FORCED_OPEN, _S.CLOSED, _S.DISABLED}),
    _S.HALF_OPEN: frozenset({_S.CLOSED, _S.OPEN, _S.FORCED_OPEN, _S.DISABLED}),
    _S.FORCED_OPEN: frozenset({_S.CLOSED, _S.DISABLED}),
    _S.DISABLED: frozenset({_S.CLOSED, _S.FORCED_OPEN}),
}


class Outcome(StrEnum):
    """How one venue call went, as far as venue health is concerned."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    IGNORED = "IGNORED"

    @classmethod
    def _missing_(cls, value: object) -> Outcome | None:
        # ``Outcome("failure")`` too: actor messages carry the outcome as lower-case text.
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


class BreakerError(Exception):
    """A breaker invariant would break (a transition outside :data:`ALLOWED_TRANSITIONS`)."""

    reason = "breaker_error"


def blocks_orders(state: BreakerState, dry_run: bool) -> bool:
    """Whether a breaker in ``state`` keeps new orders away from the venue.

    ``OPEN`` blocks unless in dry-run; ``FORCED_OPEN`` always blocks (an operator asked for it).
    ``HALF_OPEN`` does not block the risk guard: :meth:`Breaker.allows_call` rations its probes.
    """
    if state == BreakerState.FORCED_OPEN:
        return True
    return state == BreakerState.OPEN and not dry_run


def classify_error(exc: BaseException | None) -> Outcome:
    """The outcome of a venue call that raised ``exc`` (``None`` = it returned normally).

    Failures are the venue's fault or unknown: ``UnknownExecutionStatus`` (5xx, 503, -1007,
    timeouts after sending), ``IpBanned`` (418), ``TransportError`` (venue unreachable) and any
    unexpected ``Exception``. Rejections of
    the request itself (bad input, auth, timestamp) and 429s (our pace, handled by the request
    budget) are ``IGNORED``. ``BaseException``s that are not ``Exception`` (cancellation) are
    ``IGNORED``: a cancelled call says nothing about the venue.
    """
    if exc is None:
        return Outcome.SUCCESS
    if not isinstance(exc, Exception):
        return Outcome.IGNORED
    if isinstance(exc, errors.UnknownExecutionStatus | errors.IpBanned | errors.TransportError):
        return Outcome.FAILURE
    if isinstance(exc, errors.ExchangeError):
        return Outcome.IGNORED
    return Outcome.FAILURE


@attrs.frozen
class Transition:
    """One state change, for the audit trail. ``at`` is monotonic seconds; ``actor`` is the
    operator's audit identity for forced changes, ``None`` for automatic ones."""

    from_state: BreakerState
    to_state: BreakerState
    reason: str
    at: float
    actor: str | None = None
    detail: str = ""


@attrs.frozen
class BreakerSnapshot:
    """What readers (risk guard, health, metrics, ``ctl breaker status``) see."""

    state: BreakerState
    dry_run: bool
    trips: int
    calls: int
    failures: int
    slow_calls: int
    opened_at: float | None
    forced_by: str | None
    last_transition: Transition | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        return self.slow_calls / self.calls if self.calls else 0.0

    @property
    def metric_value(self) -> int:
        return self.state.metric_value

    @property
    def blocks_orders(self) -> bool:
        return blocks_orders(self.state, self.dry_run)


class _Window:
    """Counted call outcomes of the last ``window_s`` seconds, with running totals."""

    __slots__ = ("calls", "failures", "slow", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.calls: deque[tuple[float, bool, bool]] = deque()
        self.failures = 0
        self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self.calls.append((now, failed, slow))
        self.failures += failed
        self.slow += slow
        self.prune(now)

    def prune(self, now: float) -> None:
        horizon = now - self.window_s
        calls = self.calls
        while calls and calls[0][0] <= horizon:
            _, failed, slow = calls.popleft()
            self.failures -= failed
            self.slow -= slow

    def clear(self) -> None:
        self.calls.clear()
        self.failures = 0
        self.slow = 0

    def __len__(self) -> int:
        return len(self.calls)


class Breaker:
    """One circuit breaker (the runtime has one, in front of the order path)."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self._config = config
        self._state = BreakerState.CLOSED
        self._window = _Window(config.window_s)
        self._trips = 0
        self._opened_at: float | None = None
        self._half_open_since: float | None = None
        self._probes_out: deque[float] = deque()  # when each unreported probe was allowed
        self._probes_succeeded = 0
        self._forced_by: str | None = None
        self._last: Transition | None = None
        self._outbox: deque[Transition] = deque(maxlen=_TRANSITIONS_KEPT)

    # -- reading ---------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    @property
    def trips(self) -> int:
        return self._trips

    @property
    def metric_value(self) -> int:
        return self._state.metric_value

    def snapshot(self, now: float | None = None) -> BreakerSnapshot:
        """An immutable view; with ``now``, outcomes older than the window are dropped first."""
        if now is not None:
            self._window.prune(now)
        return BreakerSnapshot(
            state=self._state,
            dry_run=self._config.dry_run,
            trips=self._trips,
            calls=len(self._window),
            failures=self._window.failures,
            slow_calls=self._window.slow,
            opened_at=self._opened_at,
            forced_by=self._forced_by,
            last_transition=self._last,
        )

    def take_transitions(self) -> list[Transition]:
        """Every transition since the last call (including those made by :meth:`allows_call`),
        oldest first, for the actor to write to the audit trail."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    # -- the call path ---------------------------------------------------------------------
    def poll(self, now: float) -> list[Transition]:
        """Apply the time-driven transitions (OPEN→HALF_OPEN after the cooldown; HALF_OPEN back
        to OPEN when a probe has gone unreported for a cooldown); the actor may call this on a
        timer so the published state does not wait for the next order. A quiet HALF_OPEN with
        no probe out waits as long as it takes."""
        made: list[Transition] = []
        if (
            self._state is BreakerState.OPEN
            and self._opened_at is not None
            and now - self._opened_at >= self._config.open_cooldown_s
        ):
            made.append(self._move(BreakerState.HALF_OPEN, COOLDOWN_ELAPSED, now))
            self._half_open_since = now
            self._probes_out.clear()
            self._probes_succeeded = 0
        elif (
            self._state is BreakerState.HALF_OPEN
            and self._probes_out
            and now - self._probes_out[0] >= self._config.open_cooldown_s
        ):
            made.append(self._trip(PROBE_TIMEOUT, now, "a probe went unreported for a cooldown"))
        return made

    def allows_call(self, now: float) -> bool:
        """Whether a venue call may start now. In ``HALF_OPEN`` a True reserves a probe slot,
        so the caller must then report the call's outcome with :meth:`record`."""
        self.poll(now)
        state = self._state
        if state is BreakerState.CLOSED or state is BreakerState.DISABLED:
            return True
        if state is BreakerState.FORCED_OPEN:
            return False
        if state is BreakerState.OPEN:
            return self._config.dry_run
        # HALF_OPEN
        if len(self._probes_out) + self._probes_succeeded < self._config.half_open_probes:
            self._probes_out.append(now)
            return True
        return self._config.dry_run

    def record(self, outcome: Outcome, duration_s: float, now: float) -> list[Transition]:
        """Report how a call went; returns the transitions it caused (also queued)."""
        state = self._state
        if state is BreakerState.CLOSED:
            if outcome is Outcome.IGNORED:
                return []
            slow = duration_s > self._config.slow_call_duration_s
            self._window.add(now, outcome is Outcome.FAILURE, slow)
            return self._maybe_trip(now)
        if state is BreakerState.HALF_OPEN:
            if self._probes_out:
                self._probes_out.popleft()
            if outcome is Outcome.IGNORED:
                return []
            if outcome is Outcome.FAILURE:
                return [self._trip(PROBE_FAILED, now, f"probe failed after {duration_s:.3f}s")]
            if duration_s > self._config.slow_call_duration_s:
                return [self._trip(PROBE_SLOW, now, f"probe took {duration_s:.3f}s")]
            self._probes_succeeded += 1
            if self._probes_succeeded >= self._config.half_open_probes:
                return [self._close(PROBES_SUCCEEDED, now, None)]
            return []
        # OPEN: late results of calls started before the trip; FORCED_OPEN / DISABLED: off.
        return []

    # -- operators -------------------------------------------------------------------------
    def force_open(self, now: float, actor: str) -> list[Transition]:
        """Open until an operator says otherwise; blocks even in dry-run. Not a trip."""
        if self._state is BreakerState.FORCED_OPEN:
            return []
        self._forced_by = actor
        return [self._move(BreakerState.FORCED_OPEN, OPERATOR_OPEN, now, actor)]

    def force_close(self, now: float, actor: str) -> list[Transition]:
        """Back to ``CLOSED`` with an empty window, from any state (audited even from CLOSED)."""
        return [self._close(OPERATOR_CLOSE, now, actor)]

    def disable(self, now: float, actor: str) -> list[Transition]:
        """Switch the breaker off: every call allowed, nothing recorded."""
        if self._state is BreakerState.DISABLED:
            return []
        self._forced_by = actor
        return [self._move(BreakerState.DISABLED, OPERATOR_DISABLE, now, actor)]

    def reconfigure(self, config: CircuitBreakerConfig) -> None:
        """Take new thresholds (SIGHUP) without losing the state or the window."""
        self._config = config
        self._window.window_s = config.window_s

    # -- internals -------------------------------------------------------------------------
    def _maybe_trip(self, now: float) -> list[Transition]:
        window, cfg = self._window, self._config
        calls = len(window)
        if calls < cfg.min_calls:
            return []
        failure_rate = window.failures / calls
        slow_rate = window.slow / calls
        if failure_rate >= cfg.failure_rate_threshold:
            detail = f"{window.failures}/{calls} failed in {cfg.window_s:g}s"
            return [self._trip(TRIP_FAILURE_RATE, now, detail)]
        if slow_rate >= cfg.slow_call_rate_threshold:
            detail = f"{window.slow}/{calls} slower than {cfg.slow_call_duration_s:g}s"
            return [self._trip(TRIP_SLOW_CALL_RATE, now, detail)]
        return []

    def _trip(self, reason: str, now: float, detail: str) -> Transition:
        t = self._move(BreakerState.OPEN, reason, now, None, detail)
        self._trips += 1
        self._opened_at = now
        self._half_open_since = None
        self._probes_out.clear()
        self._probes_succeeded = 0
        self._window.clear()
        return t

    def _close(self, reason: str, now: float, actor: str | None) -> Transition:
        t = self._move(BreakerState.CLOSED, reason, now, actor)
        self._window.clear()
        self._opened_at = None
        self._half_open_since = None
        self._probes_out.clear()
        self._probes_succeeded = 0
        self._forced_by = None
        return t

    def _move(
        self,
        to: BreakerState,
        reason: str,
        now: float,
        actor: str | None = None,
        detail: str = "",
    ) -> Transition:
        if to not in ALLOWED_TRANSITIONS[self._state]:
            raise BreakerError(f"circuit breaker cannot go {self._state} -> {to} ({reason})")
        t = Transition(self._state, to, reason, now, actor, detail)
        self._state = to
        self._last = t
        self._outbox.append(t)
        return t
