"""Orders, trades and the id sources behind them (shared by the spot and futures engines)."""

from __future__ import annotations

import random
import string
from decimal import Decimal

import attrs

from spark.venue.numbers import ZERO

SIDES = ("BUY", "SELL")
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
_ALPHABET = string.ascii_letters + string.digits


@attrs.frozen
class NewOrder:
    """An order request after parameter parsing (syntax is checked; filters are not)."""

    symbol: str
    side: str
    type: str
    time_in_force: str | None = None
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    price: Decimal | None = None
    client_order_id: str | None = None
    reduce_only: bool = False


@attrs.define(slots=True, eq=False)
class Order:
    """One order's life on the venue.  Mutable: the engine that owns it updates it in place."""

    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    quote_order_qty: Decimal
    time: int
    update_time: int
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    on_book: bool = False
    locked: Decimal = ZERO
    reduce_only: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"


@attrs.frozen
class Trade:
    """One fill of one of the account's orders (the venue's ground truth)."""

    symbol: str
    id: int
    order_id: int
    client_order_id: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool
    realized_pnl: Decimal = ZERO


class Ids:
    """Monotonic ids: orderId, trade id and execution id (``I``, unique per report)."""

    __slots__ = ("_client", "_exec", "_order", "_trade")

    def __init__(self, seed: int, *, first_order_id: int = 1, first_trade_id: int = 1) -> None:
        self._order = first_order_id
        self._trade = first_trade_id
        self._exec = 1
        self._client = random.Random(f"{seed}:client-order-ids")

    def order_id(self) -> int:
        value = self._order
        self._order += 1
        return value

    def trade_id(self) -> int:
        value = self._trade
        self._trade += 1
        return value

    def exec_id(self) -> int:
        value = self._exec
        self._exec += 1
        return value

    def client_order_id(self) -> str:
        """A 22-character id like Binance generates when the client sends none."""
        return "".join(self._client.choices(_ALPHABET, k=22))
