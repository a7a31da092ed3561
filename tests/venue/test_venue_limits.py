"""Request weights, order counts, 429 with Retry-After, and the 418 ban."""

from __future__ import annotations

import pytest
from venue_helpers import quiet_config, running

from spark.core.clock import FixedClock
from spark.venue.errors import InvalidListenKey, IpBanned, TooManyOrders, TooManyRequests
from spark.venue.listenkeys import VALIDITY_MS, ListenKeys
from spark.venue.ratelimit import RateLimiter

T0 = 1_790_000_040_000  # a whole minute (and a whole 10 s)


def limiter(**kw: int) -> RateLimiter:
    args = {"weight_limit": 10, "order_limit_10s": 3, "order_limit_1d": 5, "ban_after_429s": 2,
            "ban_ms": 120_000}
    args.update(kw)
    return RateLimiter(**args)


def test_weight_window_is_aligned_to_the_minute() -> None:
    rl = limiter()
    assert rl.admit("ip", 4, T0 + 59_000) == 4
    assert rl.admit("ip", 4, T0 + 59_999) == 8
    assert rl.admit("ip", 4, T0 + 60_000) == 4  # a new minute starts at :00
    assert rl.used("other", T0) == 0


def test_429s_within_a_minute_earn_a_ban_that_lifts() -> None:
    rl = limiter()
    rl.admit("ip", 10, T0)
    with pytest.raises(TooManyRequests) as first:
        rl.admit("ip", 1, T0 + 30_000)
    assert first.value.retry_after_ms == 30_000 and first.value.retry_after_s == 30
    with pytest.raises(TooManyRequests):
        rl.admit("ip", 1, T0 + 31_000)
    with pytest.raises(IpBanned) as banned:
        rl.admit("ip", 1, T0 + 61_000)  # new minute, but banned
    assert banned.value.status == 418 and banned.value.retry_after_ms == 90_000
    assert rl.admit("ip", 1, T0 + 151_000) == 1


def test_order_counts_per_10_seconds_and_per_day() -> None:
    rl = limiter()
    assert [rl.admit_order("acct", T0 + i) for i in range(3)] == [(1, 1), (2, 2), (3, 3)]
    with pytest.raises(TooManyOrders) as caught:
        rl.admit_order("acct", T0 + 5_000)
    assert caught.value.msg == "Too many new orders; current limit is 3 orders per 10 SECOND."
    rl.admit_order("acct", T0 + 10_000)
    rl.admit_order("acct", T0 + 10_001)
    with pytest.raises(TooManyOrders, match="5 orders per 1 DAY"):
        rl.admit_order("acct", T0 + 20_000)


def test_listen_keys_are_extended_and_expire_after_an_hour() -> None:
    keys = ListenKeys(seed=1)
    key = keys.create("main", T0)
    assert len(key) == 64 and keys.create("main", T0 + 1000) == key
    assert keys.expires_at(key) == T0 + 1000 + VALIDITY_MS
    assert keys.keepalive("main", key, T0 + 30 * 60_000) == key
    assert keys.expire_due(T0 + VALIDITY_MS + 1000) == []
    assert keys.expire_due(T0 + 30 * 60_000 + VALIDITY_MS) == [key]
    with pytest.raises(InvalidListenKey, match=r"This listenKey does not exist\."):
        keys.keepalive("main", None, T0)


async def test_every_response_carries_the_used_weight() -> None:
    async with running() as v:
        first = await v.http.get("/api/v3/ping")
        assert first.headers["x-mbx-used-weight-1m"] == "1"
        assert first.headers["x-mbx-used-weight"] == "1"
        info = await v.http.get("/api/v3/exchangeInfo")
        assert info.headers["x-mbx-used-weight-1m"] == "21"
        order = await v.client.call("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                                    type="MARKET", quantity="0.01")
        assert order.headers["x-mbx-used-weight-1m"] == "22"
        assert order.headers["x-mbx-order-count-10s"] == "1"
        assert order.headers["x-mbx-order-count-1d"] == "1"
        query = await v.client.call("GET", "/api/v3/openOrders")
        assert query.headers["x-mbx-used-weight-1m"] == "102"
        assert "x-mbx-order-count-10s" not in query.headers


async def test_over_the_weight_limit_is_429_then_418() -> None:
    clock = FixedClock(T0 + 1_000)
    async with running(quiet_config(weight_limit_1m=25, ban_after_429s=3, ban_s=120.0),
                       clock=clock) as v:
        assert (await v.http.get("/api/v3/exchangeInfo")).status_code == 200
        over = await v.http.get("/api/v3/exchangeInfo")
        assert over.status_code == 429
        assert over.headers["retry-after"] == "59"
        assert over.json() == {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 25 request weight per "
                   "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
                   "the API."}
        for _ in range(2):
            assert (await v.http.get("/api/v3/ping")).status_code == 429
        banned = await v.http.get("/api/v3/ping")
        assert banned.status_code == 418
        assert banned.headers["retry-after"] == "120"
        assert banned.json()["msg"].startswith(
            f"Way too much request weight used; IP banned until {T0 + 1_000 + 120_000}.")
        clock.advance(121_000)
        assert (await v.http.get("/api/v3/ping")).status_code == 200


async def test_order_rate_limit_is_429_with_code_1015() -> None:
    clock = FixedClock(T0)
    async with running(quiet_config(order_limit_10s=2), clock=clock) as v:
        for _ in range(2):
            await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                              type="MARKET", quantity="0.01")
        refused = await v.client.call("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                                      type="MARKET", quantity="0.01")
        assert refused.status_code == 429 and refused.json()["code"] == -1015
        assert refused.headers["retry-after"] == "10"
        assert len(v.venue.core.spot.orders) == 2
