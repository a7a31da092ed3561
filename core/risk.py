"""The risk guard as a pure function: :func:`evaluate` an intent against a snapshot and limits.

DESIGN invariant 1: no order reaches the venue unless the risk guard approved it under the
current kill switch, breaker and gate state. The guard actor builds a :class:`RiskContext` (a
frozen snapshot of everything it needs), calls :func:`evaluate`, and forwards the intent or
records the rejection. Nothing here does I/O or reads a clock: wall time (``now_ms``, epoch ms,
for the trade window) and monotonic time (``now_s``, for the rate limit) are passed in.

Principles:

* **Fail closed.** A check that cannot be evaluated — no reference price, no exchange filters,
  unknown position, arithmetic that would have to round — rejects the order with a reason. It is
  never waved through.
* **A trader can always flatten.** An order that *reduces risk* (it shrinks ``|position|`` and
  does not flip its sign) skips ``max_notional`` and ``max_position`` and is allowed in
  ``REDUCING``. It still has to be a valid order the venue would accept (filters, price band,
  whitelist, trade window, open-order and rate limits). ``HALTED`` allows no new order at all;
  cancels are never the guard's business.
* **Decimal only, exactly.** All arithmetic runs in a context with 100 digits that *traps*
  rounding, so a comparison at a limit is exact or the check fails closed.

Reason codes (stable: ``spark_order_rejections_total{reason}`` labels and audit rows), in the
order the guard checks them — the first failing check names the rejection:

=============================  ====================================================================
``kill_switch``                the kill switch is engaged (every new order, reducing or not)
``circuit_breaker_open``       the breaker is OPEN (not dry-run) or FORCED_OPEN
``trading_halted``             trading state HALTED for another reason (e.g. reconciliation)
``invalid_client_order_id``    client id outside ``^[a-zA-Z0-9_-]{1,36}$``
``invalid_side``               side not BUY or SELL
``invalid_order_type``         type not MARKET or LIMIT
``invalid_quantity``           quantity not a finite Decimal > 0
``invalid_price``              LIMIT without a finite price > 0, or MARKET with a price
``invalid_time_in_force``      time in force on a MARKET order
``invalid_symbol``             symbol not 2-20 upper-case ASCII letters or digits
``symbol_not_whitelisted``     symbol not in ``[risk] whitelist``
``outside_trade_window``       now is outside ``[risk] trade_window`` in ``[risk] timezone``
``unknown_position``           the position in the symbol is not known
``drift_gate``                 the drift gate is closed and the order does not reduce risk
``reducing_only``              trading state REDUCING and the order does not reduce risk
``no_exchange_filters``        no :class:`SymbolRules` for the symbol
``symbol_not_trading``         the venue does not list the symbol as TRADING
``price_filter``               limit price below ``min_price`` or above ``max_price``
``tick_size``                  limit price not on the tick grid
``min_qty`` / ``max_qty``      quantity outside the LOT_SIZE bounds
``step_size``                  quantity not on the step grid
``no_reference_price``         no reference price for the symbol
``price_band``                 limit price more than ``price_band_bps`` from the reference price
``min_notional``               notional below the venue's NOTIONAL/MIN_NOTIONAL minimum
``max_notional_filter``        notional above the venue's NOTIONAL maximum
``max_notional``               notional above ``[risk] max_notional`` (not for reducing orders)
``max_position``               ``|position after| x reference > max_position_notional``
                               (not for reducing orders)
``max_open_orders``            ``open_orders >= [risk] max_open_orders``
``rate_limit``                 ``max_orders_per_minute`` orders already in the last 60 s
=============================  ====================================================================

Notional = quantity x (limit price, or the reference price for MARKET orders). The exchange
filters follow Binance: ``(price - min_price) % tick_size == 0``, ``(qty - min_qty) % step_size
== 0``, bounds inclusive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from decimal import localcontext as _localcontext
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo

import attrs

from spark.config.schema import RiskConfig
from spark.core.breaker import BreakerState, blocks_orders
from spark.core.client_ids import validate_client_id
from spark.core.intents import (
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
    is_member,
    is_symbol,
    price_problem,
    quantity_problem,
)
from spark.core.trading_state import TradingState
from spark.exchange.models import SymbolFilters

__all__ = [
    "CIRCUIT_BREAKER_OPEN",
    "DRIFT_GATE",
    "INVALID_CLIENT_ORDER_ID",
    "INVALID_ORDER_TYPE",
    "INVALID_PRICE",
    "INVALID_QUANTITY",
    "INVALID_SIDE",
    "INVALID_SYMBOL",
    "INVALID_TIME_IN_FORCE",
    "KILL_SWITCH",
    "MAX_NOTIONAL",
    "MAX_NOTIONAL_FILTER",
    "MAX_OPEN_ORDERS",
    "MAX_POSITION",
    "MAX_QTY",
    "MIN_NOTIONAL",
    "MIN_QTY",
    "NOTIONAL_REASONS",
    "NO_EXCHANGE_FILTERS",
    "NO_REFERENCE_PRICE",
    "OUTSIDE_TRADE_WINDOW",
    "POSITION_REASONS",
    "PRICE_BAND",
    "PRICE_FILTER",
    "RATE_LIMIT",
    "RATE_WINDOW_S",
    "REASONS",
    "REDUCING_ONLY",
    "STEP_SIZE",
    "SYMBOL_NOT_TRADING",
    "SYMBOL_NOT_WHITELISTED",
    "TICK_SIZE",
    "TRADING_HALTED",
    "UNKNOWN_POSITION",
    "IncompleteFilters",
    "RiskContext",
    "RiskDecision",
    "RollingCounter",
    "SymbolRules",
    "evaluate",
    "reduces_risk",
]

KILL_SWITCH: Final = "kill_switch"
CIRCUIT_BREAKER_OPEN: Final = "circuit_breaker_open"
TRADING_HALTED: Final = "trading_halted"
INVALID_CLIENT_ORDER_ID: Final = "invalid_client_order_id"
INVALID_QUANTITY: Final = "invalid_quantity"
INVALID_PRICE: Final = "invalid_price"
INVALID_TIME_IN_FORCE: Final = "invalid_time_in_force"
INVALID_SIDE: Final = "invalid_side"
INVALID_ORDER_TYPE: Final = "invalid_order_type"
INVALID_SYMBOL: Final = "invalid_symbol"
SYMBOL_NOT_WHITELISTED: Final = "symbol_not_whitelisted"
OUTSIDE_TRADE_WINDOW: Final = "outside_trade_window"
UNKNOWN_POSITION: Final = "unknown_position"
DRIFT_GATE: Final = "drift_gate"
REDUCING_ONLY: Final = "reducing_only"
NO_EXCHANGE_FILTERS: Final = "no_exchange_filters"
SYMBOL_NOT_TRADING: Final = "symbol_not_trading"
PRICE_FILTER: Final = "price_filter"
TICK_SIZE: Final = "tick_size"
MIN_QTY: Final = "min_qty"
MAX_QTY: Final = "max_qty"
STEP_SIZE: Final = "step_size"
NO_REFERENCE_PRICE: Final = "no_reference_price"
PRICE_BAND: Final = "price_band"
MIN_NOTIONAL: Final = "min_notional"
MAX_NOTIONAL_FILTER: Final = "max_notional_filter"
MAX_NOTIONAL: Final = "max_notional"
MAX_POSITION: Final = "max_position"
MAX_OPEN_ORDERS: Final = "max_open_orders"
RATE_LIMIT: Final = "rate_limit"

REASONS: Final = frozenset({
    KILL_SWITCH, CIRCUIT_BREAKER_OPEN, TRADING_HALTED, INVALID_CLIENT_ORDER_ID,
    INVALID_QUANTITY, INVALID_PRICE, INVALID_TIME_IN_FORCE, INVALID_SIDE, INVALID_ORDER_TYPE,
    INVALID_SYMBOL,
    SYMBOL_NOT_WHITELISTED, OUTSIDE_TRADE_WINDOW, UNKNOWN_POSITION, DRIFT_GATE, REDUCING_ONLY,
    NO_EXCHANGE_FILTERS, SYMBOL_NOT_TRADING, PRICE_FILTER, TICK_SIZE, MIN_QTY, MAX_QTY,
    STEP_SIZE, NO_REFERENCE_PRICE, PRICE_BAND, MIN_NOTIONAL, MAX_NOTIONAL_FILTER, MAX_NOTIONAL,
    MAX_POSITION, MAX_OPEN_ORDERS, RATE_LIMIT,
})
"""Every reason :func:`evaluate` can give."""

NOTIONAL_REASONS: Final = frozenset({MAX_NOTIONAL})
POSITION_REASONS: Final = frozenset({MAX_POSITION})
"""The limits a risk-reducing order is exempt from."""

RATE_WINDOW_S: Final = 60.0

_BPS: Final = Decimal(10000)
_ZERO: Final = Decimal(0)
# Exact arithmetic: anything that would round, overflow or is undefined raises, and the check
# in progress fails closed.
_EXACT: Final = Context(
    prec=100,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)


class IncompleteFilters(ValueError):
    """The venue's filters for a symbol lack something the guard must check."""

    reason = NO_EXCHANGE_FILTERS

    def __init__(self, symbol: str, missing: list[str]) -> None:
        super().__init__(f"{symbol}: exchange filters lack {', '.join(missing)}")
        self.symbol = symbol
        self.missing = missing


def _positive(_: Any, attribute: attrs.Attribute[Any], value: Decimal) -> None:
    if not (isinstance(value, Decimal) and value.is_finite() and value > 0):
        raise ValueError(f"{attribute.name} must be a finite Decimal > 0, got {value!r}")


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: Decimal) -> None:
    if not (isinstance(value, Decimal) and value.is_finite() and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite Decimal >= 0, got {value!r}")


def _optional_positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen
class SymbolRules:
    """The exchange filters the guard checks for one symbol (Binance PRICE_FILTER, LOT_SIZE,
    NOTIONAL / MIN_NOTIONAL). ``None`` bounds are not applied; grids must be published."""

    symbol: str
    tick_size: Decimal = attrs.field(validator=_positive)
    step_size: Decimal = attrs.field(validator=_positive)
    min_qty: Decimal = attrs.field(validator=_non_negative)
    max_qty: Decimal = attrs.field(validator=_positive)
    min_notional: Decimal = attrs.field(default=_ZERO, validator=_non_negative)
    max_notional: Decimal | None = attrs.field(default=None, validator=_optional_positive)
    min_price: Decimal | None = attrs.field(default=None, validator=_optional_positive)
    max_price: Decimal | None = attrs.field(default=None, validator=_optional_positive)
    trading: bool = True

    @classmethod
    def from_exchange(cls, filters: SymbolFilters) -> SymbolRules:
        """Convert exchangeInfo filters; raises :class:`IncompleteFilters` when the tick or step
        grid or the quantity bounds are missing (Binance publishes ``0`` to disable a filter,
        which for these means the guard could not check them: fail closed). A zero
        min/max price or max notional means "not applied"."""
        missing = [
            name
            for name in ("tick_size", "step_size", "min_qty", "max_qty")
            if getattr(filters, name) is None
            or (name != "min_qty" and getattr(filters, name) <= 0)
        ]
        if missing:
            raise IncompleteFilters(filters.symbol, missing)
        assert filters.tick_size is not None and filters.step_size is not None
        assert filters.min_qty is not None and filters.max_qty is not None

        def bound(value: Decimal | None) -> Decimal | None:
            return value if value is not None and value > 0 else None

        return cls(
            symbol=filters.symbol,
            tick_size=filters.tick_size,
            step_size=filters.step_size,
            min_qty=filters.min_qty,
            max_qty=filters.max_qty,
            min_notional=filters.min_notional or _ZERO,
            max_notional=bound(filters.max_notional),
            min_price=bound(filters.min_price),
            max_price=bound(filters.max_price),
            trading=filters.status == "TRADING",
        )


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class RiskContext:
    """Everything :func:`evaluate` looks at besides the intent and the limits, frozen.

    Missing map entries mean unknown: a symbol absent from ``positions`` has an unknown position
    (rejected), absent from ``rules`` has no filters (rejected), absent from
    ``reference_prices`` has no price (rejected). ``recent_orders`` is how many orders were
    approved within the last :data:`RATE_WINDOW_S` (see :class:`RollingCounter`, which keeps
    that count; a count, not the times, so a decision costs the same however busy the minute).
    """

    trading_state: TradingState
    kill_switch: bool
    breaker_state: BreakerState
    gate_open: bool
    reference_prices: Mapping[str, Decimal | None] = attrs.field(factory=dict,
                                                                 converter=_frozen_map)
    rules: Mapping[str, SymbolRules | None] = attrs.field(factory=dict, converter=_frozen_map)
    positions: Mapping[str, Decimal | None] = attrs.field(factory=dict, converter=_frozen_map)
    open_orders: int = 0
    recent_orders: int = 0
    breaker_dry_run: bool = False


@attrs.frozen
class RiskDecision:
    """The guard's answer. ``reason`` is one of :data:`REASONS` when rejected, ``None`` when
    approved; ``detail`` is one human line for logs and the audit trail; ``reduces_risk`` says
    whether the order was judged risk-reducing (``None`` when it was not evaluated)."""

    approved: bool
    reason: str | None
    detail: str
    reduces_risk: bool | None = None

    @classmethod
    def approve(cls, detail: str, reduces: bool | None) -> RiskDecision:
        return cls(True, None, detail, reduces)

    @classmethod
    def reject(cls, reason: str, detail: str, reduces: bool | None = None) -> RiskDecision:
        return cls(False, reason, detail, reduces)


class RollingCounter:
    """Event times in a rolling window (monotonic seconds), for the per-minute order limit.

    An event at ``t`` counts at ``now`` while ``now - t < window_s``; events stamped in the
    future count too (fail closed). The guard's owner :meth:`add`\\ s a time for every approved
    intent and hands :meth:`count` to the next :class:`RiskContext`.
    """

    __slots__ = ("_times", "window_s")

    def __init__(self, window_s: float = RATE_WINDOW_S, max_kept: int | None = None) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_kept)

    def add(self, now_s: float) -> None:
        self._prune(now_s)
        self._times.append(now_s)

    def count(self, now_s: float) -> int:
        self._prune(now_s)
        return len(self._times)

    def _prune(self, now_s: float) -> None:
        times = self._times
        while times and now_s - times[0] >= self.window_s:
            times.popleft()


def reduces_risk(position: Decimal, signed_quantity: Decimal) -> bool:
    """Whether adding ``signed_quantity`` to ``position`` shrinks ``|position|`` without
    flipping its sign (going exactly flat counts as reducing)."""
    if position == 0 or signed_quantity == 0:
        return False
    if (position > 0) == (signed_quantity > 0):
        return False
    return abs(signed_quantity) <= abs(position)


def _on_grid(value: Decimal, origin: Decimal, step: Decimal) -> bool:
    return (value - origin) % step == 0


def evaluate(
    intent: OrderIntent,
    ctx: RiskContext,
    limits: RiskConfig,
    now_ms: int,
    now_s: float,
) -> RiskDecision:
    """Approve or reject ``intent``; see the module docstring for the checks and their order."""
    with _localcontext(_EXACT):
        return _evaluate(intent, ctx, limits, now_ms, now_s)


def _evaluate(
    intent: OrderIntent,
    ctx: RiskContext,
    limits: RiskConfig,
    now_ms: int,
    now_s: float,
) -> RiskDecision:
    reject = RiskDecision.reject
    symbol = intent.symbol

    # -- the state of the runtime ------------------------------------------------------------
    if ctx.kill_switch:
        return reject(KILL_SWITCH, "kill switch engaged")
    if blocks_orders(ctx.breaker_state, ctx.breaker_dry_run):
        return reject(CIRCUIT_BREAKER_OPEN, f"circuit breaker {ctx.breaker_state}")
    if ctx.trading_state == TradingState.HALTED:
        return reject(TRADING_HALTED, "trading state HALTED")

    current = INVALID_QUANTITY  # the check being evaluated, named if arithmetic fails
    reduces: bool | None = None
    try:
        # -- the intent by itself ------------------------------------------------------------
        problem = validate_client_id(intent.client_order_id)
        if problem:
            return reject(INVALID_CLIENT_ORDER_ID, f"clientOrderId {problem}")
        if not is_member(intent.side, Side):
            return reject(INVALID_SIDE, f"side {intent.side!r} is not BUY or SELL")
        if not is_member(intent.type, OrderType):
            return reject(INVALID_ORDER_TYPE, f"type {intent.type!r} is not MARKET or LIMIT")
        problem = quantity_problem(intent.quantity)
        if problem:
            return reject(INVALID_QUANTITY, f"quantity {problem}")
        problem = price_problem(intent.type, intent.price)
        if problem:
            return reject(INVALID_PRICE, f"price {problem}")
        if intent.time_in_force is not None and (
            intent.type != OrderType.LIMIT
            or not is_member(intent.time_in_force, TimeInForce)
        ):
            return reject(INVALID_TIME_IN_FORCE, "timeInForce is only for LIMIT orders")
        if not is_symbol(symbol):
            return reject(INVALID_SYMBOL, f"symbol {symbol!r} is not a Binance symbol")

        # -- where and when ------------------------------------------------------------------
        if symbol not in limits.whitelist:
            return reject(SYMBOL_NOT_WHITELISTED, f"{symbol} is not in the whitelist")
        current = OUTSIDE_TRADE_WINDOW
        if not _in_window(limits, now_ms):
            return reject(OUTSIDE_TRADE_WINDOW,
                          f"outside {limits.trade_window} ({limits.timezone})")

        # -- position: does this order reduce risk? ------------------------------------------
        current = UNKNOWN_POSITION
        position = ctx.positions.get(symbol)
        if position is None or not position.is_finite():
            return reject(UNKNOWN_POSITION, f"position in {symbol} is not known")
        signed = intent.signed_quantity
        reduces = reduces_risk(position, signed)
        if not ctx.gate_open and not reduces:
            return reject(DRIFT_GATE, "drift gate closed; only risk-reducing orders", reduces)
        if ctx.trading_state != TradingState.ACTIVE and not reduces:
            return reject(REDUCING_ONLY,
                          f"trading state {ctx.trading_state}; only risk-reducing orders",
                          reduces)

        # -- exchange filters ----------------------------------------------------------------
        rules = ctx.rules.get(symbol)
        if rules is None:
            return reject(NO_EXCHANGE_FILTERS, f"no exchange filters for {symbol}", reduces)
        if not rules.trading:
            return reject(SYMBOL_NOT_TRADING, f"{symbol} is not trading at the venue", reduces)
        price = intent.price
        if price is not None:
            current = PRICE_FILTER
            if rules.min_price is not None and price < rules.min_price:
                return reject(PRICE_FILTER, f"price {price} < minPrice {rules.min_price}",
                              reduces)
            if rules.max_price is not None and price > rules.max_price:
                return reject(PRICE_FILTER, f"price {price} > maxPrice {rules.max_price}",
                              reduces)
            current = TICK_SIZE
            if not _on_grid(price, rules.min_price or _ZERO, rules.tick_size):
                return reject(TICK_SIZE, f"price {price} not a multiple of {rules.tick_size}",
                              reduces)
        qty = intent.quantity
        current = MIN_QTY
        if qty < rules.min_qty:
            return reject(MIN_QTY, f"quantity {qty} < minQty {rules.min_qty}", reduces)
        current = MAX_QTY
        if qty > rules.max_qty:
            return reject(MAX_QTY, f"quantity {qty} > maxQty {rules.max_qty}", reduces)
        current = STEP_SIZE
        if not _on_grid(qty, rules.min_qty, rules.step_size):
            return reject(STEP_SIZE, f"quantity {qty} not on the {rules.step_size} grid",
                          reduces)

        # -- prices and notionals ------------------------------------------------------------
        current = NO_REFERENCE_PRICE
        ref = ctx.reference_prices.get(symbol)
        if ref is None or not ref.is_finite() or ref <= 0:
            return reject(NO_REFERENCE_PRICE, f"no reference price for {symbol}", reduces)
        if price is not None:
            current = PRICE_BAND
            # |price - ref| / ref * 10000 <= band, multiplied out (no division, no rounding)
            if abs(price - ref) * _BPS > limits.price_band_bps * ref:
                return reject(PRICE_BAND,
                              f"price {price} more than {limits.price_band_bps} bps from {ref}",
                              reduces)
        current = MIN_NOTIONAL
        notional = qty * (price if price is not None else ref)
        if notional < rules.min_notional:
            return reject(MIN_NOTIONAL, f"notional {notional} < minNotional {rules.min_notional}",
                          reduces)
        current = MAX_NOTIONAL_FILTER
        if rules.max_notional is not None and notional > rules.max_notional:
            return reject(MAX_NOTIONAL_FILTER,
                          f"notional {notional} > venue maxNotional {rules.max_notional}",
                          reduces)
        if not reduces:
            current = MAX_NOTIONAL
            if notional > limits.max_notional:
                return reject(MAX_NOTIONAL,
                              f"notional {notional} > max_notional {limits.max_notional}",
                              reduces)
            current = MAX_POSITION
            exposure = abs(position + signed) * ref
            if exposure > limits.max_position_notional:
                return reject(MAX_POSITION,
                              f"position after order worth {exposure} > "
                              f"{limits.max_position_notional}",
                              reduces)

        # -- pace ----------------------------------------------------------------------------
        current = MAX_OPEN_ORDERS
        if ctx.open_orders >= limits.max_open_orders:
            return reject(MAX_OPEN_ORDERS,
                          f"{ctx.open_orders} open orders (max {limits.max_open_orders})",
                          reduces)
        current = RATE_LIMIT
        recent = ctx.recent_orders
        if recent >= limits.max_orders_per_minute:
            return reject(RATE_LIMIT,
                          f"{recent} orders in the last minute "
                          f"(max {limits.max_orders_per_minute})",
                          reduces)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # Fail closed: a check that cannot be computed (rounding would be needed, an unknown
        # timezone, a malformed value) rejects under the name of that check.
        return reject(current, f"{current} cannot be evaluated ({type(exc).__name__})", reduces)

    return RiskDecision.approve(
        f"{intent.side} {qty} {symbol} notional {notional}"
        + (" (reduces risk)" if reduces else ""),
        reduces,
    )


def _in_window(limits: RiskConfig, now_ms: int) -> bool:
    window = limits.window
    if window.always:
        return True
    return window.contains(now_ms, ZoneInfo(limits.timezone))  # ZoneInfo caches instances


