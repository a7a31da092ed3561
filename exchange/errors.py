"""Exchange errors: one small hierarchy with stable reason codes.

Why a hierarchy and not status codes: the order router has exactly four different things to do
after a failed call, and the class says which one.

* :class:`VenueRejected`, :class:`AuthError`, :class:`TimestampError`: the venue looked at the
  request and refused it. Nothing was executed; the router records a rejection.
* :class:`RateLimited`, :class:`IpBanned`: the venue (or our own budget) refused to look. Nothing
  was executed; back off.
* :class:`UnknownExecutionStatus`: the request may have been executed (timeouts after sending,
  5xx, 503, -1007, a 2xx we could not read). The router must ask the venue about the
  clientOrderId before doing anything else. Never resend blindly.
* :class:`TransportError`: failed before any byte left (connect refused, pool exhausted).
  Nothing was executed.

Every class carries a stable ``reason`` (a metrics label, ``spark_order_rejections_total``) and,
where the venue answered, the venue's own ``code`` and ``msg``. Exception texts never contain
request parameters, so they cannot leak a signature or an API key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "AuthError",
    "ExchangeError",
    "IpBanned",
    "MalformedFrame",
    "MalformedResponse",
    "RateLimited",
    "TimestampError",
    "TransportError",
    "UnknownExecutionStatus",
    "UnknownListenKey",
    "VenueRejected",
    "classify",
    "parse_error_body",
]

_SNIPPET_CHARS = 200


class ExchangeError(Exception):
    """Base of everything the exchange package raises on purpose."""

    reason: str = "exchange_error"

    def __init__(self, message: str, *, code: int | None = None, msg: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.msg = msg


class VenueRejected(ExchangeError):
    """The venue refused the request after reading it; nothing was executed.

    ``reason`` is refined from the venue code so rejections can be counted by cause.
    """

    reason = "venue_rejected"

    _REASONS: Mapping[int, str] = {
        -1013: "filter_failure",
        -1100: "bad_parameter",
        -1102: "bad_parameter",
        -1121: "invalid_symbol",
        -1125: "unknown_listen_key",
        -2010: "order_rejected",
        -2011: "cancel_rejected",
        -2013: "no_such_order",
    }

    def __init__(self, code: int | None, msg: str, *, status: int | None = None) -> None:
        super().__init__(
            f"venue rejected (status={status}, code={code}): {msg}", code=code, msg=msg
        )
        self.status = status
        if code is not None:
            self.reason = self._REASONS.get(code, "venue_rejected")


class UnknownListenKey(VenueRejected):
    """-1125: the futures listenKey no longer exists; create a new one and reconnect."""


class RateLimited(ExchangeError):
    """429 / -1003 / -1015, or our own budget would cross the limit. Nothing was executed.

    ``local`` is true when the request was never sent because the local budget said so.
    """

    reason = "rate_limited"

    def __init__(
        self,
        retry_after_s: float | None,
        *,
        code: int | None = None,
        msg: str | None = None,
        local: bool = False,
    ) -> None:
        where = "local budget" if local else "venue"
        super().__init__(
            f"rate limited by {where} (retry after {retry_after_s} s, code={code})",
            code=code,
            msg=msg,
        )
        self.retry_after_s = retry_after_s
        self.local = local


class IpBanned(ExchangeError):
    """418: the IP is banned until ``until`` (same time base as the caller's budget clock)."""

    reason = "ip_banned"

    def __init__(
        self,
        retry_after_s: float | None,
        *,
        until: float | None = None,
        code: int | None = None,
        msg: str | None = None,
    ) -> None:
        super().__init__(
            f"IP banned (retry after {retry_after_s} s, code={code})", code=code, msg=msg
        )
        self.retry_after_s = retry_after_s
        self.until = until


class AuthError(ExchangeError):
    """-2015 / -1022 / -2014 / -1002 / 401: key, IP whitelist, permission or signature problem."""

    reason = "auth"

    def __init__(self, code: int | None, msg: str, *, status: int | None = None) -> None:
        super().__init__(
            f"authentication failed (status={status}, code={code}): {msg}", code=code, msg=msg
        )
        self.status = status


class TimestampError(ExchangeError):
    """-1021: timestamp outside recvWindow. Binance rejects it before execution."""

    reason = "timestamp"

    def __init__(self, code: int | None, msg: str) -> None:
        super().__init__(f"timestamp rejected (code={code}): {msg}", code=code, msg=msg)


class UnknownExecutionStatus(ExchangeError):
    """The request may or may not have been executed. Query by clientOrderId before anything."""

    reason = "unknown_execution_status"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: int | None = None,
        msg: str | None = None,
    ) -> None:
        super().__init__(f"execution status unknown: {detail}", code=code, msg=msg)
        self.status = status


class MalformedResponse(UnknownExecutionStatus):
    """A 2xx whose body we could not read: the venue accepted *something*, so status unknown."""

    reason = "malformed_response"


class TransportError(ExchangeError):
    """Failed before the request could have left this process (connect refused, pool timeout)."""

    reason = "transport"


class MalformedFrame(ExchangeError):
    """A websocket frame that is not what Binance sends. ``raw`` is the truncated text."""

    reason = "malformed_frame"

    def __init__(self, detail: str, raw: str | bytes) -> None:
        snippet = snippet_of(raw)
        super().__init__(f"malformed frame ({detail}): {snippet!r}")
        self.raw = snippet


def snippet_of(raw: str | bytes | Any, limit: int = _SNIPPET_CHARS) -> str:
    """A short, single-line, credential-free excerpt of ``raw`` for an error text."""
    if isinstance(raw, bytes | bytearray | memoryview):
        text = bytes(raw[: limit * 4]).decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw[: limit * 4]
    else:
        text = repr(raw)[: limit * 4]
    text = _redact(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


def _redact(text: str) -> str:
    # listenKeys ride in some frames (listenKeyExpired) and URLs; they are bearer credentials.
    lowered = text.lower()
    if "listenkey" not in lowered and "signature" not in lowered and "apikey" not in lowered:
        return text
    return re.sub(
        r"(?i)(listenKey|signature|apiKey)(\"?\s*[:=]\s*\"?)([^\"&,}\s]+)",
        r"\1\2***",
        text,
    )


def parse_error_body(body: bytes | str | Mapping[str, Any] | None) -> tuple[int | None, str]:
    """Binance's ``{"code": -NNNN, "msg": "..."}`` as ``(code, msg)``; tolerant of anything else."""
    if body is None:
        return None, ""
    obj: Any = body
    if isinstance(body, bytes | str):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, snippet_of(body)
    if isinstance(obj, Mapping):
        code = obj.get("code")
        msg = obj.get("msg")
        code_i = code if isinstance(code, int) and not isinstance(code, bool) else None
        return code_i, msg if isinstance(msg, str) else snippet_of(obj)
    return None, snippet_of(obj)


_AUTH_CODES = frozenset({-2015, -1022, -2014, -1002})
_RATE_CODES = frozenset({-1003, -1015})


def classify(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    retry_after_s: float | None = None,
) -> ExchangeError | None:
    """Map an HTTP (or WS-API) status and body to an error, or ``None`` for success.

    Pure and total: every status/body combination gets an answer. The order of the checks
    matters: a 5xx is unknown-status even if its body looks like a rejection, because
    Binance documents 5xx as "may have been executed".
    """
    if 200 <= status < 300:
        code, _ = parse_error_body(body) if isinstance(body, Mapping) else (None, "")
        # Binance futures answers some successes with {"code": 200, "msg": "success"}.
        if code is not None and code < 0:
            return _from_code(status, code, parse_error_body(body)[1], retry_after_s)
        return None
    code, msg = parse_error_body(body)
    if status == 418:
        return IpBanned(retry_after_s, code=code, msg=msg)
    if status == 429:
        return RateLimited(retry_after_s, code=code, msg=msg)
    if status >= 500:
        return UnknownExecutionStatus(f"HTTP {status}", status=status, code=code, msg=msg)
    if code is not None:
        return _from_code(status, code, msg, retry_after_s)
    if status == 401:
        return AuthError(code, msg, status=status)
    return VenueRejected(code, msg, status=status)


def _from_code(
    status: int, code: int, msg: str, retry_after_s: float | None
) -> ExchangeError:
    if code == -1021:
        return TimestampError(code, msg)
    if code == -1007:
        return UnknownExecutionStatus("venue timeout (-1007)", status=status, code=code, msg=msg)
    if code in _RATE_CODES:
        return RateLimited(retry_after_s, code=code, msg=msg)
    if code in _AUTH_CODES or status == 401:
        return AuthError(code, msg, status=status)
    if code == -1125:
        return UnknownListenKey(code, msg, status=status)
    return VenueRejected(code, msg, status=status)
