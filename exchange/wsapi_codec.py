"""Sans-IO WebSocket-API messages: requests with ids, responses, and frame routing.

Requests are ``{"id": …, "method": …, "params": {…}}``; SIGNED ones carry ``apiKey``,
``timestamp``, optional ``recvWindow`` and a ``signature`` over all other params sorted by name
(:func:`spark.exchange.signing.ws_payload`). Responses are ``{"id", "status", "result"}`` or
``{"id", "status", "error": {"code", "msg"}}``; anything else on the connection is a user-data
event (:mod:`spark.exchange.events`). :func:`decode_ws_api_frame` tells the two apart after one
JSON parse.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from spark.exchange.credentials import Credentials
from spark.exchange.errors import (
    ExchangeError,
    MalformedFrame,
    VenueRejected,
    classify,
    parse_error_body,
)
from spark.exchange.events import UserEvent, decode_user_message
from spark.exchange.signing import ws_payload

__all__ = [
    "WsApiRequest",
    "WsApiResponse",
    "decode_ws_api_frame",
    "parse_ws_api_response",
    "ping_request",
    "session_logon_request",
    "subscribe_request",
    "subscribe_signature_request",
    "time_request",
    "unsubscribe_request",
]


@attrs.frozen(slots=True)
class WsApiRequest:
    id: str
    method: str
    params: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)

    def to_json(self) -> str:
        msg: dict[str, Any] = {"id": self.id, "method": self.method}
        if self.params is not None:
            msg["params"] = self.params
        return orjson.dumps(msg).decode()


@attrs.frozen(slots=True)
class WsApiResponse:
    id: str | int | None
    status: int
    result: Any = attrs.field(eq=False)
    error: ExchangeError | None = attrs.field(default=None, eq=False)
    rate_limits: tuple[dict[str, Any], ...] = attrs.field(default=(), eq=False, repr=False)
    retry_until_ms: int | None = None  # error.data.retryAfter on 418/429 (epoch ms)

    @property
    def ok(self) -> bool:
        return self.error is None

    def subscription_id(self) -> int:
        """For subscribe responses: ``result.subscriptionId``; raises the error otherwise."""
        if self.error is not None:
            raise self.error
        sub = self.result.get("subscriptionId") if isinstance(self.result, dict) else None
        if not isinstance(sub, int) or isinstance(sub, bool):
            raise MalformedFrame("subscribe response without subscriptionId", repr(self.result))
        return sub


def _signed(
    request_id: str,
    method: str,
    credentials: Credentials,
    timestamp_ms: int,
    recv_window_ms: int | None,
) -> WsApiRequest:
    params: dict[str, Any] = {"apiKey": credentials.api_key, "timestamp": timestamp_ms}
    if recv_window_ms is not None:
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError("recvWindow must be in (0, 60000] ms")
        params["recvWindow"] = recv_window_ms
    params["signature"] = credentials.signer.sign(ws_payload(params))
    return WsApiRequest(request_id, method, params)


def subscribe_signature_request(
    request_id: str,
    credentials: Credentials,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> WsApiRequest:
    """``userDataStream.subscribe.signature``: works with any key type, no logon needed."""
    return _signed(
        request_id, "userDataStream.subscribe.signature", credentials, timestamp_ms, recv_window_ms
    )


def session_logon_request(
    request_id: str,
    credentials: Credentials,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> WsApiRequest:
    """``session.logon`` (Ed25519 keys only, Binance's rule)."""
    return _signed(request_id, "session.logon", credentials, timestamp_ms, recv_window_ms)


def subscribe_request(request_id: str) -> WsApiRequest:
    """``userDataStream.subscribe`` on a logged-on session."""
    return WsApiRequest(request_id, "userDataStream.subscribe")


def unsubscribe_request(request_id: str, subscription_id: int | None = None) -> WsApiRequest:
    params = None if subscription_id is None else {"subscriptionId": subscription_id}
    return WsApiRequest(request_id, "userDataStream.unsubscribe", params)


def ping_request(request_id: str) -> WsApiRequest:
    return WsApiRequest(request_id, "ping")


def time_request(request_id: str) -> WsApiRequest:
    return WsApiRequest(request_id, "time")


def parse_ws_api_response(obj: Any) -> WsApiResponse:
    """A parsed response object → :class:`WsApiResponse` (errors classified, not raised)."""
    if not isinstance(obj, dict) or "status" not in obj:
        raise MalformedFrame("not a WS-API response", repr(obj))
    status = obj["status"]
    rid = obj.get("id")
    if not isinstance(status, int) or isinstance(status, bool):
        raise MalformedFrame("status is not an integer", repr(obj))
    if rid is not None and not isinstance(rid, str | int):
        raise MalformedFrame("id is neither string nor integer", repr(obj))
    limits = obj.get("rateLimits")
    rate_limits: tuple[dict[str, Any], ...] = ()
    if isinstance(limits, list):
        rate_limits = tuple(r for r in limits if isinstance(r, dict))
    if "error" in obj:
        err = obj["error"]
        err_obj = err if isinstance(err, dict) else None
        retry_until: int | None = None
        if err_obj is not None and isinstance(err_obj.get("data"), dict):
            until = err_obj["data"].get("retryAfter")  # epoch ms when a 418/429 lifts
            retry_until = until if isinstance(until, int) and not isinstance(until, bool) else None
        code, msg = parse_error_body(err_obj)
        error = classify(status, err_obj) or VenueRejected(code, msg, status=status)
        return WsApiResponse(rid, status, None, error, rate_limits, retry_until)
    return WsApiResponse(rid, status, obj.get("result"), None, rate_limits)


def decode_ws_api_frame(raw: str | bytes) -> WsApiResponse | UserEvent:
    """One WS-API frame: a response to one of our requests, or a user-data event.

    Raises only :class:`MalformedFrame`.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"JSONDecodeError: {exc}", raw) from None
    if obj.__class__ is dict and "status" in obj and "id" in obj:
        try:
            return parse_ws_api_response(obj)
        except MalformedFrame as exc:
            raise MalformedFrame(str(exc.args[0]), raw) from None
    return decode_user_message(obj, raw)
