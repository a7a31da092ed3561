"""Request validation, without HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.runtime.control import InvalidInput, OrderRequest
from spark.runtime.control.validation import (
    parse_json_object,
    parse_order_request,
    parse_timestamp,
)


def test_limit_order_is_parsed_exactly() -> None:
    body = parse_json_object(
        b'{"symbol": "btcusdt", "side": "buy", "type": "limit", "quantity": 0.00012,'
        b' "price": "45000.50", "timeInForce": "ioc", "clientOrderId": "abc-1"}'
    )
    assert parse_order_request(body) == OrderRequest(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=Decimal("0.00012"),
        price=Decimal("45000.50"), time_in_force="IOC", client_order_id="abc-1",
    )


def test_market_order_defaults() -> None:
    order = parse_order_request({"symbol": "ETHUSDT", "side": "SELL", "type": "MARKET",
                                 "quantity": 2})
    assert order.quantity == Decimal(2) and order.price is None
    assert order.time_in_force is None and order.client_order_id is None


@given(st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e9"), places=8,
                   allow_nan=False, allow_infinity=False))
def test_decimal_strings_round_trip_exactly(quantity: Decimal) -> None:
    body = parse_json_object(
        b'{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "'
        + str(quantity).encode() + b'"}'
    )
    assert parse_order_request(body).quantity == quantity


@pytest.mark.parametrize("raw", [b"NaN", b'{"quantity": NaN}', b'{"quantity": Infinity}',
                                 b"\xff\xfe", b"[" * 100_000])
def test_bad_json_is_invalid_body(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_object(raw)
    assert info.value.field == "body"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.UTC)),
        ("2024-05-01T12:30:00Z", dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)),
        ("2024-05-01T12:30:00+02:00",
         dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)),
        # An unencoded "+" in a query string arrives as a space.
        ("2024-05-01T12:30:00 02:00", dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)),
    ],
)
def test_timestamps(text: str, expected: dt.datetime) -> None:
    assert parse_timestamp("since", text) == expected
    assert parse_timestamp("since", None) is None
    assert parse_timestamp("since", "") is None
