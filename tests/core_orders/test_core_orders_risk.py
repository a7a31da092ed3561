"""The risk guard, example by example: every reason code, fail-closed cases, reducing orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from core_orders_helpers import BTC_RULES, T0_MS, context, intent
from hypothesis import given
from hypothesis import strategies as st

from spark.config.schema import RiskConfig
from spark.core import risk
from spark.core.breaker import BreakerState
from spark.core.intents import OrderType, Side, TimeInForce
from spark.core.risk import (
    IncompleteFilters,
    RiskDecision,
    RollingCounter,
    SymbolRules,
    evaluate,
    reduces_risk,
)
from spark.core.trading_state import TradingState
from spark.exchange.models import SymbolFilters

D = Decimal
ALWAYS = RiskConfig(trade_window="00:00-24:00")
NOW_S = 1000.0


def check(i: object = None, limits: RiskConfig = ALWAYS, now_ms: int = T0_MS,
          **ctx: object) -> RiskDecision:
    return evaluate(i if i is not None else intent(), context(**ctx), limits, now_ms, NOW_S)  # type: ignore[arg-type]


def test_small_market_order_is_approved() -> None:
    d = check()
    assert d.approved and d.reason is None and d.reduces_risk is False
    assert "notional" in d.detail


@pytest.mark.parametrize(
    ("i", "ctx", "reason"),
    [
        (intent(), {"kill_switch": True}, risk.KILL_SWITCH),
        (intent(), {"breaker_state": BreakerState.OPEN}, risk.CIRCUIT_BREAKER_OPEN),
        (intent(), {"breaker_state": BreakerState.FORCED_OPEN, "breaker_dry_run": True},
         risk.CIRCUIT_BREAKER_OPEN),
        (intent(), {"trading_state": TradingState.HALTED}, risk.TRADING_HALTED),
        (intent(), {"trading_state": TradingState.REDUCING}, risk.REDUCING_ONLY),
        (intent(), {"gate_open": False}, risk.DRIFT_GATE),
        (intent(cid="no spaces"), {}, risk.INVALID_CLIENT_ORDER_ID),
        (intent("0"), {}, risk.INVALID_QUANTITY),
        (intent("NaN"), {}, risk.INVALID_QUANTITY),
        (intent(type=OrderType.LIMIT), {}, risk.INVALID_PRICE),
        (intent(price="45000"), {}, risk.INVALID_PRICE),
        (intent(tif=TimeInForce.IOC), {}, risk.INVALID_TIME_IN_FORCE),
        (intent(symbol="btc"), {}, risk.INVALID_SYMBOL),
        (intent(symbol="XRPUSDT"), {}, risk.SYMBOL_NOT_WHITELISTED),
        (intent(), {"positions": {}}, risk.UNKNOWN_POSITION),
        (intent(), {"positions": {"BTCUSDT": None}}, risk.UNKNOWN_POSITION),
        (intent(), {"rules": {}}, risk.NO_EXCHANGE_FILTERS),
        (intent(), {"rules": {"BTCUSDT": SymbolRules(
            symbol="BTCUSDT", tick_size=D("0.01"), step_size=D("0.00001"),
            min_qty=D("0.00001"), max_qty=D(1), trading=False)}}, risk.SYMBOL_NOT_TRADING),
        (intent(type=OrderType.LIMIT, price="45000.005"), {}, risk.TICK_SIZE),
        (intent("0.000001"), {}, risk.MIN_QTY),
        (intent("9001"), {}, risk.MAX_QTY),
        (intent("0.000105"), {}, risk.STEP_SIZE),
        (intent(), {"reference_prices": {}}, risk.NO_REFERENCE_PRICE),
        (intent(), {"reference_prices": {"BTCUSDT": None}}, risk.NO_REFERENCE_PRICE),
        (intent(), {"reference_prices": {"BTCUSDT": D(0)}}, risk.NO_REFERENCE_PRICE),
        (intent(type=OrderType.LIMIT, price="48000"), {}, risk.PRICE_BAND),
        (intent("0.00001"), {}, risk.MIN_NOTIONAL),
        (intent("0.001"), {}, risk.MAX_NOTIONAL),
        (intent("0.0004"), {"positions": {"BTCUSDT": D("0.002")}}, risk.MAX_POSITION),
        (intent(), {"open_orders": 10}, risk.MAX_OPEN_ORDERS),
        (intent(), {"recent_orders": 30}, risk.RATE_LIMIT),
    ],
)
def test_each_reason(i: object, ctx: dict[str, Any], reason: str) -> None:
    d = check(i, **ctx)
    assert not d.approved
    assert d.reason == reason
    assert reason in risk.REASONS
    assert d.detail


def test_price_filter_and_venue_max_notional() -> None:
    rules = SymbolRules(symbol="BTCUSDT", tick_size=D("0.01"), step_size=D("0.00001"),
                        min_qty=D("0.00001"), max_qty=D(9000), min_notional=D(5),
                        max_notional=D(10), min_price=D(100), max_price=D(50000))
    lim = RiskConfig(trade_window="00:00-24:00", price_band_bps=D(9000))
    low = intent("1", type=OrderType.LIMIT, price="99")
    assert check(low, lim, rules={"BTCUSDT": rules}).reason == risk.PRICE_FILTER
    high = intent("0.0001", type=OrderType.LIMIT, price="50000.01")
    assert check(high, lim, rules={"BTCUSDT": rules}).reason == risk.PRICE_FILTER
    big = intent("0.0003")  # 13.5 USDT > venue max 10
    assert check(big, lim, rules={"BTCUSDT": rules}).reason == risk.MAX_NOTIONAL_FILTER


def test_limits_are_inclusive_and_exact() -> None:
    # 0.0005 * 40000 = 20 exactly: allowed; one step more is over.
    at_40k = {"BTCUSDT": D(40000)}
    assert check(intent("0.0005"), reference_prices=at_40k).approved
    assert check(intent("0.00051"), reference_prices=at_40k).reason == risk.MAX_NOTIONAL
    # price band exactly 500 bps is inside, a cent more is not
    assert check(intent(type=OrderType.LIMIT, price="47250")).approved
    assert check(intent(type=OrderType.LIMIT, price="47250.01")).reason == risk.PRICE_BAND
    assert check(intent(type=OrderType.LIMIT, price="42750")).approved
    assert check(intent(type=OrderType.LIMIT, price="42749.99")).reason == risk.PRICE_BAND
    # max_position: |0.002 + 0.0002| * 45000 = 99 <= 100
    assert check(intent("0.0002"), positions={"BTCUSDT": D("0.002")}).approved


def test_limit_notional_uses_the_limit_price() -> None:
    # 0.00042 at the reference (18.9) is fine, but at a 47000 limit it is 19.74: still fine;
    # 0.00043 at 47000 = 20.21 is over although at the reference it would be 19.35.
    assert check(intent("0.00043")).approved
    assert check(intent("0.00043", type=OrderType.LIMIT, price="47000")).reason == \
        risk.MAX_NOTIONAL


def test_reducing_order_skips_notional_and_position_limits() -> None:
    # Long 1 BTC (45,000 USDT, far over every limit): selling 0.5 reduces risk.
    sell = intent("0.5", side=Side.SELL)
    d = check(sell, positions={"BTCUSDT": D(1)})
    assert d.approved and d.reduces_risk
    # ...also in REDUCING and with the drift gate closed
    d = check(sell, positions={"BTCUSDT": D(1)}, trading_state=TradingState.REDUCING,
              gate_open=False)
    assert d.approved and d.reduces_risk
    # flattening exactly is reducing
    assert check(intent("1", side=Side.SELL), positions={"BTCUSDT": D(1)}).approved
    # flipping to short is not
    flip = check(intent("1.5", side=Side.SELL), positions={"BTCUSDT": D(1)})
    assert flip.reason == risk.MAX_NOTIONAL and flip.reduces_risk is False
    # a short is reduced by buying
    assert check(intent("0.5"), positions={"BTCUSDT": D(-1)}).approved


def test_reducing_order_still_meets_the_venue_and_pace_limits() -> None:
    pos = {"BTCUSDT": D(1)}
    assert check(intent("0.000105", side=Side.SELL), positions=pos).reason == risk.STEP_SIZE
    assert check(intent("0.5", side=Side.SELL), positions=pos, open_orders=10).reason == \
        risk.MAX_OPEN_ORDERS
    assert check(intent("0.5", side=Side.SELL), positions=pos, reference_prices={}).reason == \
        risk.NO_REFERENCE_PRICE
    # HALTED allows nothing new, reducing or not
    assert check(intent("0.5", side=Side.SELL), positions=pos,
                 trading_state=TradingState.HALTED).reason == risk.TRADING_HALTED
    assert check(intent("0.5", side=Side.SELL), positions=pos, kill_switch=True).reason == \
        risk.KILL_SWITCH


def test_breaker_dry_run_and_half_open_do_not_block() -> None:
    assert check(breaker_state=BreakerState.OPEN, breaker_dry_run=True).approved
    assert check(breaker_state=BreakerState.HALF_OPEN).approved
    assert check(breaker_state=BreakerState.DISABLED).approved


def ms(local: str, tz: str) -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


@pytest.mark.parametrize(
    ("window", "tz", "local", "inside"),
    [
        ("07:00-23:30", "UTC", "2026-11-20T06:59:59", False),
        ("07:00-23:30", "UTC", "2026-11-20T07:00:00", True),
        ("07:00-23:30", "UTC", "2026-11-20T23:30:00", False),
        ("22:00-06:00", "Europe/Berlin", "2026-11-20T23:59:00", True),
        ("22:00-06:00", "Europe/Berlin", "2026-11-21T05:59:00", True),
        ("22:00-06:00", "Europe/Berlin", "2026-11-21T06:00:00", False),
        ("22:00-06:00", "Europe/Berlin", "2026-11-21T12:00:00", False),
        ("09:30-16:00", "America/New_York", "2026-07-01T09:30:00", True),  # EDT
        ("09:30-16:00", "America/New_York", "2026-12-01T09:29:00", False),  # EST
        ("00:00-24:00", "Asia/Tokyo", "2026-12-01T03:00:00", True),
    ],
)
def test_trade_window_in_timezone(window: str, tz: str, local: str, inside: bool) -> None:
    lim = RiskConfig(trade_window=window, timezone=tz)
    d = check(limits=lim, now_ms=ms(local, tz))
    assert d.approved is inside
    if not inside:
        assert d.reason == risk.OUTSIDE_TRADE_WINDOW


def test_unknown_timezone_fails_closed() -> None:
    lim = RiskConfig(trade_window="07:00-23:30", timezone="Mars/Olympus")
    assert check(limits=lim).reason == risk.OUTSIDE_TRADE_WINDOW


def test_arithmetic_that_would_round_fails_closed() -> None:
    # a quantity with more digits than the exact context holds cannot be checked exactly
    huge = intent("0." + "1" * 120)
    d = check(huge)
    assert not d.approved and d.reason in risk.REASONS
    assert "cannot be evaluated" in d.detail


def test_rolling_counter() -> None:
    c = RollingCounter(60.0)
    for t in (0.0, 10.0, 59.0):
        c.add(t)
    assert c.count(59.5) == 3
    assert c.count(60.0) == 2  # the event at 0.0 is exactly one window old: gone
    assert c.count(70.0) == 1
    future = RollingCounter(60.0)
    future.add(100.0)
    assert future.count(50.0) == 1  # a time stamped in the future counts (fail closed)
    with pytest.raises(ValueError):
        RollingCounter(0)


def test_rate_limit_window_edge() -> None:
    lim = RiskConfig(trade_window="00:00-24:00", max_orders_per_minute=2)
    def counted(*times: float) -> int:
        c = RollingCounter(risk.RATE_WINDOW_S)
        for t in times:
            c.add(t)
        return c.count(NOW_S)

    at = counted(NOW_S - 60.0, NOW_S - 30.0)
    assert at == 1
    assert evaluate(intent(), context(recent_orders=at), lim, T0_MS, NOW_S).approved
    at = counted(NOW_S - 59.9, NOW_S - 30.0)
    assert evaluate(intent(), context(recent_orders=at), lim, T0_MS, NOW_S).reason == \
        risk.RATE_LIMIT


@given(pos=st.integers(-5, 5), delta=st.integers(-7, 7))
def test_reduces_risk_definition(pos: int, delta: int) -> None:
    after = pos + delta
    expected = pos != 0 and abs(after) < abs(pos) and (after == 0 or (after > 0) == (pos > 0))
    assert reduces_risk(D(pos), D(delta)) is expected


def test_symbol_rules_from_exchange() -> None:
    f = SymbolFilters(symbol="BTCUSDT", status="TRADING", base_asset="BTC", quote_asset="USDT",
                      tick_size=D("0.01"), min_price=D("0"), max_price=D("1000000"),
                      step_size=D("0.00001"), min_qty=D("0.00001"), max_qty=D(9000),
                      min_notional=D(5), max_notional=D(0))
    r = SymbolRules.from_exchange(f)
    assert (r.tick_size, r.step_size, r.min_qty, r.max_qty) == (
        D("0.01"), D("0.00001"), D("0.00001"), D(9000))
    assert r.min_price is None and r.max_price == D(1000000)
    assert r.min_notional == D(5) and r.max_notional is None and r.trading
    halted = SymbolRules.from_exchange(
        SymbolFilters(symbol="X", status="HALT", base_asset="X", quote_asset="Y",
                      tick_size=D(1), step_size=D(1), min_qty=D(0), max_qty=D(1)))
    assert not halted.trading and halted.min_notional == 0


@pytest.mark.parametrize("missing", ["tick_size", "step_size", "min_qty", "max_qty"])
def test_symbol_rules_incomplete(missing: str) -> None:
    values: dict[str, Any] = {"tick_size": D("0.01"), "step_size": D("0.001"),
                              "min_qty": D("0.001"), "max_qty": D(10)}
    values[missing] = None
    f = SymbolFilters(symbol="ETHUSDT", status="TRADING", base_asset="ETH", quote_asset="USDT",
                      **values)
    with pytest.raises(IncompleteFilters) as info:
        SymbolRules.from_exchange(f)
    assert info.value.missing == [missing] and info.value.reason == risk.NO_EXCHANGE_FILTERS


def test_zero_tick_is_incomplete_and_rules_validate() -> None:
    f = SymbolFilters(symbol="E", status="TRADING", base_asset="E", quote_asset="U",
                      tick_size=D(0), step_size=D("0.1"), min_qty=D(0), max_qty=D(1))
    with pytest.raises(IncompleteFilters):
        SymbolRules.from_exchange(f)
    with pytest.raises(ValueError):
        SymbolRules(symbol="E", tick_size=D(0), step_size=D(1), min_qty=D(0), max_qty=D(1))
    with pytest.raises(ValueError):
        SymbolRules(symbol="E", tick_size=D("NaN"), step_size=D(1), min_qty=D(0), max_qty=D(1))


def test_context_is_a_frozen_snapshot() -> None:
    prices = {"BTCUSDT": D(1)}
    ctx = context(reference_prices=prices)
    prices["BTCUSDT"] = D(2)
    assert ctx.reference_prices["BTCUSDT"] == D(1)
    with pytest.raises(TypeError):
        cast(Any, ctx.reference_prices)["BTCUSDT"] = D(3)  # read-only on purpose


def test_rules_fixture_is_sane() -> None:
    assert BTC_RULES.trading and BTC_RULES.tick_size == D("0.01")
