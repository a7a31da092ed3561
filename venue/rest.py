"""The REST request pipeline and routing table for ``/api/v3/…`` and ``/fapi/v1/…``, sans-IO.

:meth:`RestApi.handle` takes a request (method, path, raw query and body, API key header, client
address) and the host's wall-clock ms, and returns the exact HTTP reply: status, JSON body and
Binance's headers (``X-MBX-USED-WEIGHT-1M`` on every reply, ``X-MBX-ORDER-COUNT-*`` on orders,
``Retry-After`` on 429/418).  The server only moves bytes.

Order of checks, as Binance: 5xx fault (nothing happens), weight (429/418), API key (-2014 /
-2015), signature (-1022), timestamp (-1021), parameters, then the engine.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from spark.venue.auth import check_recv_window, check_timestamp, verify_signature
from spark.venue.core import VenueCore
from spark.venue.errors import (
    BadApiKeyFormat,
    InternalError,
    MandatoryParamMissing,
    RetryableLimit,
    UnknownExecution,
    VenueError,
)
from spark.venue.params import Params, parse_request
from spark.venue.rest_common import Ctx
from spark.venue.rest_futures import FuturesRest
from spark.venue.rest_spot import SpotRest

JSON_TYPE = (b"content-type", b"application/json;charset=UTF-8")


class Security(enum.Enum):
    NONE = "NONE"
    USER_STREAM = "USER_STREAM"  # API key, no signature
    SIGNED = "SIGNED"


@attrs.frozen
class RestRequest:
    method: str
    path: str
    query: str = ""
    body: str = ""
    api_key: str | None = None
    client: str = "127.0.0.1"


@attrs.frozen
class RestReply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    delay_s: float = 0.0
    """Injected latency the server waits before sending this reply (the action already ran)."""


Handler = Callable[[Ctx], Any]
Weight = Callable[[Params], int]


@attrs.frozen
class Route:
    handler: Handler
    weight: Weight
    security: Security
    limit_group: str
    places_order: bool = False


def _fixed(weight: int) -> Weight:
    return lambda _params: weight


class RestApi:
    """The request pipeline and routing table; handlers live in ``rest_spot`` / ``rest_futures``."""

    def __init__(self, core: VenueCore) -> None:
        self.core = core
        self.spot = SpotRest(core)
        self.futures = FuturesRest(core)
        self._routes: dict[tuple[str, str], Route] = {}
        self._register()

    # -- entry point ------------------------------------------------------------------------
    def handle(self, req: RestRequest, host_ms: int) -> RestReply:
        route = self._routes.get((req.method, req.path))
        if route is None:
            status = 405 if any(path == req.path for _, path in self._routes) else 404
            return RestReply(status, b"", [])
        core = self.core
        now = core.now(host_ms)
        if core.faults.draw(core.faults.settings.http_5xx):
            exc = InternalError()
            return RestReply(exc.status, orjson.dumps(exc.body()), [JSON_TYPE])
        delay = core.faults.settings.latency_ms / 1000
        limit_key = f"{route.limit_group}:{req.client}"
        headers: list[tuple[bytes, bytes]] = [JSON_TYPE]
        try:
            parsed = parse_request(req.query, req.body)
            params = parsed.params
            core.limiter.admit(limit_key, route.weight(params), now)
            credential = None
            if route.security is not Security.NONE:
                if not req.api_key:
                    raise BadApiKeyFormat()
                credential = core.credential(req.api_key)
            if route.security is Security.SIGNED:
                assert credential is not None
                timestamp = params.integer("timestamp", required=True)
                assert timestamp is not None
                recv_window = check_recv_window(params.decimal("recvWindow"))
                if parsed.signature is None:
                    raise MandatoryParamMissing.named("signature")
                verify_signature(credential, parsed.payload, parsed.signature)
                check_timestamp(timestamp, recv_window, now)
            if route.places_order:
                counts = core.limiter.admit_order(f"{route.limit_group}:{credential.account}"
                                                  if credential else route.limit_group, now)
                headers.append((b"x-mbx-order-count-10s", str(counts[0]).encode()))
                headers.append((b"x-mbx-order-count-1d", str(counts[1]).encode()))
            result = route.handler(Ctx(params, now, credential))
            if route.places_order and core.faults.draw(core.faults.settings.unknown_status):
                raise UnknownExecution()
        except VenueError as exc:
            self._weight_headers(headers, limit_key, now)
            if isinstance(exc, RetryableLimit):
                headers.append((b"retry-after", str(exc.retry_after_s).encode()))
            return RestReply(exc.status, orjson.dumps(exc.body()), headers, delay)
        self._weight_headers(headers, limit_key, now)
        body = result if isinstance(result, bytes) else orjson.dumps(result)
        return RestReply(200, body, headers, delay)

    def _weight_headers(self, headers: list[tuple[bytes, bytes]], key: str, now: int) -> None:
        used = str(self.core.limiter.used(key, now)).encode()
        headers.append((b"x-mbx-used-weight", used))
        headers.append((b"x-mbx-used-weight-1m", used))

    # -- routing table ----------------------------------------------------------------------
    def _add(self, method: str, path: str, handler: Handler, weight: int | Weight,
             security: Security = Security.NONE, *, places_order: bool = False) -> None:
        group = "fapi" if path.startswith("/fapi/") else "api"
        weigh = _fixed(weight) if isinstance(weight, int) else weight
        self._routes[(method, path)] = Route(handler, weigh, security, group, places_order)

    def _register(self) -> None:
        signed = Security.SIGNED
        spot, fut = self.spot, self.futures
        add = self._add
        add("GET", "/api/v3/ping", lambda ctx: {}, 1)
        add("GET", "/api/v3/time", lambda ctx: {"serverTime": ctx.now}, 1)
        add("GET", "/api/v3/exchangeInfo", spot.exchange_info, 20)
        add("GET", "/api/v3/ticker/bookTicker", spot.book_ticker, 2)
        add("GET", "/api/v3/ticker/price", spot.ticker_price, 2)
        add("POST", "/api/v3/order", spot.new_order, 1, signed, places_order=True)
        add("POST", "/api/v3/order/test", spot.test_order,
            lambda p: 20 if p.boolean("computeCommissionRates") else 1, signed)
        add("GET", "/api/v3/order", spot.query_order, 4, signed)
        add("DELETE", "/api/v3/order", spot.cancel_order, 1, signed)
        add("GET", "/api/v3/openOrders", spot.open_orders,
            lambda p: 6 if "symbol" in p else 80, signed)
        add("DELETE", "/api/v3/openOrders", spot.cancel_all, 1, signed)
        add("GET", "/api/v3/allOrders", spot.all_orders, 20, signed)
        add("GET", "/api/v3/myTrades", spot.my_trades,
            lambda p: 5 if "orderId" in p else 20, signed)
        add("GET", "/api/v3/account", spot.account, 20, signed)

        add("GET", "/fapi/v1/ping", lambda ctx: {}, 1)
        add("GET", "/fapi/v1/time", lambda ctx: {"serverTime": ctx.now}, 1)
        add("GET", "/fapi/v1/exchangeInfo", fut.exchange_info, 1)
        for method, handler in (("POST", fut.listen_key_create),
                                ("PUT", fut.listen_key_keepalive),
                                ("DELETE", fut.listen_key_delete)):
            add(method, "/fapi/v1/listenKey", handler, 1, Security.USER_STREAM)
        add("POST", "/fapi/v1/order", fut.new_order, 0, signed, places_order=True)
        add("GET", "/fapi/v1/order", fut.query_order, 1, signed)
        add("DELETE", "/fapi/v1/order", fut.cancel_order, 1, signed)
        add("GET", "/fapi/v1/openOrders", fut.open_orders,
            lambda p: 1 if "symbol" in p else 40, signed)
        add("GET", "/fapi/v1/allOrders", fut.all_orders, 5, signed)
        add("GET", "/fapi/v1/userTrades", fut.user_trades, 5, signed)
