"""Rate-limit budget and server-time offset, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.exchange.models import RateLimitRule
from spark.exchange.ratelimit import RateLimitBudget, interval_seconds
from spark.exchange.timesync import ServerTimeOffset

T0 = 1_700_000_020.0  # 40 s into a minute, at the start of a 10-s window


def test_interval_keys() -> None:
    assert interval_seconds("1M") == 60
    assert interval_seconds("10s") == 10
    assert interval_seconds("1D") == 86400
    assert interval_seconds("1H") == 3600
    for bad in ("", "M", "0M", "1X", "-1M"):
        with pytest.raises(ValueError):
            interval_seconds(bad)


def test_headers_are_read_and_waits_until_the_window_rolls() -> None:
    b = RateLimitBudget(weight_limits={"1M": 100}, order_limits={"10S": 10}, ceiling=1.0)
    assert b.wait_time(T0, 5) == 0
    t = b.acquire(T0, 5)
    b.on_response(t, T0 + 0.1, {"X-MBX-USED-WEIGHT-1M": "90", "x-mbx-used-weight": "90",
                                "X-MBX-ORDER-COUNT-10S": "0", "Content-Type": "json"})
    assert b.used_weight(T0 + 0.1) == 90
    assert b.wait_time(T0 + 0.1, 10) == 0  # exactly at the limit is fine
    assert b.wait_time(T0 + 0.1, 11) == pytest.approx(60 - 40.1)  # until the next minute
    # A new minute: the venue's count resets, and so does ours.
    assert b.wait_time(T0 + 20, 11) == 0
    assert b.used_weight(T0 + 20) == 0


def test_in_flight_weight_counts_until_answered() -> None:
    b = RateLimitBudget(weight_limits={"1M": 100}, ceiling=1.0)
    tickets = [b.acquire(T0, 20) for _ in range(5)]
    assert b.used_weight(T0) == 100
    assert b.wait_time(T0, 1) > 0
    for t in tickets:
        b.on_response(t, T0 + 1, {"X-MBX-USED-WEIGHT-1M": "30"})
    assert b.used_weight(T0 + 1) == 30  # reported total replaces the pending estimate
    # Reports only grow within a window (responses can arrive out of order).
    b.on_response(None, T0 + 2, {"X-MBX-USED-WEIGHT-1M": "25"})
    assert b.used_weight(T0 + 2) == 30


def test_failed_request_that_may_have_been_sent_is_counted() -> None:
    b = RateLimitBudget(weight_limits={"1M": 100}, ceiling=1.0)
    t = b.acquire(T0, 40)
    b.on_no_response(t, T0 + 1, may_have_been_sent=True)
    assert b.used_weight(T0 + 1) == 40
    t2 = b.acquire(T0 + 1, 40)
    b.on_no_response(t2, T0 + 2, may_have_been_sent=False)
    assert b.used_weight(T0 + 2) == 40


def test_share_splits_the_budget_between_runtimes() -> None:
    b = RateLimitBudget(weight_limits={"1M": 100}, share=0.5, ceiling=1.0)
    t = b.acquire(T0, 50)
    b.on_response(t, T0, {"X-MBX-USED-WEIGHT-1M": "50"})
    assert b.wait_time(T0, 1) == pytest.approx(20)  # own share used up
    other = RateLimitBudget(weight_limits={"1M": 100}, share=0.5, ceiling=1.0)
    other.on_response(None, T0, {"X-MBX-USED-WEIGHT-1M": "50"})  # the IP total it sees
    assert other.wait_time(T0, 50) == 0  # its own half is untouched
    assert other.wait_time(T0, 51) > 0


def test_ceiling_keeps_headroom_below_the_hard_limit() -> None:
    b = RateLimitBudget(weight_limits={"1M": 1000}, ceiling=0.9)
    b.on_response(None, T0, {"X-MBX-USED-WEIGHT-1M": "895"})
    assert b.wait_time(T0, 5) == 0
    assert b.wait_time(T0, 6) > 0


def test_a_request_bigger_than_the_allowance_goes_at_window_start() -> None:
    b = RateLimitBudget(weight_limits={"1M": 50}, share=0.5)
    assert b.wait_time(T0, 80) == 0
    b.acquire(T0, 80)
    assert b.wait_time(T0, 1) > 0


def test_order_counts_only_apply_to_orders() -> None:
    b = RateLimitBudget(weight_limits={"1M": 6000}, order_limits={"10S": 2, "1D": 1000},
                        ceiling=1.0)
    for _ in range(2):
        b.acquire(T0, 1, is_order=True)
    assert b.wait_time(T0, 1, is_order=True) == pytest.approx(10)  # 10-s window ends at +10
    assert b.wait_time(T0, 4, is_order=False) == 0
    assert b.own_usage(T0, "orders", "10S") == 2


def test_429_blocks_until_retry_after_and_418_bans() -> None:
    b = RateLimitBudget()
    b.on_rate_limited(T0, 7)
    assert b.wait_time(T0 + 1, 1) == pytest.approx(6)
    assert b.blocked_until(T0 + 1) == T0 + 7
    assert b.blocked_until(T0 + 7) is None
    assert b.wait_time(T0 + 7, 1) == 0
    until = b.on_banned(T0, 120)
    assert until == T0 + 120 and b.banned_until(T0 + 60) == T0 + 120
    assert b.wait_time(T0 + 60, 1) == pytest.approx(60)
    assert b.banned_until(T0 + 121) is None
    # No Retry-After: a 429 waits out the minute; a 418 assumes Binance's shortest ban.
    c = RateLimitBudget()
    c.on_rate_limited(T0, None)
    assert c.blocked_until(T0) == pytest.approx(T0 + 20)
    assert c.on_banned(T0, None) == T0 + 120


def test_limits_from_exchange_info() -> None:
    b = RateLimitBudget(weight_limits={"1M": 6000}, order_limits={"10S": 100}, ceiling=1.0)
    b.acquire(T0, 10)
    b.configure_from_rules([
        RateLimitRule("REQUEST_WEIGHT", "MINUTE", 1, 1200),
        RateLimitRule("ORDERS", "SECOND", 10, 50),
        RateLimitRule("ORDERS", "DAY", 1, 160000),
        RateLimitRule("RAW_REQUESTS", "MINUTE", 5, 61000),
    ])
    assert b.limits("weight") == {"1M": 1200}
    assert b.limits("orders") == {"10S": 50, "1D": 160000}
    assert b.used_weight(T0) == 10  # what was counted survives reconfiguration


@given(st.lists(st.tuples(st.integers(1, 50), st.booleans(), st.floats(0, 5)), max_size=60))
def test_never_admits_beyond_the_limit(requests: list[tuple[int, bool, float]]) -> None:
    """Admitting only when wait_time is 0 never lets own usage exceed share * limit
    (except one oversized request at a window start)."""
    limit, share = 200, 0.5
    b = RateLimitBudget(weight_limits={"1M": limit}, order_limits={"10S": 5}, share=share)
    now = T0
    for weight, is_order, dt in requests:
        now += dt
        if b.wait_time(now, weight, is_order) == 0:
            b.acquire(now, weight, is_order)
            assert b.own_usage(now, "weight", "1M") <= max(share * limit, weight)
            assert b.own_usage(now, "orders", "10S") <= max(share * 5, 1)


def test_time_offset_midpoint_and_best_round_trip() -> None:
    o = ServerTimeOffset()
    assert o.needs_sync and o.timestamp(1000) == 1000
    # Sent at 1000, answered at 1100 (rtt 100): server read its clock at local 1050.
    assert o.record(1000, 5050, 1100) == 4000
    assert not o.needs_sync and o.rtt_ms == 100
    assert o.timestamp(2000) == 6000
    assert o.server_seconds(2000) == 6.0
    o.record(3000, 9000, 3400)  # slower sample (rtt 400) does not replace a better one
    assert o.offset_ms == 4000
    o.record(3000, 8010, 3020)  # faster one does (midpoint 3010)
    assert o.offset_ms == 5000 and o.rtt_ms == 20
    o.mark_stale()  # after -1021: whatever comes next wins
    assert o.needs_sync
    o.record(10_000, 10_500, 10_600)
    assert o.offset_ms == 200 and o.samples == 4
    with pytest.raises(ValueError):
        o.record(5, 0, 4)
