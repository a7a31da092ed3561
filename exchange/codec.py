"""Sans-IO REST request building: what to send, byte for byte, and how it is signed.

Two steps, so that the slow part (network) never sits between building and signing:

1. A builder (``spot_place_order(...)`` etc.) validates the arguments and returns a
   :class:`RestRequest`: endpoint + parameters in send order, already formatted as strings.
2. :func:`encode` adds ``recvWindow``/``timestamp`` and the signature for SIGNED endpoints and
   returns an :class:`EncodedRequest`: method, path, query, body, headers. The signature covers
   exactly the query string (GET/DELETE) or exactly the form body (POST/PUT), as sent.

``encode`` is called once per attempt, just before sending, with a fresh timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal
from urllib.parse import quote

import attrs

from spark.exchange import endpoints as ep
from spark.exchange.credentials import Credentials
from spark.exchange.endpoints import Endpoint, Security
from spark.exchange.signing import format_param, rest_payload

__all__ = [
    "CLIENT_ORDER_ID_RE",
    "EncodedRequest",
    "RestRequest",
    "encode",
    "futures_cancel_order",
    "futures_exchange_info",
    "futures_listen_key_close",
    "futures_listen_key_create",
    "futures_listen_key_keepalive",
    "futures_open_orders",
    "futures_place_order",
    "futures_query_order",
    "futures_time",
    "futures_user_trades",
    "spot_account",
    "spot_cancel_order",
    "spot_exchange_info",
    "spot_my_trades",
    "spot_open_orders",
    "spot_place_order",
    "spot_query_order",
    "spot_time",
]

CLIENT_ORDER_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_RECV_WINDOW_MS = 60_000

Side = Literal["BUY", "SELL"]
RespType = Literal["ACK", "RESULT", "FULL"]
Param = str | int | bool | Decimal | None


@attrs.frozen(slots=True)
class RestRequest:
    """An unsigned request: the endpoint and its parameters, formatted, in send order."""

    endpoint: Endpoint
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None


@attrs.frozen(slots=True)
class EncodedRequest:
    """Exactly what goes on the wire (apart from the origin).

    ``query``, ``body`` and ``headers`` stay out of ``repr``: they carry the API key and a
    signature that is valid for ``recvWindow``.
    """

    endpoint: Endpoint
    method: str
    path: str
    query: str = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=False)

    @property
    def target(self) -> str:
        """Path plus query string, as it appears in the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path


def _params(pairs: Iterable[tuple[str, Param]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, format_param(v)) for k, v in pairs if v is not None)


def _urlencode(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params)


def encode(
    request: RestRequest,
    credentials: Credentials | None,
    *,
    timestamp_ms: int | None = None,
    recv_window_ms: int | None = None,
) -> EncodedRequest:
    """Sign (if needed) and serialise ``request``.

    POST and PUT carry their parameters as a form body (as Binance's own clients do), GET and
    DELETE in the query string. The signature is appended last and is not itself signed.
    """
    endpoint = request.endpoint
    params = list(request.params)
    headers: list[tuple[str, str]] = []
    if endpoint.security is not Security.NONE:
        if credentials is None:
            raise ValueError(f"{endpoint.name} needs API credentials")
        headers.append(("X-MBX-APIKEY", credentials.api_key))
    if endpoint.security is Security.SIGNED:
        if timestamp_ms is None:
            raise ValueError(f"{endpoint.name} is SIGNED and needs a timestamp")
        if recv_window_ms is not None:
            if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
                raise ValueError("recvWindow must be in (0, 60000] ms")
            params.append(("recvWindow", str(recv_window_ms)))
        params.append(("timestamp", str(timestamp_ms)))
    encoded = _urlencode(params)
    in_body = endpoint.method in ("POST", "PUT")
    if endpoint.security is Security.SIGNED:
        assert credentials is not None
        query, body = ("", encoded) if in_body else (encoded, "")
        signature = credentials.signer.sign(rest_payload(query, body))
        encoded = f"{encoded}&signature={quote(signature, safe='')}" if encoded else (
            f"signature={quote(signature, safe='')}"
        )
    if in_body:
        headers.append(("Content-Type", FORM_CONTENT_TYPE))
        return EncodedRequest(endpoint, endpoint.method, endpoint.path, "", encoded.encode(),
                              tuple(headers))
    return EncodedRequest(endpoint, endpoint.method, endpoint.path, encoded, b"", tuple(headers))


# --- validation helpers -------------------------------------------------------------------------


def _check_side(side: str) -> None:
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, not {side!r}")


def _check_client_id(value: str, name: str) -> None:
    if not CLIENT_ORDER_ID_RE.match(value):
        raise ValueError(f"{name} must match {CLIENT_ORDER_ID_RE.pattern}")


def _check_positive(value: Decimal | None, name: str) -> None:
    if value is not None and (not value.is_finite() or value <= 0):
        raise ValueError(f"{name} must be a positive finite Decimal")


def _order_ref(orig_client_order_id: str | None, order_id: int | None) -> list[tuple[str, Param]]:
    if orig_client_order_id is None and order_id is None:
        raise ValueError("either orig_client_order_id or order_id is required")
    if orig_client_order_id is not None:
        _check_client_id(orig_client_order_id, "orig_client_order_id")
    return [("orderId", order_id), ("origClientOrderId", orig_client_order_id)]


# --- spot -----------------------------------------------------------------------------------------


def spot_time() -> RestRequest:
    return RestRequest(ep.SPOT_TIME)


def spot_exchange_info(symbols: Iterable[str] | None = None) -> RestRequest:
    if symbols is None:
        return RestRequest(ep.SPOT_EXCHANGE_INFO)
    listed = list(symbols)
    if len(listed) == 1:
        return RestRequest(ep.SPOT_EXCHANGE_INFO, (("symbol", listed[0]),))
    array = "[" + ",".join(f'"{s}"' for s in listed) + "]"
    return RestRequest(ep.SPOT_EXCHANGE_INFO, (("symbols", array),))


def spot_place_order(
    symbol: str,
    side: Side,
    order_type: str,
    *,
    new_client_order_id: str,
    quantity: Decimal | None = None,
    quote_order_qty: Decimal | None = None,
    price: Decimal | None = None,
    time_in_force: str | None = None,
    stop_price: Decimal | None = None,
    resp_type: RespType = "ACK",
) -> RestRequest:
    """``POST /api/v3/order``. The clientOrderId is mandatory: it is what makes the order
    findable after an unknown outcome (and what makes "sent at most once" checkable)."""
    _check_side(side)
    _check_client_id(new_client_order_id, "new_client_order_id")
    for name, val in (("quantity", quantity), ("quote_order_qty", quote_order_qty),
                      ("price", price), ("stop_price", stop_price)):
        _check_positive(val, name)
    if (quantity is None) == (quote_order_qty is None):
        raise ValueError("exactly one of quantity and quote_order_qty is required")
    if order_type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and (
        price is None or time_in_force is None
    ):
        raise ValueError(f"{order_type} orders need price and time_in_force")
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise ValueError("resp_type must be ACK, RESULT or FULL")
    return RestRequest(
        ep.SPOT_ORDER_PLACE,
        _params([
            ("symbol", symbol),
            ("side", side),
            ("type", order_type),
            ("timeInForce", time_in_force),
            ("quantity", quantity),
            ("quoteOrderQty", quote_order_qty),
            ("price", price),
            ("stopPrice", stop_price),
            ("newClientOrderId", new_client_order_id),
            ("newOrderRespType", resp_type),
        ]),
    )


def spot_query_order(
    symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
) -> RestRequest:
    return RestRequest(
        ep.SPOT_ORDER_QUERY,
        _params([("symbol", symbol), *_order_ref(orig_client_order_id, order_id)]),
    )


def spot_cancel_order(
    symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
) -> RestRequest:
    return RestRequest(
        ep.SPOT_ORDER_CANCEL,
        _params([("symbol", symbol), *_order_ref(orig_client_order_id, order_id)]),
    )


def spot_open_orders(symbol: str | None = None) -> RestRequest:
    if symbol is None:
        return RestRequest(ep.SPOT_OPEN_ORDERS.with_weight(ep.SPOT_OPEN_ORDERS_ALL_WEIGHT))
    return RestRequest(ep.SPOT_OPEN_ORDERS, (("symbol", symbol),))


def _trade_query(
    symbol: str,
    order_id: int | None,
    from_id: int | None,
    start_time: int | None,
    end_time: int | None,
    limit: int | None,
) -> list[tuple[str, Param]]:
    if limit is not None and not 0 < limit <= 1000:
        raise ValueError("limit must be in 1..1000")
    if start_time is not None and end_time is not None and end_time - start_time > 86_400_000:
        raise ValueError("startTime..endTime may span at most 24 h")
    return [
        ("symbol", symbol),
        ("orderId", order_id),
        ("startTime", start_time),
        ("endTime", end_time),
        ("fromId", from_id),
        ("limit", limit),
    ]


def spot_my_trades(
    symbol: str,
    *,
    order_id: int | None = None,
    from_id: int | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
    limit: int | None = None,
) -> RestRequest:
    endpoint = ep.SPOT_MY_TRADES
    if order_id is not None:
        endpoint = endpoint.with_weight(ep.SPOT_MY_TRADES_BY_ORDER_WEIGHT)
    return RestRequest(
        endpoint,
        _params(_trade_query(symbol, order_id, from_id, start_time, end_time, limit)),
    )


def spot_account(*, omit_zero_balances: bool = False) -> RestRequest:
    return RestRequest(
        ep.SPOT_ACCOUNT, _params([("omitZeroBalances", True if omit_zero_balances else None)])
    )


# --- USD-M futures -------------------------------------------------------------------------------


def futures_time() -> RestRequest:
    return RestRequest(ep.FUTURES_TIME)


def futures_exchange_info() -> RestRequest:
    return RestRequest(ep.FUTURES_EXCHANGE_INFO)


def futures_listen_key_create() -> RestRequest:
    return RestRequest(ep.FUTURES_LISTEN_KEY_CREATE)


def futures_listen_key_keepalive() -> RestRequest:
    return RestRequest(ep.FUTURES_LISTEN_KEY_KEEPALIVE)


def futures_listen_key_close() -> RestRequest:
    return RestRequest(ep.FUTURES_LISTEN_KEY_CLOSE)


def futures_place_order(
    symbol: str,
    side: Side,
    order_type: str,
    *,
    new_client_order_id: str,
    quantity: Decimal | None = None,
    price: Decimal | None = None,
    time_in_force: str | None = None,
    stop_price: Decimal | None = None,
    reduce_only: bool | None = None,
    position_side: str | None = None,
    resp_type: Literal["ACK", "RESULT"] = "ACK",
) -> RestRequest:
    """``POST /fapi/v1/order`` (futures know ACK and RESULT only)."""
    _check_side(side)
    _check_client_id(new_client_order_id, "new_client_order_id")
    for name, val in (("quantity", quantity), ("price", price), ("stop_price", stop_price)):
        _check_positive(val, name)
    if order_type == "LIMIT" and (price is None or time_in_force is None or quantity is None):
        raise ValueError("LIMIT orders need quantity, price and time_in_force")
    if resp_type not in ("ACK", "RESULT"):
        raise ValueError("futures resp_type must be ACK or RESULT")
    return RestRequest(
        ep.FUTURES_ORDER_PLACE,
        _params([
            ("symbol", symbol),
            ("side", side),
            ("positionSide", position_side),
            ("type", order_type),
            ("timeInForce", time_in_force),
            ("quantity", quantity),
            ("reduceOnly", reduce_only),
            ("price", price),
            ("stopPrice", stop_price),
            ("newClientOrderId", new_client_order_id),
            ("newOrderRespType", resp_type),
        ]),
    )


def futures_query_order(
    symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
) -> RestRequest:
    return RestRequest(
        ep.FUTURES_ORDER_QUERY,
        _params([("symbol", symbol), *_order_ref(orig_client_order_id, order_id)]),
    )


def futures_cancel_order(
    symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
) -> RestRequest:
    return RestRequest(
        ep.FUTURES_ORDER_CANCEL,
        _params([("symbol", symbol), *_order_ref(orig_client_order_id, order_id)]),
    )


def futures_open_orders(symbol: str | None = None) -> RestRequest:
    if symbol is None:
        return RestRequest(ep.FUTURES_OPEN_ORDERS.with_weight(ep.FUTURES_OPEN_ORDERS_ALL_WEIGHT))
    return RestRequest(ep.FUTURES_OPEN_ORDERS, (("symbol", symbol),))


def futures_user_trades(
    symbol: str,
    *,
    order_id: int | None = None,
    from_id: int | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
    limit: int | None = None,
) -> RestRequest:
    endpoint = ep.FUTURES_USER_TRADES
    return RestRequest(
        endpoint,
        _params(_trade_query(symbol, order_id, from_id, start_time, end_time, limit)),
    )
