"""Everything the venue refuses, as named exceptions carrying Binance's own code and message.

Why classes and not a table of tuples: the engine raises the refusal where it is decided and the
REST / WebSocket layers render it in one place (``{"code": -NNNN, "msg": "..."}`` with the HTTP
status Binance uses), so a test can assert on the class, the code or the exact text.  Every class
also has a stable ``reason`` (snake case) for logs and metrics, as CONVENTIONS.md asks.

Messages are Binance's (errors.md); none of them ever contains a secret.
"""

from __future__ import annotations

from typing import ClassVar


class VenueError(Exception):
    """A request the venue refuses: Binance ``code``, ``msg`` and HTTP ``status``."""

    code: ClassVar[int] = -1000
    status: ClassVar[int] = 400
    reason: ClassVar[str] = "unknown"
    default_msg: ClassVar[str] = "An unknown error occurred while processing the request."

    def __init__(self, msg: str | None = None) -> None:
        self.msg = msg if msg is not None else self.default_msg
        super().__init__(f"{self.code} {self.msg}")

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


class InternalError(VenueError):
    """Injected 5xx before acting: nothing happened, and the client cannot know that."""

    code = -1001
    status = 500
    reason = "internal_error"
    default_msg = "Internal error; unable to process your request. Please try again."


class Unauthorized(VenueError):
    code = -1002
    status = 401
    reason = "unauthorized"
    default_msg = "You are not authorized to execute this request."


class RetryableLimit(VenueError):
    """A limit refusal that tells the client when to come back (``Retry-After``)."""

    def __init__(self, msg: str, retry_after_ms: int) -> None:
        super().__init__(msg)
        self.retry_after_ms = max(0, retry_after_ms)

    @property
    def retry_after_s(self) -> int:
        """Whole seconds, rounded up, never 0 (a client must actually wait)."""
        return max(1, -(-self.retry_after_ms // 1000))


class TooManyRequests(RetryableLimit):
    code = -1003
    status = 429
    reason = "rate_limited"


class IpBanned(RetryableLimit):
    code = -1003
    status = 418
    reason = "ip_banned"


class TooManyOrders(RetryableLimit):
    code = -1015
    status = 429
    reason = "order_rate_limited"


class UnknownExecution(VenueError):
    """Injected 503 *after* acting: the order exists, the client is told the status is unknown."""

    code = -1007
    status = 503
    reason = "unknown_execution"
    default_msg = (
        "Timeout waiting for response from backend server. "
        "Send status unknown; execution status unknown."
    )


class FilterFailure(VenueError):
    code = -1013
    reason = "filter_failure"

    def __init__(self, filter_type: str) -> None:
        super().__init__(f"Filter failure: {filter_type}")
        self.filter_type = filter_type


class UnsupportedOperation(VenueError):
    code = -1020
    reason = "unsupported_operation"
    default_msg = "This operation is not supported."


class InvalidTimestamp(VenueError):
    code = -1021
    reason = "invalid_timestamp"
    default_msg = "Timestamp for this request is outside of the recvWindow."
    AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."


class InvalidSignature(VenueError):
    code = -1022
    reason = "invalid_signature"
    default_msg = "Signature for this request is not valid."


class IllegalChars(VenueError):
    code = -1100
    reason = "illegal_chars"
    default_msg = "Illegal characters found in a parameter."

    @classmethod
    def in_param(cls, name: str, legal: str) -> IllegalChars:
        return cls(f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


class TooManyParameters(VenueError):
    code = -1101
    reason = "too_many_parameters"
    default_msg = "Duplicate values for a parameter detected."


class MandatoryParamMissing(VenueError):
    code = -1102
    reason = "mandatory_param"

    @classmethod
    def named(cls, name: str) -> MandatoryParamMissing:
        return cls(f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")

    @classmethod
    def either(cls, first: str, second: str) -> MandatoryParamMissing:
        return cls(f"Param '{first}' or '{second}' must be sent, but both were empty/null!")

    @classmethod
    def too_big(cls, name: str, limit: int) -> MandatoryParamMissing:
        return cls(f"'{name}' contains unexpected value. Cannot be greater than '{limit}'.")


class UnreadParameters(VenueError):
    code = -1104
    reason = "unread_parameters"

    @classmethod
    def counts(cls, read: int, sent: int) -> UnreadParameters:
        return cls(
            f"Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'."
        )


class ParamNotRequired(VenueError):
    code = -1106
    reason = "param_not_required"

    @classmethod
    def named(cls, name: str) -> ParamNotRequired:
        return cls(f"Parameter '{name}' sent when not required.")


class BadPrecision(VenueError):
    code = -1111
    reason = "bad_precision"

    @classmethod
    def named(cls, name: str) -> BadPrecision:
        return cls(f"Parameter '{name}' has too much precision.")


class InvalidTimeInForce(VenueError):
    code = -1115
    reason = "invalid_tif"
    default_msg = "Invalid timeInForce."


class InvalidOrderType(VenueError):
    code = -1116
    reason = "invalid_order_type"
    default_msg = "Invalid orderType."


class InvalidSide(VenueError):
    code = -1117
    reason = "invalid_side"
    default_msg = "Invalid side."


class BadSymbol(VenueError):
    code = -1121
    reason = "bad_symbol"
    default_msg = "Invalid symbol."


class InvalidListenKey(VenueError):
    code = -1125
    reason = "invalid_listen_key"
    default_msg = "This listenKey does not exist."


class InvalidParameter(VenueError):
    code = -1130
    reason = "invalid_parameter"
    default_msg = "Invalid data sent for a parameter."

    @classmethod
    def named(cls, name: str) -> InvalidParameter:
        return cls(f"Data sent for parameter '{name}' is not valid.")


class MoreThan24Hours(VenueError):
    code = -1127
    reason = "lookup_interval_too_big"
    default_msg = "More than 24 hours between startTime and endTime."


class InvalidJson(VenueError):
    code = -1135
    reason = "invalid_json"
    default_msg = "Invalid JSON Request"


class NewOrderRejected(VenueError):
    """-2010: the matching engine refused the order (message says why)."""

    code = -2010
    reason = "new_order_rejected"
    default_msg = "NEW_ORDER_REJECTED"
    INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
    DUPLICATE = "Duplicate order sent."
    WOULD_TAKE = "Order would immediately match and take."
    UNSUPPORTED = "Unsupported order combination"


class CancelRejected(VenueError):
    code = -2011
    reason = "cancel_rejected"
    default_msg = "Unknown order sent."


class NoSuchOrder(VenueError):
    code = -2013
    reason = "no_such_order"
    default_msg = "Order does not exist."


class BadApiKeyFormat(VenueError):
    code = -2014
    status = 401
    reason = "bad_api_key_format"
    default_msg = "API-key format invalid."


class RejectedApiKey(VenueError):
    code = -2015
    status = 401
    reason = "rejected_api_key"
    default_msg = "Invalid API-key, IP, or permissions for action."


class SubscriptionActive(VenueError):
    code = -2035
    reason = "subscription_active"
    default_msg = "User Data Stream subscription already active."


class SubscriptionInactive(VenueError):
    code = -2036
    reason = "subscription_inactive"
    default_msg = "User Data Stream subscription not active."


class HmacNotSupported(VenueError):
    """``session.logon`` works with Ed25519 keys only."""

    code = -4056
    reason = "hmac_not_supported"
    default_msg = "HMAC_SHA256 API key is not supported."


class FuturesRejected(VenueError):
    """USD-M futures refusals; their codes differ from spot's, so each carries its own."""

    reason = "futures_rejected"

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self._code = code

    def body(self) -> dict[str, object]:
        return {"code": self._code, "msg": self.msg}

    @property
    def futures_code(self) -> int:
        return self._code


def error_body(exc: VenueError) -> dict[str, object]:
    """The JSON object Binance sends for ``exc``."""
    return exc.body()


def error_code(exc: VenueError) -> int:
    return exc.futures_code if isinstance(exc, FuturesRejected) else exc.code
