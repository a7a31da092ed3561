"""The circuit breaker: examples for each path, then properties over random call histories."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from spark.config.schema import CircuitBreakerConfig
from spark.core import breaker as b
from spark.core.breaker import (
    ALLOWED_TRANSITIONS,
    Breaker,
    BreakerState,
    Outcome,
    Transition,
    blocks_orders,
    classify_error,
)
from spark.exchange import errors

S = BreakerState
CFG = CircuitBreakerConfig(window_s=60, min_calls=4, failure_rate_threshold=0.5,
                           slow_call_duration_s=2.0, slow_call_rate_threshold=0.75,
                           open_cooldown_s=30, half_open_probes=2)


def trip(br: Breaker, now: float = 0.0) -> list[Transition]:
    made: list[Transition] = []
    for k in range(4):
        assert br.allows_call(now + k * 0.1)
        made += br.record(Outcome.FAILURE, 0.1, now + k * 0.1)
    return made


def test_closed_counts_failures_and_trips_at_threshold() -> None:
    br = Breaker(CFG)
    for t in range(3):
        br.record(Outcome.FAILURE, 0.1, float(t))
    assert br.state is S.CLOSED  # below min_calls
    made = br.record(Outcome.SUCCESS, 0.1, 3.0)  # 3 of 4 failed: 75 % >= 50 %
    assert [(m.from_state, m.to_state, m.reason) for m in made] == [
        (S.CLOSED, S.OPEN, b.TRIP_FAILURE_RATE)]
    assert br.trips == 1 and br.metric_value == 1


def test_exactly_at_threshold_trips() -> None:
    br = Breaker(CFG)
    for outcome in (Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS, Outcome.FAILURE):
        br.record(outcome, 0.1, 1.0)
    assert br.state is S.OPEN


def test_ignored_outcomes_do_not_count() -> None:
    br = Breaker(CFG)
    for t in range(10):
        br.record(Outcome.IGNORED, 0.1, float(t))
    br.record(Outcome.FAILURE, 0.1, 11.0)
    assert br.state is S.CLOSED and br.snapshot().calls == 1


def test_old_outcomes_leave_the_window() -> None:
    br = Breaker(CFG)
    for t in range(3):
        br.record(Outcome.FAILURE, 0.1, float(t))
    # 60 s later the three failures are gone; three successes and one failure: 25 %
    for t in range(3):
        br.record(Outcome.SUCCESS, 0.1, 70.0 + t)
    br.record(Outcome.FAILURE, 0.1, 74.0)
    assert br.state is S.CLOSED
    snap = br.snapshot(75.0)
    assert (snap.calls, snap.failures) == (4, 1) and snap.failure_rate == 0.25


def test_slow_calls_trip() -> None:
    br = Breaker(CFG)
    for t in range(3):
        br.record(Outcome.SUCCESS, 2.5, float(t))
    made = br.record(Outcome.SUCCESS, 0.1, 3.0)
    assert made[0].reason == b.TRIP_SLOW_CALL_RATE
    assert "slower than 2s" in made[0].detail


def test_open_blocks_until_cooldown_then_half_open_probes_close_it() -> None:
    br = Breaker(CFG)
    trip(br, 0.0)
    assert not br.allows_call(10.0)
    assert not br.allows_call(30.2)  # opened at 0.3
    assert br.state is S.OPEN
    assert br.allows_call(30.3)  # cooldown elapsed: half-open, probe 1
    assert br.snapshot().state is S.HALF_OPEN and br.metric_value == 2
    assert br.allows_call(30.4)  # probe 2
    assert not br.allows_call(30.5)  # no third probe
    assert br.record(Outcome.SUCCESS, 0.1, 31.0) == []
    made = br.record(Outcome.SUCCESS, 0.1, 31.1)
    assert [(m.from_state, m.to_state, m.reason) for m in made] == [
        (S.HALF_OPEN, S.CLOSED, b.PROBES_SUCCEEDED)]
    assert br.snapshot().calls == 0  # fresh window
    reasons = [t.reason for t in br.take_transitions()]
    assert reasons == [b.TRIP_FAILURE_RATE, b.COOLDOWN_ELAPSED, b.PROBES_SUCCEEDED]
    assert br.take_transitions() == []


@pytest.mark.parametrize(("outcome", "duration", "reason"), [
    (Outcome.FAILURE, 0.1, b.PROBE_FAILED),
    (Outcome.SUCCESS, 5.0, b.PROBE_SLOW),
])
def test_failed_or_slow_probe_reopens(outcome: Outcome, duration: float, reason: str) -> None:
    br = Breaker(CFG)
    trip(br)
    assert br.allows_call(40.0)
    made = br.record(outcome, duration, 40.5)
    assert made[0].to_state is S.OPEN and made[0].reason == reason
    assert br.trips == 2
    assert not br.allows_call(41.0)  # a new cooldown from 40.5
    assert br.allows_call(70.5)


def test_ignored_probe_releases_its_slot() -> None:
    br = Breaker(CFG)
    trip(br)
    assert br.allows_call(40.0) and br.allows_call(40.0)
    assert not br.allows_call(40.0)
    br.record(Outcome.IGNORED, 0.1, 40.1)
    assert br.allows_call(40.2)


def test_lost_probe_reports_cannot_wedge_half_open() -> None:
    br = Breaker(CFG)
    trip(br)
    assert br.allows_call(40.0) and br.allows_call(45.0)
    assert not br.allows_call(69.0)
    assert not br.allows_call(70.0)  # the probe of 40.0 unreported for a cooldown -> reopen
    assert br.state is S.OPEN and br.snapshot().last_transition.reason == b.PROBE_TIMEOUT  # type: ignore[union-attr]
    assert br.trips == 2
    assert br.allows_call(100.0) and br.snapshot().state is S.HALF_OPEN


def test_quiet_half_open_waits_without_tripping() -> None:
    br = Breaker(CFG)
    trip(br)
    assert br.poll(31.0)[0].to_state is S.HALF_OPEN
    for t in (100.0, 1000.0, 10_000.0):
        assert br.poll(t) == []
    assert br.state is S.HALF_OPEN and br.trips == 1
    assert br.allows_call(10_000.0)
    assert br.allows_call(10_000.5)  # a late second probe is not mistaken for a lost one
    br.record(Outcome.SUCCESS, 0.1, 10_001.0)
    br.record(Outcome.SUCCESS, 0.1, 10_001.0)
    assert br.snapshot().state is S.CLOSED


def test_results_arriving_while_open_are_ignored() -> None:
    br = Breaker(CFG)
    trip(br)
    assert br.record(Outcome.FAILURE, 0.1, 1.0) == []
    assert br.record(Outcome.SUCCESS, 0.1, 1.0) == []
    assert br.state is S.OPEN and br.trips == 1


def test_dry_run_records_trips_but_never_blocks() -> None:
    cfg = CircuitBreakerConfig(**{**_fields(CFG), "dry_run": True})
    br = Breaker(cfg)
    trip(br)
    assert br.state is S.OPEN and br.trips == 1
    assert br.allows_call(1.0)
    snap = br.snapshot()
    assert snap.metric_value == 1 and not snap.blocks_orders
    assert all(br.allows_call(40.0) for _ in range(5))  # half-open: still no limit
    assert br.snapshot().state is S.HALF_OPEN


def test_forced_open_blocks_even_in_dry_run_until_closed() -> None:
    cfg = CircuitBreakerConfig(**{**_fields(CFG), "dry_run": True})
    br = Breaker(cfg)
    made = br.force_open(1.0, "admin:abc")
    assert made[0] == Transition(S.CLOSED, S.FORCED_OPEN, b.OPERATOR_OPEN, 1.0, "admin:abc")
    assert br.force_open(2.0, "admin:abc") == []
    assert not br.allows_call(1000.0)
    assert br.record(Outcome.SUCCESS, 0.1, 1000.0) == []
    assert br.state is S.FORCED_OPEN and br.trips == 0 and br.metric_value == 1
    assert br.snapshot().forced_by == "admin:abc" and br.snapshot().blocks_orders
    made = br.force_close(1001.0, "admin:abc")
    assert (made[0].to_state, made[0].reason) == (S.CLOSED, b.OPERATOR_CLOSE)
    assert br.allows_call(1001.0) and br.snapshot().forced_by is None


def test_operator_close_from_closed_empties_the_window() -> None:
    br = Breaker(CFG)
    for t in range(3):
        br.record(Outcome.FAILURE, 0.1, float(t))
    made = br.force_close(3.0, "admin:x")
    assert made[0].from_state is S.CLOSED and made[0].to_state is S.CLOSED
    br.record(Outcome.FAILURE, 0.1, 4.0)
    assert br.state is S.CLOSED  # the earlier three are forgotten


def test_operator_close_from_open() -> None:
    br = Breaker(CFG)
    trip(br)
    br.force_close(5.0, "admin:x")
    assert br.state is S.CLOSED and br.allows_call(5.0) and br.trips == 1


def test_disabled_allows_everything_and_records_nothing() -> None:
    br = Breaker(CFG)
    br.disable(0.0, "admin:x")
    for t in range(20):
        assert br.allows_call(float(t))
        assert br.record(Outcome.FAILURE, 9.0, float(t)) == []
    assert br.state is S.DISABLED and br.metric_value == 0
    br.force_close(30.0, "admin:x")
    assert br.snapshot().state is S.CLOSED


def test_reconfigure_keeps_state() -> None:
    br = Breaker(CFG)
    trip(br)
    br.reconfigure(CircuitBreakerConfig(**{**_fields(CFG), "open_cooldown_s": 5.0}))
    assert br.state is S.OPEN and br.allows_call(6.0)


def test_outcome_from_text() -> None:
    assert Outcome("failure") is Outcome.FAILURE and Outcome("Ignored") is Outcome.IGNORED
    with pytest.raises(ValueError):
        Outcome("meh")


def test_blocks_orders_table() -> None:
    assert blocks_orders(S.OPEN, False) and not blocks_orders(S.OPEN, True)
    assert blocks_orders(S.FORCED_OPEN, True)
    assert not any(blocks_orders(s, False) for s in (S.CLOSED, S.HALF_OPEN, S.DISABLED))


@pytest.mark.parametrize(("exc", "outcome"), [
    (None, Outcome.SUCCESS),
    (errors.UnknownExecutionStatus("timeout"), Outcome.FAILURE),
    (errors.IpBanned(120.0), Outcome.FAILURE),
    (errors.RateLimited(1.0), Outcome.IGNORED),
    (errors.RateLimited(None, local=True), Outcome.IGNORED),
    (errors.TimestampError(-1021, "ahead"), Outcome.IGNORED),
    (errors.TransportError("refused"), Outcome.FAILURE),
    (errors.VenueRejected(-1013, "Filter failure: LOT_SIZE"), Outcome.IGNORED),
    (errors.VenueRejected(-2010, "insufficient balance"), Outcome.IGNORED),
    (errors.AuthError(-2015, "bad key"), Outcome.IGNORED),
    (RuntimeError("bug"), Outcome.FAILURE),
    (KeyboardInterrupt(), Outcome.IGNORED),
])
def test_classify_error(exc: BaseException | None, outcome: Outcome) -> None:
    assert classify_error(exc) is outcome


def _fields(cfg: CircuitBreakerConfig) -> dict[str, Any]:
    return attrs.asdict(cfg)


# -- properties -------------------------------------------------------------------------------

def decode_op(dice: int, code: int) -> tuple[Any, ...]:
    """Two random numbers -> one operation (few draws per operation keep generation cheap).

    Mostly calls and outcomes close together; now and then a long pause, a timer poll or an
    operator (rarely, since a forced state stops the automatic machine until it is undone)."""
    code, small = divmod(code, 11)
    code, roll = divmod(code, 10)
    code, speed = divmod(code, 4)
    long_pause = code % 10 == 9
    dt = (code * 7 % 401) / 10 if long_pause else small / 10
    if dice < 40:
        return ("allow", dt)
    if dice < 94:
        outcome = Outcome.SUCCESS if roll < 6 else Outcome.FAILURE if roll < 9 else Outcome.IGNORED
        return ("record", dt, outcome, (0.1, 0.1, 0.5, 3.0)[speed])
    if dice < 97:
        return ("poll", dt)
    return (("force_open", "force_close", "disable")[dice - 97], dt)


op_st = st.builds(decode_op, st.integers(0, 99), st.integers(0, 11 * 10 * 4 * 10 - 1))


cfg_st = st.builds(
    CircuitBreakerConfig,
    dry_run=st.booleans(),
    window_s=st.sampled_from([5.0, 60.0]),
    min_calls=st.integers(1, 4),
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 1.0]),
    slow_call_duration_s=st.just(2.0),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    open_cooldown_s=st.sampled_from([1.0, 5.0, 30.0]),
    half_open_probes=st.integers(1, 3),
)


@settings(max_examples=100, deadline=None)
@given(cfg=cfg_st, ops=st.lists(op_st, min_size=20, max_size=60))
def test_breaker_invariants_over_random_histories(
    cfg: CircuitBreakerConfig, ops: list[tuple[Any, ...]]
) -> None:
    br = Breaker(cfg)
    now = 0.0
    returned: list[Transition] = []
    opened_at: float | None = None
    half_open_allowed = 0  # probe calls allowed in the current half-open phase
    half_open_released = 0  # ... and given back by IGNORED outcomes
    for op in ops:
        kind, dt = op[0], op[1]
        now += dt
        before = br.state
        made: list[Transition] = []
        if kind == "allow":
            n_before = len(br.take_transitions())
            assert n_before == 0
            allowed = br.allows_call(now)
            made = br.take_transitions()
            for t in made:  # transitions made by this very call come first
                if t.to_state is S.OPEN:
                    opened_at = now
                if t.to_state is S.HALF_OPEN:
                    half_open_allowed = half_open_released = 0
            state_at_call = br.state
            if state_at_call in (S.CLOSED, S.DISABLED):
                assert allowed
            if state_at_call is S.FORCED_OPEN:
                assert not allowed
            if state_at_call is S.OPEN:
                # still OPEN after the call means the cooldown has not elapsed
                assert opened_at is not None and now - opened_at < cfg.open_cooldown_s
                assert allowed is cfg.dry_run
            if state_at_call is S.HALF_OPEN:
                if allowed:
                    half_open_allowed += 1
                if not cfg.dry_run:
                    assert half_open_allowed - half_open_released <= cfg.half_open_probes
            returned += made
        elif kind == "record":
            outcome, duration = op[2], op[3]
            if before is S.HALF_OPEN and outcome is Outcome.IGNORED and \
                    half_open_allowed > half_open_released:
                half_open_released += 1
            made = br.record(outcome, duration, now)
            if before in (S.OPEN, S.FORCED_OPEN, S.DISABLED):
                assert made == [] and br.state is before
            returned += made
            br.take_transitions()
        else:
            made = getattr(br, kind)(now, "admin:test") if kind != "poll" else br.poll(now)
            returned += made
            br.take_transitions()
        for t in made:
            assert t.to_state in ALLOWED_TRANSITIONS[t.from_state]
            assert not (t.from_state is S.CLOSED and t.to_state is S.HALF_OPEN)
            assert t.reason in b.TRANSITION_REASONS
            assert t.at == now
            if kind != "allow" and t.to_state is S.OPEN:
                opened_at = now
            if kind != "allow" and t.to_state is S.HALF_OPEN:
                half_open_allowed = half_open_released = 0
        if before is S.FORCED_OPEN and kind not in ("force_close", "disable"):
            assert br.state is S.FORCED_OPEN, "only an operator leaves FORCED_OPEN"
        assert br.metric_value == {S.CLOSED: 0, S.DISABLED: 0, S.OPEN: 1, S.FORCED_OPEN: 1,
                                   S.HALF_OPEN: 2}[br.state]
    for t in returned:
        event(f"{t.from_state}->{t.to_state}")
    # the chain of transitions is continuous and trips count the automatic entries into OPEN
    state = S.CLOSED
    for t in returned:
        assert t.from_state is state
        state = t.to_state
    assert state is br.state
    assert br.trips == sum(1 for t in returned if t.to_state is S.OPEN)
