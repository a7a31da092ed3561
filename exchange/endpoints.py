"""The REST endpoints Spark calls, with Binance's documented request weights.

Weights are what Binance charges against ``X-MBX-USED-WEIGHT-1M`` (rest-api.md for spot,
the USD-M futures docs for ``/fapi``). Some depend on the parameters (``openOrders`` without a
symbol, ``myTrades`` with an ``orderId``); the codec picks the right one via
:meth:`Endpoint.with_weight`. ``counts_order`` marks requests that also count against
``X-MBX-ORDER-COUNT-*``, so the budget can hold them back separately.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["Endpoint", "Security"]


class Security(enum.Enum):
    """Binance's security types, reduced to what changes the request we build."""

    NONE = "NONE"  # public
    API_KEY = "API_KEY"  # USER_STREAM / MARKET_DATA: X-MBX-APIKEY header, no signature
    SIGNED = "SIGNED"  # TRADE / USER_DATA: header + timestamp + signature


@attrs.frozen(slots=True)
class Endpoint:
    name: str  # metrics label, e.g. "spot.order.place"
    method: str
    path: str
    weight: int
    security: Security
    counts_order: bool = False

    def with_weight(self, weight: int) -> Endpoint:
        return attrs.evolve(self, weight=weight)


_N, _K, _S = Security.NONE, Security.API_KEY, Security.SIGNED

# --- spot (/api/v3) ---------------------------------------------------------------------------
SPOT_TIME = Endpoint("spot.time", "GET", "/api/v3/time", 1, _N)
SPOT_EXCHANGE_INFO = Endpoint("spot.exchange_info", "GET", "/api/v3/exchangeInfo", 20, _N)
SPOT_ORDER_PLACE = Endpoint("spot.order.place", "POST", "/api/v3/order", 1, _S, counts_order=True)
SPOT_ORDER_QUERY = Endpoint("spot.order.query", "GET", "/api/v3/order", 4, _S)
SPOT_ORDER_CANCEL = Endpoint("spot.order.cancel", "DELETE", "/api/v3/order", 1, _S)
SPOT_OPEN_ORDERS = Endpoint("spot.open_orders", "GET", "/api/v3/openOrders", 6, _S)
SPOT_OPEN_ORDERS_ALL_WEIGHT = 80
SPOT_MY_TRADES = Endpoint("spot.my_trades", "GET", "/api/v3/myTrades", 20, _S)
SPOT_MY_TRADES_BY_ORDER_WEIGHT = 5
SPOT_ACCOUNT = Endpoint("spot.account", "GET", "/api/v3/account", 20, _S)

# --- USD-M futures (/fapi/v1) -------------------------------------------------------------------
FUTURES_TIME = Endpoint("futures.time", "GET", "/fapi/v1/time", 1, _N)
FUTURES_EXCHANGE_INFO = Endpoint("futures.exchange_info", "GET", "/fapi/v1/exchangeInfo", 1, _N)
FUTURES_LISTEN_KEY_CREATE = Endpoint(
    "futures.listen_key.create", "POST", "/fapi/v1/listenKey", 1, _K
)
FUTURES_LISTEN_KEY_KEEPALIVE = Endpoint(
    "futures.listen_key.keepalive", "PUT", "/fapi/v1/listenKey", 1, _K
)
FUTURES_LISTEN_KEY_CLOSE = Endpoint(
    "futures.listen_key.close", "DELETE", "/fapi/v1/listenKey", 1, _K
)
# New order: 0 on the IP weight, 1 on the 10s and 1m order counts.
FUTURES_ORDER_PLACE = Endpoint(
    "futures.order.place", "POST", "/fapi/v1/order", 0, _S, counts_order=True
)
FUTURES_ORDER_QUERY = Endpoint("futures.order.query", "GET", "/fapi/v1/order", 1, _S)
FUTURES_ORDER_CANCEL = Endpoint("futures.order.cancel", "DELETE", "/fapi/v1/order", 1, _S)
FUTURES_OPEN_ORDERS = Endpoint("futures.open_orders", "GET", "/fapi/v1/openOrders", 1, _S)
FUTURES_OPEN_ORDERS_ALL_WEIGHT = 40
FUTURES_USER_TRADES = Endpoint("futures.user_trades", "GET", "/fapi/v1/userTrades", 5, _S)
