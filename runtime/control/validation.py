"""Request validation: JSON bodies, path and query parameters → typed values or
:class:`~spark.runtime.control.errors.InvalidInput` naming the field."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from spark.runtime.control.backend import OrderRequest
from spark.runtime.control.errors import InvalidInput

__all__ = [
    "CLIENT_ORDER_ID",
    "parse_client_order_id",
    "parse_json_object",
    "parse_kill_switch",
    "parse_order_request",
    "parse_reconciliation_id",
    "parse_status_filter",
    "parse_timestamp",
]

SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
# Binance's own pattern for newClientOrderId.
CLIENT_ORDER_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
RECONCILIATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
STATUS_FILTER = re.compile(r"[a-z_]{1,32}")
SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
ORDER_FIELDS = ("symbol", "side", "type", "quantity", "price", "timeInForce", "clientOrderId")
MAX_DECIMAL_DIGITS = 40
_PLUS_AS_SPACE = re.compile(r"^(.*T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)$")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; numbers with a fraction become ``Decimal`` (exact), NaN and
    Infinity are refused."""
    try:
        value = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError/UnicodeDecodeError are ValueErrors; the message names a position,
        # never the content.
        raise InvalidInput("body", f"not valid JSON ({_short(error)})") from None
    if not isinstance(value, dict):
        raise InvalidInput("body", "must be a JSON object")
    return value


def _short(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    return type(error).__name__


def _unknown_fields(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in body:
        if key not in known:
            raise InvalidInput(str(key)[:64], f"unknown field (expected {', '.join(known)})")


def _text(body: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidInput(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    return value


def _choice(body: Mapping[str, Any], field: str, choices: tuple[str, ...], *,
            required: bool) -> str | None:
    value = _text(body, field, required=required)
    if value is None:
        return None
    upper = value.upper()
    if upper not in choices:
        raise InvalidInput(field, f"must be one of {', '.join(choices)}")
    return upper


def _positive_decimal(body: Mapping[str, Any], field: str, *, required: bool) -> Decimal | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidInput(field, "is required")
        return None
    if isinstance(value, bool):
        raise InvalidInput(field, "must be a decimal number or a decimal string")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        if len(value) > MAX_DECIMAL_DIGITS + 2:
            raise InvalidInput(field, "is too long")
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInput(field, "must be a decimal number") from None
    else:
        raise InvalidInput(field, "must be a decimal number or a decimal string")
    if not number.is_finite():
        raise InvalidInput(field, "must be finite")
    if number <= 0:
        raise InvalidInput(field, "must be greater than 0")
    if len(number.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        raise InvalidInput(field, "has too many digits")
    return number


def parse_order_request(body: Mapping[str, Any]) -> OrderRequest:
    _unknown_fields(body, ORDER_FIELDS)
    symbol = _text(body, "symbol", required=True)
    assert symbol is not None
    symbol = symbol.upper()
    if not SYMBOL.fullmatch(symbol):
        raise InvalidInput("symbol", "must be 2-20 letters or digits, e.g. BTCUSDT")
    side = _choice(body, "side", SIDES, required=True)
    order_type = _choice(body, "type", ORDER_TYPES, required=True)
    quantity = _positive_decimal(body, "quantity", required=True)
    assert side is not None and order_type is not None and quantity is not None
    price = _positive_decimal(body, "price", required=order_type == "LIMIT")
    if order_type == "MARKET" and price is not None:
        raise InvalidInput("price", "is not allowed for MARKET orders")
    tif = _choice(body, "timeInForce", TIME_IN_FORCE, required=False)
    if order_type == "MARKET" and tif is not None:
        raise InvalidInput("timeInForce", "is not allowed for MARKET orders")
    client_order_id = _text(body, "clientOrderId", required=False)
    if client_order_id is not None:
        client_order_id = parse_client_order_id(client_order_id)
    return OrderRequest(symbol=symbol, side=side, type=order_type, quantity=quantity,
                        price=price, time_in_force=tif, client_order_id=client_order_id)


def parse_kill_switch(body: Mapping[str, Any]) -> bool:
    _unknown_fields(body, ("engaged",))
    if "engaged" not in body:
        raise InvalidInput("engaged", "is required")
    engaged = body["engaged"]
    if not isinstance(engaged, bool):
        raise InvalidInput("engaged", "must be true or false")
    return engaged


def parse_client_order_id(value: str) -> str:
    if not CLIENT_ORDER_ID.fullmatch(value):
        raise InvalidInput("clientOrderId", "must be 1-36 characters of A-Z a-z 0-9 . : / _ -")
    return value


def parse_reconciliation_id(value: str) -> str:
    if not RECONCILIATION_ID.fullmatch(value):
        raise InvalidInput("id", "must be 1-64 characters of A-Z a-z 0-9 . : _ -")
    return value


def parse_status_filter(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not STATUS_FILTER.fullmatch(value):
        raise InvalidInput("status", "must be a status name such as open")
    return value


def parse_timestamp(field: str, value: str | None) -> dt.datetime | None:
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""
    if value is None or value == "":
        return None
    if len(value) > 40:
        raise InvalidInput(field, "is too long")
    text = value.strip()
    # An unencoded "+" in a query string arrives as a space: "…T00:00:00 02:00".
    text = _PLUS_AS_SPACE.sub(r"\1+\2", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 date or date-time, e.g. "
                                  "2024-05-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed
