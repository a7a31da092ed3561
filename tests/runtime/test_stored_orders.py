"""Orders read back from the database at restart (``runtime/trading.stored_order``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from spark.core.orders import OrderState
from spark.runtime.trading import stored_order


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "client_order_id": "spk-row-1", "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
        "quantity": "0.0003", "price": None, "time_in_force": None, "status": "PENDING",
        "venue_order_id": None, "executed_qty": "0", "cumulative_quote_qty": "0",
        "version": 1, "created_ms": 1, "updated_ms": 1, "reason": None,
    }
    return base | changes


def trade(trade_id: int, qty: str, price: str) -> dict[str, Any]:
    return {"trade_id": trade_id, "qty": qty, "quote_qty": str(Decimal(qty) * Decimal(price))}


def test_a_trade_whose_order_update_was_lost_still_counts() -> None:
    """SIGKILL between two writer batches: the trade row is stored, the order row still says
    PENDING with nothing executed.  The restored order must count the trade, or
    reconciliation explains the venue's total with the later trades only and reports a
    conflict that halts trading."""
    order = stored_order(row(), [trade(37, "0.0001", "45000")])
    assert order.status is OrderState.PENDING
    assert order.executed_qty == Decimal("0.0001") == order.fills_qty
    assert order.cum_quote == Decimal("4.5")
    assert order.trade_ids == frozenset({37}) and order.missing_fill_qty == 0


def test_the_row_wins_when_it_knows_more() -> None:
    order = stored_order(row(status="PARTIALLY_FILLED", executed_qty="0.0002",
                             cumulative_quote_qty="9", venue_order_id=7),
                         [trade(37, "0.0001", "45000")])
    assert order.executed_qty == Decimal("0.0002") and order.cum_quote == Decimal("9")
    assert order.fills_qty == Decimal("0.0001") and order.missing_fill_qty == Decimal("0.0001")
