"""Builders shared by the core order-path tests: execution events, intents, orders, contexts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from spark.core.breaker import BreakerState
from spark.core.intents import OrderIntent, OrderType, Side, TimeInForce
from spark.core.orders import Order, OrderState, new_order
from spark.core.risk import RiskContext, SymbolRules
from spark.core.trading_state import TradingState
from spark.exchange.events import ExecutionEvent
from spark.exchange.models import OrderStatus

T0_MS = 1_790_000_000_000  # 2026-09-21, a fixed wall time
D = Decimal

BTC_RULES = SymbolRules(
    symbol="BTCUSDT",
    tick_size=D("0.01"),
    step_size=D("0.00001"),
    min_qty=D("0.00001"),
    max_qty=D("9000"),
    min_notional=D("5"),
    max_notional=D("9000000"),
)


def intent(
    qty: str = "0.0002",
    *,
    side: Side = Side.BUY,
    type: OrderType = OrderType.MARKET,
    price: str | None = None,
    symbol: str = "BTCUSDT",
    cid: str = "spk-test1",
    tif: TimeInForce | None = None,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type=type,
        quantity=D(qty),
        price=None if price is None else D(price),
        time_in_force=tif,
        source="test",
        created_ms=T0_MS,
    )


def context(**overrides: Any) -> RiskContext:
    """A context in which a small BTCUSDT order is fine; override what a test is about."""
    values: dict[str, Any] = {
        "trading_state": TradingState.ACTIVE,
        "kill_switch": False,
        "breaker_state": BreakerState.CLOSED,
        "gate_open": True,
        "reference_prices": {"BTCUSDT": D("45000")},
        "rules": {"BTCUSDT": BTC_RULES},
        "positions": {"BTCUSDT": D(0)},
        "open_orders": 0,
        "recent_orders": 0,
    }
    values.update(overrides)
    return RiskContext(**values)


def order(
    qty: str = "1",
    *,
    status: OrderState = OrderState.PENDING,
    cid: str = "spk-o1",
    side: Side = Side.BUY,
    price: str | None = "100",
) -> Order:
    typ = OrderType.LIMIT if price is not None else OrderType.MARKET
    return new_order(
        intent(qty, side=side, type=typ, price=price, cid=cid, symbol="BTCUSDT"),
        status,
        T0_MS,
    )


def event(
    status: str,
    *,
    cid: str = "spk-o1",
    exec_id: str = "1",
    order_id: int = 77,
    qty: str = "1",
    price: str = "100",
    last_qty: str = "0",
    last_price: str = "0",
    cum_qty: str = "0",
    cum_quote: str | None = "0",
    trade_id: int | None = None,
    x: str | None = None,
    orig_cid: str | None = None,
    side: str = "BUY",
    time_ms: int = T0_MS,
    symbol: str = "BTCUSDT",
) -> ExecutionEvent:
    """A spot executionReport as the decoder would produce it."""
    exec_type = x or ("TRADE" if trade_id is not None else status)
    return ExecutionEvent(
        product="spot",
        symbol=symbol,
        client_order_id=cid,
        order_id=order_id,
        side=side,
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=D(qty),
        price=D(price),
        stop_price=D(0),
        execution_type=exec_type,
        order_status=status,
        reject_reason="NONE",
        last_qty=D(last_qty),
        cum_qty=D(cum_qty),
        last_price=D(last_price),
        commission=D(0),
        commission_asset=None,
        trade_id=trade_id,
        execution_id=exec_id,
        is_maker=False,
        event_time=time_ms,
        transaction_time=time_ms,
        orig_client_order_id=orig_cid,
        cum_quote_qty=None if cum_quote is None else D(cum_quote),
        last_quote_qty=D(last_qty) * D(last_price),
    )


def fill_event(
    n: int,
    last_qty: str,
    cum_qty: str,
    *,
    status: str = "PARTIALLY_FILLED",
    price: str = "100",
    cid: str = "spk-o1",
    qty: str = "1",
    cum_quote: str | None = None,
) -> ExecutionEvent:
    """The n-th trade of an order at ``price``; execution id ``e<n>``, trade id ``1000+n``.
    ``cum_quote`` defaults to ``cum_qty x price`` (right when every fill had this price)."""
    if cum_quote is None:
        cum_quote = str(D(cum_qty) * D(price))
    return event(status, cid=cid, exec_id=f"e{n}", qty=qty, last_qty=last_qty,
                 last_price=price, cum_qty=cum_qty, cum_quote=cum_quote, trade_id=1000 + n)


def venue_view(
    status: str,
    executed: str = "0",
    *,
    cid: str = "spk-o1",
    order_id: int = 77,
    price: str = "100",
) -> OrderStatus:
    return OrderStatus(
        symbol="BTCUSDT",
        order_id=order_id,
        client_order_id=cid,
        price=D(price),
        orig_qty=D(1),
        executed_qty=D(executed),
        cum_quote_qty=D(executed) * D(price),
        status=status,
        time_in_force="GTC",
        order_type="LIMIT",
        side="BUY",
    )
