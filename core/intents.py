"""Order intents: what someone wants traded, before the risk guard has looked at it.

An intent comes from the control port, ``ctl``/``canary`` or (later) a strategy. It is a plain
frozen value with ``Decimal`` amounts; it is *not* validated on construction, on purpose: the risk
guard must be able to receive a malformed intent and reject it with a stable reason
(``invalid_quantity``, ``invalid_price`` …) that is counted and audited, rather than an exception
somewhere upstream. Use :func:`intent_problems` to list what is wrong, or :func:`build_intent` to
turn loosely typed input (strings from JSON) into an intent or a :class:`InvalidIntent` carrying
every ``(field, problem)`` pair at once.

Rules (Binance's, as far as Spark sends them):

* ``quantity`` is a finite ``Decimal`` > 0.
* ``LIMIT`` needs a finite ``price`` > 0; ``MARKET`` has no price.
* ``time_in_force`` (``GTC``/``IOC``/``FOK``) only on ``LIMIT``; ``None`` lets the router pick
  its default (GTC).
* ``client_order_id`` matches ``^[a-zA-Z0-9_-]{1,36}$`` (see :mod:`spark.core.client_ids`).
* ``symbol`` is upper-case letters and digits (Binance symbols such as ``BTCUSDT``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, TypeVar

import attrs

from spark.core.client_ids import validate_client_id

__all__ = [
    "InvalidIntent",
    "OrderIntent",
    "OrderType",
    "Problem",
    "Side",
    "TimeInForce",
    "build_intent",
    "intent_problems",
    "is_member",
    "is_symbol",
    "price_problem",
    "quantity_problem",
    "signed_quantity",
]

_E = TypeVar("_E", bound=StrEnum)
_SYMBOL: Final = re.compile(r"[A-Z0-9]{2,20}")

Problem = tuple[str, str]
"""``(field, problem)``: the field name as the control port spells it, and what is wrong."""


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class InvalidIntent(ValueError):
    """Input that cannot become an :class:`OrderIntent`; ``problems`` lists every field."""

    reason = "invalid_intent"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems))
        self.problems = problems


@attrs.frozen
class OrderIntent:
    """One wish to place an order. ``created_ms`` is wall time (epoch ms) when it was made;
    ``source`` says who made it for the audit trail (``"control:trader"``, ``"canary"`` …)."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    source: str = ""
    created_ms: int = 0

    @property
    def signed_quantity(self) -> Decimal:
        """``+quantity`` for BUY, ``-quantity`` for SELL: the change to the position."""
        return signed_quantity(self.side, self.quantity)

    def problems(self) -> list[Problem]:
        return intent_problems(self)


def signed_quantity(side: Side | str, quantity: Decimal) -> Decimal:
    return quantity if side == Side.BUY else -quantity


def is_member(value: object, enum: type[StrEnum]) -> bool:
    """Whether ``value`` is (or equals) a member of ``enum``. Typed ``object`` on purpose: an
    intent is not validated when built, so its fields may hold anything at run time."""
    return any(value == member for member in enum)


def is_symbol(value: object) -> bool:
    """Binance symbol syntax: 2-20 upper-case ASCII letters or digits."""
    return isinstance(value, str) and _SYMBOL.fullmatch(value) is not None


def quantity_problem(quantity: object) -> str | None:
    if not isinstance(quantity, Decimal):
        return "must be a decimal number"
    if not quantity.is_finite():
        return "must be a finite number"
    if quantity <= 0:
        return "must be greater than zero"
    return None


def price_problem(order_type: OrderType | str, price: object) -> str | None:
    if order_type == OrderType.MARKET:
        return None if price is None else "must be omitted for MARKET orders"
    if price is None:
        return "is required for LIMIT orders"
    if not isinstance(price, Decimal):
        return "must be a decimal number"
    if not price.is_finite():
        return "must be a finite number"
    if price <= 0:
        return "must be greater than zero"
    return None


def intent_problems(intent: OrderIntent) -> list[Problem]:
    """Everything wrong with ``intent`` by itself (not against limits or filters); empty = ok."""
    problems: list[Problem] = []
    cid_problem = validate_client_id(intent.client_order_id)
    if cid_problem:
        problems.append(("clientOrderId", cid_problem))
    if not is_symbol(intent.symbol):
        problems.append(("symbol", "must be 2-20 upper-case letters or digits"))
    if not is_member(intent.side, Side):
        problems.append(("side", "must be BUY or SELL"))
    if not is_member(intent.type, OrderType):
        problems.append(("type", "must be MARKET or LIMIT"))
    q = quantity_problem(intent.quantity)
    if q:
        problems.append(("quantity", q))
    p = price_problem(intent.type, intent.price)
    if p:
        problems.append(("price", p))
    if intent.time_in_force is not None:
        if intent.type != OrderType.LIMIT:
            problems.append(("timeInForce", "is only allowed on LIMIT orders"))
        elif not is_member(intent.time_in_force, TimeInForce):
            problems.append(("timeInForce", "must be GTC, IOC or FOK"))
    return problems


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None  # floats are refused: they would smuggle binary rounding into an amount
    try:
        return Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        return None


def build_intent(
    *,
    client_order_id: str,
    symbol: Any,
    side: Any,
    type: Any,
    quantity: Any,
    price: Any = None,
    time_in_force: Any = None,
    source: str = "",
    created_ms: int = 0,
) -> OrderIntent:
    """Parse loosely typed input into an :class:`OrderIntent`, or raise :class:`InvalidIntent`
    with every problem found (not just the first), so a caller can fix them all at once."""
    problems: list[Problem] = []
    side_v = _enum(Side, side, "side", problems)
    type_v = _enum(OrderType, type, "type", problems)
    tif_v = None if time_in_force is None else _enum(TimeInForce, time_in_force, "timeInForce",
                                                    problems)
    qty = _decimal(quantity)
    if qty is None:
        problems.append(("quantity", "must be a decimal number (as a string)"))
    px = None if price is None else _decimal(price)
    if price is not None and px is None:
        problems.append(("price", "must be a decimal number (as a string)"))
    if problems:
        raise InvalidIntent(problems)
    assert side_v is not None and type_v is not None and qty is not None
    intent = OrderIntent(
        client_order_id=client_order_id,
        symbol=symbol if isinstance(symbol, str) else "",
        side=side_v,
        type=type_v,
        quantity=qty,
        price=px,
        time_in_force=tif_v,
        source=source,
        created_ms=created_ms,
    )
    problems = intent_problems(intent)
    if problems:
        raise InvalidIntent(problems)
    return intent


def _enum(cls: type[_E], value: Any, field: str, problems: list[Problem]) -> _E | None:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        problems.append((field, f"must be one of {allowed}"))
        return None
