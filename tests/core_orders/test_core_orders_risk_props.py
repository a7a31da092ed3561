"""Properties of the risk guard against an independent oracle.

The oracle below is written plainly and separately from :mod:`spark.core.risk`: exact rational
arithmetic (``fractions.Fraction``) instead of a trapping Decimal context, its own trade-window
arithmetic (``datetime`` + ``zoneinfo``, no ``TradeWindow``), and it lists *every* limit an intent
violates rather than the first. The guard must then:

* approve exactly when the oracle finds no violation (nothing violating a limit gets through, and
  nothing clean is refused);
* when it rejects, name a reason the oracle also found (so the reason is true), from ``REASONS``;
* never reject a risk-reducing intent for ``max_notional``/``max_position``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import attrs
from hypothesis import event, given, settings
from hypothesis import strategies as st

from spark.config.schema import RiskConfig
from spark.core import risk
from spark.core.breaker import BreakerState
from spark.core.intents import OrderIntent, OrderType, Side, TimeInForce, signed_quantity
from spark.core.risk import RiskContext, SymbolRules, evaluate
from spark.core.trading_state import TradingState

D = Decimal
T = TypeVar("T")
NOW_S = 5000.0
WHITELIST = ("BTCUSDT", "ETHUSDT")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


# -- the oracle -------------------------------------------------------------------------------


def in_window(window: str, tz: str, now_ms: int) -> bool:
    start_s, end_s = window.split("-")
    start = int(start_s[:2]) * 60 + int(start_s[3:])
    end = int(end_s[:2]) * 60 + int(end_s[3:])
    if start == 0 and end == 24 * 60:
        return True
    local = datetime.fromtimestamp(now_ms / 1000, tz=ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def is_multiple(value: Fraction, step: Fraction) -> bool:
    return (value / step).denominator == 1


def violations(i: OrderIntent, c: RiskContext, lim: RiskConfig, now_ms: int) -> set[str]:
    v: set[str] = set()
    if c.kill_switch:
        v.add(risk.KILL_SWITCH)
    if c.breaker_state == BreakerState.FORCED_OPEN or (
        c.breaker_state == BreakerState.OPEN and not c.breaker_dry_run
    ):
        v.add(risk.CIRCUIT_BREAKER_OPEN)
    if c.trading_state == TradingState.HALTED:
        v.add(risk.TRADING_HALTED)

    invalid: set[str] = set()
    if re.fullmatch(r"[a-zA-Z0-9_-]{1,36}", i.client_order_id) is None:
        invalid.add(risk.INVALID_CLIENT_ORDER_ID)
    if not i.quantity.is_finite() or i.quantity <= 0:
        invalid.add(risk.INVALID_QUANTITY)
    if i.type == OrderType.LIMIT:
        if i.price is None or not i.price.is_finite() or i.price <= 0:
            invalid.add(risk.INVALID_PRICE)
    elif i.price is not None:
        invalid.add(risk.INVALID_PRICE)
    if i.time_in_force is not None and i.type != OrderType.LIMIT:
        invalid.add(risk.INVALID_TIME_IN_FORCE)
    sym = i.symbol
    if not (2 <= len(sym) <= 20 and sym.isascii() and sym.isalnum() and sym == sym.upper()):
        invalid.add(risk.INVALID_SYMBOL)
    if invalid:
        return v | invalid  # nothing else is meaningful for a malformed intent

    q = Fraction(i.quantity)
    p = None if i.price is None else Fraction(i.price)
    signed = q if i.side == Side.BUY else -q
    if i.symbol not in lim.whitelist:
        v.add(risk.SYMBOL_NOT_WHITELISTED)
    if not in_window(lim.trade_window, lim.timezone, now_ms):
        v.add(risk.OUTSIDE_TRADE_WINDOW)

    pos_d = c.positions.get(i.symbol)
    reducing = False
    if pos_d is None:
        v.add(risk.UNKNOWN_POSITION)
    else:
        pos = Fraction(pos_d)
        after = pos + signed
        reducing = pos != 0 and abs(after) < abs(pos) and (after == 0 or (after > 0) == (pos > 0))
        if not c.gate_open and not reducing:
            v.add(risk.DRIFT_GATE)
        if c.trading_state != TradingState.ACTIVE and not reducing:
            v.add(risk.REDUCING_ONLY)

    rules = c.rules.get(i.symbol)
    if rules is None:
        v.add(risk.NO_EXCHANGE_FILTERS)
    else:
        if not rules.trading:
            v.add(risk.SYMBOL_NOT_TRADING)
        if p is not None:
            lo = Fraction(rules.min_price) if rules.min_price is not None else Fraction(0)
            if rules.min_price is not None and p < lo:
                v.add(risk.PRICE_FILTER)
            if rules.max_price is not None and p > Fraction(rules.max_price):
                v.add(risk.PRICE_FILTER)
            if not is_multiple(p - lo, Fraction(rules.tick_size)):
                v.add(risk.TICK_SIZE)
        if q < Fraction(rules.min_qty):
            v.add(risk.MIN_QTY)
        if q > Fraction(rules.max_qty):
            v.add(risk.MAX_QTY)
        if not is_multiple(q - Fraction(rules.min_qty), Fraction(rules.step_size)):
            v.add(risk.STEP_SIZE)

    ref_d = c.reference_prices.get(i.symbol)
    if ref_d is None or ref_d <= 0:
        v.add(risk.NO_REFERENCE_PRICE)
    else:
        ref = Fraction(ref_d)
        if p is not None and abs(p - ref) / ref * 10000 > Fraction(lim.price_band_bps):
            v.add(risk.PRICE_BAND)
        notional = q * (p if p is not None else ref)
        if rules is not None:
            if notional < Fraction(rules.min_notional):
                v.add(risk.MIN_NOTIONAL)
            if rules.max_notional is not None and notional > Fraction(rules.max_notional):
                v.add(risk.MAX_NOTIONAL_FILTER)
        if not reducing:
            if notional > Fraction(lim.max_notional):
                v.add(risk.MAX_NOTIONAL)
            if pos_d is not None:
                exposure = abs(Fraction(pos_d) + signed) * ref
                if exposure > Fraction(lim.max_position_notional):
                    v.add(risk.MAX_POSITION)

    if c.open_orders >= lim.max_open_orders:
        v.add(risk.MAX_OPEN_ORDERS)
    recent = c.recent_orders
    if recent >= lim.max_orders_per_minute:
        v.add(risk.RATE_LIMIT)
    return v


# -- strategies -------------------------------------------------------------------------------
#
# One composite draws a coherent scenario: a baseline that the guard would approve, sized around
# the limits (notional, price band, position) so the boundaries are exercised, and then each
# aspect is spoiled with a small probability. That keeps approvals common (the property is only
# meaningful if many intents pass) while every reason code still shows up.

DICE = st.integers(0, 99)


def percent(draw: st.DrawFn, p: int) -> bool:
    """True with probability ``p`` percent (shrinks towards False)."""
    return draw(DICE) >= 100 - p


TICKS = [D("0.01"), D("0.1"), D("0.5"), D(1)]
STEPS = [D("0.001"), D("0.0001"), D("0.01"), D(1)]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[OrderIntent, RiskContext, RiskConfig, int]:
    def usually(normal: T, p: int, unusual: st.SearchStrategy[T]) -> T:
        return draw(unusual) if percent(draw, p) else normal

    lim = RiskConfig(
        max_notional=draw(st.sampled_from([D(20), D(5), D("100.5")])),
        whitelist=WHITELIST,
        trade_window=usually("00:00-24:00", 25, st.sampled_from(["07:00-23:30", "22:00-06:00"])),
        timezone=draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
        max_open_orders=draw(st.integers(1, 5)),
        max_orders_per_minute=draw(st.integers(1, 5)),
        price_band_bps=usually(D(500), 25, st.sampled_from([D(10), D("2.5")])),
        max_position_notional=draw(st.sampled_from([D(100), D(50), D(1000)])),
    )
    now_ms = draw(st.integers(1_767_225_600_000, 1_798_761_600_000))  # during 2026
    symbol = usually("BTCUSDT", 8, st.sampled_from(["ETHUSDT", "XRPUSDT", "btcusdt", "B"]))

    tick = draw(st.sampled_from(TICKS))
    step = draw(st.sampled_from(STEPS))
    min_qty = draw(st.sampled_from([step, D(0), step * 10, step * D("1.5")]))
    rules = SymbolRules(
        symbol=symbol,
        tick_size=tick,
        step_size=step,
        min_qty=min_qty,
        max_qty=usually(D(9000), 8, st.sampled_from([D(1), D("0.5")])),
        min_notional=draw(st.sampled_from([D(1), D(0), D(5)])),
        max_notional=usually(None, 10, st.sampled_from([D(100000), D(10)])),
        min_price=usually(None, 10, st.sampled_from([D("0.5"), D(90)])),
        max_price=usually(None, 10, st.sampled_from([D(100000), D(110)])),
        trading=not percent(draw, 4),
    )
    ref = max(tick, (D(draw(st.integers(5000, 20000))) / 100 / tick).to_integral_value() * tick)

    # quantity: a notional up to 130 % of the limit (often right at it), on the step grid
    share = draw(st.integers(97, 103) if percent(draw, 40) else st.integers(0, 130))
    target = lim.max_notional * share / 100
    qty = min_qty + (target / ref / step).to_integral_value() * step
    if qty <= 0:
        qty = step
    if percent(draw, 6):
        qty += step / 3  # off the grid
    if percent(draw, 4):
        qty = draw(st.sampled_from([D(0), D(-1), D("NaN"), D("Infinity"), D("-0")]))

    side = draw(st.sampled_from(Side))
    typ = draw(st.sampled_from(OrderType))
    price: Decimal | None = None
    tif: TimeInForce | None = None
    if typ == OrderType.LIMIT:
        reach = (lim.price_band_bps * ref / 10000 / tick).to_integral_value() + 1
        if percent(draw, 40):  # right at the edge of the band
            offset = (int(reach) - draw(st.integers(0, 2))) * draw(st.sampled_from([1, -1]))
        else:
            offset = draw(st.integers(-int(reach), int(reach)))
        price = ref + offset * tick
        if percent(draw, 6):
            price += tick / 2
        if price <= 0 or percent(draw, 4):
            price = draw(st.sampled_from([None, D(0), D(-5), D("NaN")]))
        tif = draw(st.sampled_from([None, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]))
    else:
        if percent(draw, 3):
            price = ref
        if percent(draw, 3):
            tif = TimeInForce.GTC

    # position: worth up to 120 % of the position limit either way, on the step grid
    worth = lim.max_position_notional * draw(st.integers(-120, 120)) / 100
    if percent(draw, 30) and qty.is_finite():  # so that this order ends right at the limit
        edge = lim.max_position_notional * draw(st.integers(97, 103)) / 100
        worth = edge * draw(st.sampled_from([1, -1])) - signed_quantity(side, qty) * ref
    position: Decimal | None = (worth / ref / step).to_integral_value() * step
    if percent(draw, 5):
        position = None

    max_open, max_rate = lim.max_open_orders, lim.max_orders_per_minute
    open_orders = draw(st.integers(0, max_open - 1)) if not percent(draw, 8) else max_open
    n_recent = draw(st.integers(0, max_rate - 1)) if not percent(draw, 8) else max_rate
    recent = n_recent

    i = OrderIntent(client_order_id="spk-prop", symbol=symbol, side=side, type=typ,
                    quantity=qty, price=price, time_in_force=tif)
    c = RiskContext(
        trading_state=usually(TradingState.ACTIVE, 10,
                              st.sampled_from([TradingState.REDUCING, TradingState.HALTED])),
        kill_switch=percent(draw, 4),
        breaker_state=usually(BreakerState.CLOSED, 12, st.sampled_from(BreakerState)),
        breaker_dry_run=percent(draw, 30),
        gate_open=not percent(draw, 8),
        reference_prices={} if percent(draw, 3) else {symbol: D(0) if percent(draw, 2) else ref},
        rules={} if percent(draw, 3) else {symbol: rules},
        positions={} if position is None else {symbol: position},
        open_orders=open_orders,
        recent_orders=recent,
    )
    return i, c, lim, now_ms


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(case=scenario())
def test_guard_agrees_with_the_oracle(
    case: tuple[OrderIntent, RiskContext, RiskConfig, int],
) -> None:
    i, c, lim, now_ms = case
    decision = evaluate(i, c, lim, now_ms, NOW_S)
    found = violations(i, c, lim, now_ms)
    event("approved" if decision.approved else f"rejected: {decision.reason}")
    if decision.approved:
        assert not found, f"approved although it violates {sorted(found)}"
        assert decision.reason is None
    else:
        assert decision.reason in risk.REASONS
        assert decision.reason in found, (
            f"rejected for {decision.reason}, but the oracle finds {sorted(found)}: "
            f"{decision.detail}")


@st.composite
def reducing_case(draw: st.DrawFn) -> tuple[OrderIntent, RiskContext, RiskConfig, int]:
    """A risk-reducing intent (opposite side to a known position, at most its size, on the
    symbol's step grid) in an otherwise random scenario; the position is usually worth far
    more than any notional or position limit."""
    i, c, lim, now_ms = draw(scenario())
    rules = attrs.evolve(next(iter(c.rules.values()), None) or RULES_ANY, symbol="BTCUSDT")
    size = draw(st.integers(1, 10**6))
    units = draw(st.integers(1, size))
    pos, qty = rules.step_size * size, rules.min_qty + rules.step_size * units
    if qty > pos:
        qty = pos
    long = draw(st.booleans())
    i = OrderIntent(client_order_id="spk-reduce", symbol="BTCUSDT",
                    side=Side.SELL if long else Side.BUY, type=OrderType.MARKET, quantity=qty)
    c = attrs.evolve(
        c,
        trading_state=draw(st.sampled_from([TradingState.ACTIVE, TradingState.REDUCING,
                                            TradingState.HALTED])),
        reference_prices={"BTCUSDT": D(draw(st.integers(1, 10**5)))},
        positions={"BTCUSDT": pos if long else -pos},
        rules={"BTCUSDT": rules},
    )
    return i, c, lim, now_ms


RULES_ANY = SymbolRules(symbol="BTCUSDT", tick_size=D("0.01"), step_size=D("0.001"),
                        min_qty=D("0.001"), max_qty=D(10**9))


@settings(max_examples=150, deadline=None)
@given(case=reducing_case())
def test_reducing_intents_never_rejected_for_notional_or_position(
    case: tuple[OrderIntent, RiskContext, RiskConfig, int],
) -> None:
    i, c, lim, now_ms = case
    decision = evaluate(i, c, lim, now_ms, NOW_S)
    event("approved" if decision.approved else f"rejected: {decision.reason}")
    assert decision.reason not in risk.NOTIONAL_REASONS | risk.POSITION_REASONS
    assert decision.reason not in (risk.REDUCING_ONLY, risk.DRIFT_GATE, risk.UNKNOWN_POSITION)
    if c.trading_state == TradingState.HALTED:
        assert not decision.approved, "HALTED allows no new order, reducing or not"
    if decision.reduces_risk is not None:
        assert decision.reduces_risk is True
    found = violations(i, c, lim, now_ms)
    assert decision.approved == (not found)


# -- one fault at a time, right at the boundary -----------------------------------------------
#
# The broad scenario above finds interactions; this one makes sure every single check is
# exercised at its edge: a clean order (approved) is spoiled in exactly one way, by the smallest
# step that crosses the limit, and the guard must name exactly that reason.

FAULTS = (
    None, risk.KILL_SWITCH, risk.CIRCUIT_BREAKER_OPEN, risk.TRADING_HALTED, risk.REDUCING_ONLY,
    risk.DRIFT_GATE, risk.INVALID_CLIENT_ORDER_ID, risk.INVALID_QUANTITY, risk.INVALID_PRICE,
    risk.INVALID_TIME_IN_FORCE, risk.INVALID_SYMBOL, risk.SYMBOL_NOT_WHITELISTED,
    risk.OUTSIDE_TRADE_WINDOW, risk.UNKNOWN_POSITION, risk.NO_EXCHANGE_FILTERS,
    risk.SYMBOL_NOT_TRADING, risk.PRICE_FILTER, risk.TICK_SIZE, risk.MIN_QTY, risk.MAX_QTY,
    risk.STEP_SIZE, risk.NO_REFERENCE_PRICE, risk.PRICE_BAND, risk.MIN_NOTIONAL,
    risk.MAX_NOTIONAL_FILTER, risk.MAX_NOTIONAL, risk.MAX_POSITION, risk.MAX_OPEN_ORDERS,
    risk.RATE_LIMIT,
)
# reasons the oracle also finds when the fault is injected (the guard names the first)
COMPANIONS = {risk.TRADING_HALTED: {risk.REDUCING_ONLY}}
LIMIT_ONLY = {risk.PRICE_FILTER, risk.TICK_SIZE, risk.PRICE_BAND}
TINY = D("0.0001")


@st.composite
def single_fault(draw: st.DrawFn) -> tuple[str | None, OrderIntent, RiskContext, RiskConfig,
                                           int]:
    fault = draw(st.sampled_from(FAULTS))
    tick = draw(st.sampled_from(TICKS))
    step = draw(st.sampled_from(STEPS[:3]))  # fine enough to size a notional of 5-15
    ref = (D(draw(st.integers(5000, 20000))) / 100 / tick).to_integral_value() * tick
    side = draw(st.sampled_from(Side))
    typ = OrderType.LIMIT if fault in LIMIT_ONLY else draw(st.sampled_from(OrderType))
    qty = max(step, (D(draw(st.integers(5, 15))) / ref / step).to_integral_value() * step)
    price = None
    if typ == OrderType.LIMIT:
        half_band = int(D(250) * ref / 10000 / tick)  # ticks within half the 500 bps band
        price = ref + draw(st.integers(-half_band, half_band)) * tick
    position = D(0) if fault in (risk.REDUCING_ONLY, risk.DRIFT_GATE, risk.MAX_POSITION,
                                 risk.MAX_NOTIONAL, risk.TRADING_HALTED) \
        else draw(st.integers(-3, 3)) * qty
    notional = qty * (price if price is not None else ref)
    exposure = abs(position + signed_quantity(side, qty)) * ref
    day = draw(st.integers(0, 364))
    now_ms = 1_767_225_600_000 + day * 86_400_000 + 12 * 3_600_000  # noon UTC
    symbol = "BTCUSDT"
    cid = "spk-fault"
    tif: TimeInForce | None = None
    lim: dict[str, Any] = dict(
        max_notional=D(20), whitelist=WHITELIST, trade_window="07:00-23:30", timezone="UTC",
        max_open_orders=3, max_orders_per_minute=3, price_band_bps=D(500),
        max_position_notional=D(100))
    rules: dict[str, Any] = dict(
        symbol=symbol, tick_size=tick, step_size=step, min_qty=step, max_qty=D(9000),
        min_notional=D(1), max_notional=None, min_price=None, max_price=None, trading=True)
    ctx: dict[str, Any] = dict(
        trading_state=TradingState.ACTIVE, kill_switch=False, breaker_state=BreakerState.CLOSED,
        gate_open=True, open_orders=draw(st.integers(0, 2)),
        recent_orders=draw(st.integers(0, 2)))
    ref_value: Decimal | None = ref

    if fault == risk.KILL_SWITCH:
        ctx["kill_switch"] = True
    elif fault == risk.CIRCUIT_BREAKER_OPEN:
        ctx["breaker_state"] = draw(st.sampled_from([BreakerState.OPEN,
                                                     BreakerState.FORCED_OPEN]))
    elif fault == risk.TRADING_HALTED:
        ctx["trading_state"] = TradingState.HALTED
    elif fault == risk.REDUCING_ONLY:
        ctx["trading_state"] = TradingState.REDUCING
    elif fault == risk.DRIFT_GATE:
        ctx["gate_open"] = False
    elif fault == risk.INVALID_CLIENT_ORDER_ID:
        cid = draw(st.sampled_from(["", "has space", "x" * 37]))
    elif fault == risk.INVALID_QUANTITY:
        qty = draw(st.sampled_from([D(0), -qty, D("NaN"), D("-Infinity")]))
    elif fault == risk.INVALID_PRICE:
        price = None if typ == OrderType.LIMIT else ref
    elif fault == risk.INVALID_TIME_IN_FORCE:
        typ, price, tif = OrderType.MARKET, None, draw(st.sampled_from(TimeInForce))
    elif fault == risk.INVALID_SYMBOL:
        symbol = draw(st.sampled_from(["btcusdt", "B", "BTC-USDT"]))
    elif fault == risk.SYMBOL_NOT_WHITELISTED:
        symbol = "BNBUSDT"
    elif fault == risk.OUTSIDE_TRADE_WINDOW:
        # just outside 07:00-23:30: 06:59:59.999 or 23:30:00.000
        now_ms = 1_767_225_600_000 + day * 86_400_000 + draw(st.sampled_from(
            [7 * 3_600_000 - 1, 23 * 3_600_000 + 30 * 60_000]))
    elif fault == risk.SYMBOL_NOT_TRADING:
        rules["trading"] = False
    elif fault == risk.PRICE_FILTER:
        assert price is not None
        if draw(st.booleans()):
            rules["min_price"] = price + tick
        else:
            rules["max_price"] = price - tick
    elif fault == risk.TICK_SIZE:
        assert price is not None
        price += tick / 2
    elif fault == risk.MIN_QTY:
        rules["min_qty"] = qty + step
    elif fault == risk.MAX_QTY:
        rules["max_qty"] = qty - step if qty > step else step / 2
    elif fault == risk.STEP_SIZE:
        qty += step / 2
    elif fault == risk.PRICE_BAND:
        reach = (D(500) * ref / 10000 / tick).to_integral_value(rounding="ROUND_FLOOR") + 1
        price = ref + reach * tick * draw(st.sampled_from([1, -1]))
    elif fault == risk.MIN_NOTIONAL:
        rules["min_notional"] = notional + TINY
    elif fault == risk.MAX_NOTIONAL_FILTER:
        rules["max_notional"] = notional - TINY
    elif fault == risk.MAX_NOTIONAL:
        lim["max_notional"] = notional - TINY
    elif fault == risk.MAX_POSITION:
        lim["max_position_notional"] = exposure - TINY
    elif fault == risk.MAX_OPEN_ORDERS:
        ctx["open_orders"] = 3
    elif fault == risk.RATE_LIMIT:
        ctx["recent_orders"] = 3
    elif fault == risk.NO_REFERENCE_PRICE:
        ref_value = draw(st.sampled_from([None, D(0)]))

    ctx.setdefault("reference_prices", {} if ref_value is None and draw(st.booleans())
                   else {symbol: ref_value})
    ctx["rules"] = {} if fault == risk.NO_EXCHANGE_FILTERS else {symbol: SymbolRules(**rules)}
    ctx["positions"] = {} if fault == risk.UNKNOWN_POSITION else {symbol: position}
    i = OrderIntent(client_order_id=cid, symbol=symbol, side=side, type=typ, quantity=qty,
                    price=price, time_in_force=tif)
    return fault, i, RiskContext(**ctx), RiskConfig(**lim), now_ms


@settings(max_examples=300, deadline=None)
@given(case=single_fault())
def test_each_check_at_its_boundary(
    case: tuple[str | None, OrderIntent, RiskContext, RiskConfig, int],
) -> None:
    fault, i, c, lim, now_ms = case
    event(f"fault: {fault}")
    found = violations(i, c, lim, now_ms)
    expected = set() if fault is None else {fault} | COMPANIONS.get(fault, set())
    assert found == expected, "the generator or the oracle is off"
    decision = evaluate(i, c, lim, now_ms, NOW_S)
    assert decision.reason == fault, decision.detail
    assert decision.approved is (fault is None)
