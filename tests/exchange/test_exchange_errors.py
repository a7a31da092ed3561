"""The error classification table: (status, body) → error class, reason, venue code."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.exchange.errors import (
    AuthError,
    ExchangeError,
    IpBanned,
    MalformedFrame,
    RateLimited,
    TimestampError,
    UnknownExecutionStatus,
    UnknownListenKey,
    VenueRejected,
    classify,
)


def err(code: int, msg: str = "m") -> bytes:
    return orjson.dumps({"code": code, "msg": msg})


TABLE: list[tuple[int, Any, type[ExchangeError], str, int | None]] = [
    (400, err(-1013, "Filter failure: LOT_SIZE"), VenueRejected, "filter_failure", -1013),
    (400, err(-2010, "Account has insufficient balance"), VenueRejected, "order_rejected", -2010),
    (400, err(-1121, "Invalid symbol."), VenueRejected, "invalid_symbol", -1121),
    (400, err(-2011, "Unknown order sent."), VenueRejected, "cancel_rejected", -2011),
    (400, err(-2013, "Order does not exist."), VenueRejected, "no_such_order", -2013),
    (400, err(-1102, "Mandatory parameter"), VenueRejected, "bad_parameter", -1102),
    (400, err(-1100, "Illegal characters"), VenueRejected, "bad_parameter", -1100),
    (400, err(-1125, "This listenKey does not exist."), UnknownListenKey, "unknown_listen_key",
     -1125),
    (400, err(-9999, "something new"), VenueRejected, "venue_rejected", -9999),
    (400, err(-1021, "Timestamp for this request was 1000ms ahead"), TimestampError, "timestamp",
     -1021),
    (401, err(-2015, "Invalid API-key, IP, or permissions for action."), AuthError, "auth", -2015),
    (400, err(-1022, "Signature for this request is not valid."), AuthError, "auth", -1022),
    (401, b"", AuthError, "auth", None),
    (429, err(-1003, "Too many requests"), RateLimited, "rate_limited", -1003),
    (429, err(-1015, "Too many new orders"), RateLimited, "rate_limited", -1015),
    (418, err(-1003, "Way too many requests; IP banned"), IpBanned, "ip_banned", -1003),
    (500, b"<html>oops</html>", UnknownExecutionStatus, "unknown_execution_status", None),
    (502, b"", UnknownExecutionStatus, "unknown_execution_status", None),
    (503, err(-1008, "Server is currently overloaded"), UnknownExecutionStatus,
     "unknown_execution_status", -1008),
    (503, b"Service Unavailable.", UnknownExecutionStatus, "unknown_execution_status", None),
    (408, err(-1007, "Timeout waiting for response from backend server."),
     UnknownExecutionStatus, "unknown_execution_status", -1007),
    (400, b"not json", VenueRejected, "venue_rejected", None),
    (404, b"", VenueRejected, "venue_rejected", None),
]


@pytest.mark.parametrize(("status", "body", "cls", "reason", "code"), TABLE)
def test_classification_table(
    status: int, body: Any, cls: type[ExchangeError], reason: str, code: int | None
) -> None:
    error = classify(status, body, retry_after_s=7)
    assert type(error) is cls
    assert error.reason == reason
    assert error.code == code
    if code is not None:
        assert error.msg == orjson.loads(body)["msg"]


def test_success_is_none() -> None:
    assert classify(200, b'{"orderId": 1}') is None
    assert classify(200, {"code": 200, "msg": "success"}) is None  # futures style
    assert classify(204, b"") is None


def test_retry_after_is_kept() -> None:
    limited = classify(429, err(-1003), retry_after_s=12)
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 12 and not limited.local
    banned = classify(418, err(-1003), retry_after_s=120)
    assert isinstance(banned, IpBanned) and banned.retry_after_s == 120


def test_unknown_status_wins_over_a_rejection_body() -> None:
    # Binance: a 5xx means the outcome is unknown, whatever the body says.
    assert isinstance(classify(500, err(-2010)), UnknownExecutionStatus)


def test_error_texts_carry_no_request_data() -> None:
    error = classify(400, err(-1022, "Signature for this request is not valid."))
    assert error is not None
    assert "signature=" not in str(error) and "apiKey" not in str(error)


def test_malformed_frame_text_is_truncated_and_redacted() -> None:
    raw = '{"e":"listenKeyExpired","listenKey":"SECRETKEY123",' + '"x":"' + "y" * 1000 + '"}'
    exc = MalformedFrame("boom", raw)
    assert "SECRETKEY123" not in str(exc)
    assert len(exc.raw) <= 201
    url_exc = MalformedFrame("boom", "wss://h/private/ws?listenKey=abcdef&events=X")
    assert "abcdef" not in str(url_exc)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=200))
def test_classify_is_total(status: int, body: bytes) -> None:
    result = classify(status, body)
    if 200 <= status < 300:
        assert result is None
    else:
        assert isinstance(result, ExchangeError) and result.reason
