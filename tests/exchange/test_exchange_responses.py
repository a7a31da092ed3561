"""Response parsing against Binance's shapes.

The spec-driven tests build one example object per response schema of the official OpenAPI
spec (``/work/shared/binance/spot_api.yaml``: every property filled with its ``example``) and
parse it; the documented JSON examples below (rest-api.md, USD-M futures docs) always run.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spark.exchange.errors import MalformedResponse
from spark.exchange.models import OrderAck, OrderResult
from spark.exchange.responses import (
    parse_account,
    parse_exchange_info,
    parse_listen_key,
    parse_order_response,
    parse_order_status,
    parse_order_statuses,
    parse_server_time,
    parse_trades,
)

SPEC = Path(os.environ.get("SPARK_BINANCE_SPEC", "/work/shared/binance/spot_api.yaml"))


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not available")
    yaml = pytest.importorskip("yaml")
    with SPEC.open() as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # type: ignore[no-any-return]


def example(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """An instance of ``schema`` built from the spec's own ``example`` values."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return example(spec, spec["components"]["schemas"][name])
    if "oneOf" in schema:
        return example(spec, schema["oneOf"][-1])
    kind = schema.get("type")
    if kind == "object":
        return {k: example(spec, v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example(spec, schema["items"])]
    if "example" in schema:
        return schema["example"]
    return {"boolean": True, "integer": 1, "string": "x"}.get(kind or "")


def response_example(spec: dict[str, Any], path: str, method: str) -> Any:
    op = spec["paths"][path][method]
    return example(spec, op["responses"]["200"]["content"]["application/json"]["schema"])


def test_spec_time(spec: dict[str, Any]) -> None:
    assert parse_server_time(response_example(spec, "/api/v3/time", "get")) == 1499827319559


def test_spec_order_responses(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    ack = parse_order_response(example(spec, schemas["orderResponseAck"]))
    assert isinstance(ack, OrderAck)
    assert (ack.symbol, ack.order_id, ack.client_order_id, ack.transact_time) == (
        "BTCUSDT", 28, "6gCrw2kRUAF9CvJDGP16IP", 1507725176595)
    result = parse_order_response(example(spec, schemas["orderResponseResult"]))
    assert isinstance(result, OrderResult) and result.fills == ()
    assert result.executed_qty == Decimal("10.00000000") and result.status == "FILLED"
    full = parse_order_response(example(spec, schemas["orderResponseFull"]))
    assert isinstance(full, OrderResult)
    assert full.fills[0].price == Decimal("4000.00000000")
    assert full.fills[0].commission_asset == "USDT"
    assert full.working_time == 1507725176595


def test_spec_query_cancel_open_orders(spec: dict[str, Any]) -> None:
    status = parse_order_status(response_example(spec, "/api/v3/order", "get"))
    assert (status.symbol, status.order_id, status.client_order_id, status.status) == (
        "LTCBTC", 1, "myOrder1", "NEW")
    assert status.price == Decimal("0.1") and status.is_working is True
    cancelled = parse_order_status(response_example(spec, "/api/v3/order", "delete"))
    assert cancelled.orig_client_order_id == "msXkySR3u5uYwpvRMFsi3u"
    assert cancelled.transact_time == 1507725176595
    opens = parse_order_statuses(response_example(spec, "/api/v3/openOrders", "get"))
    assert len(opens) == 1 and opens[0].order_id == 1


def test_spec_trades_and_account(spec: dict[str, Any]) -> None:
    trades = parse_trades(response_example(spec, "/api/v3/myTrades", "get"))
    t = trades[0]
    assert (t.symbol, t.trade_id, t.order_id, t.order_list_id) == ("BNBBTC", 28457, 100234, -1)
    assert (t.price, t.qty, t.quote_qty, t.commission) == (
        Decimal("4.00000100"), Decimal("12.00000000"), Decimal("48.000012"),
        Decimal("10.10000000"))
    account = parse_account(response_example(spec, "/api/v3/account", "get"))
    btc = account.balance("BTC")
    assert btc is not None and btc.free == Decimal("4723846.89208129")
    assert account.account_type == "SPOT" and account.permissions == ("SPOT",)


def test_spec_exchange_info(spec: dict[str, Any]) -> None:
    info = parse_exchange_info(response_example(spec, "/api/v3/exchangeInfo", "get"))
    assert info.server_time == 1592882214236
    assert info.rate_limits[0].key == "1M" and info.rate_limits[0].limit == 1200
    eth = info.symbol("ETHBTC")
    assert eth is not None and eth.tick_size == Decimal("0.00000100")


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 1655969291181,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
         "limit": 61000},
    ],
    "exchangeFilters": [],
    "symbols": [{
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
             "maxQty": "115.85", "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
             "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
    }],
}


def test_exchange_info_filters_and_limits() -> None:
    info = parse_exchange_info(EXCHANGE_INFO)
    s = info.symbol("BTCUSDT")
    assert s is not None
    assert (s.tick_size, s.step_size, s.min_qty, s.max_qty) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal("9000"))
    assert (s.min_notional, s.max_notional, s.max_num_orders) == (
        Decimal("5"), Decimal("9000000"), 200)
    assert s.market_max_qty == Decimal("115.85")
    assert [r.key for r in info.rate_limits] == ["1M", "10S", "1D", "5M"]
    assert info.symbol("NOPE") is None


def test_futures_exchange_info_filters() -> None:
    info = parse_exchange_info({
        "serverTime": 1, "rateLimits": [], "symbols": [{
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
            "filters": [
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            ],
        }],
    })
    s = info.symbols[0]
    assert s.min_notional == Decimal("100") and s.max_num_orders == 200


def test_futures_order_and_trade_shapes() -> None:
    order = {
        "clientOrderId": "testOrder", "cumQty": "0", "cumQuote": "0", "executedQty": "0",
        "orderId": 22542179, "avgPrice": "0.00000", "origQty": "10", "price": "0",
        "reduceOnly": False, "side": "BUY", "positionSide": "SHORT", "status": "NEW",
        "stopPrice": "9300", "closePosition": False, "symbol": "BTCUSDT", "timeInForce": "GTD",
        "type": "TRAILING_STOP_MARKET", "origType": "TRAILING_STOP_MARKET",
        "updateTime": 1566818724722, "workingType": "CONTRACT_PRICE", "priceProtect": False,
    }
    placed = parse_order_response(order)
    assert isinstance(placed, OrderResult)
    assert placed.transact_time == 1566818724722 and placed.avg_price == Decimal("0")
    status = parse_order_status(order)
    assert status.reduce_only is False and status.position_side == "SHORT"
    trades = parse_trades([{
        "buyer": False, "commission": "-0.07819010", "commissionAsset": "USDT", "id": 698759,
        "maker": False, "orderId": 25851813, "price": "7819.01", "qty": "0.002",
        "quoteQty": "15.63802", "realizedPnl": "-0.91539999", "side": "SELL",
        "positionSide": "SHORT", "symbol": "BTCUSDT", "time": 1569514978020,
    }])
    assert trades[0].realized_pnl == Decimal("-0.91539999") and trades[0].is_buyer is False
    assert parse_listen_key({"listenKey": "abc"}) == "abc"


@pytest.mark.parametrize(
    ("parser", "body"),
    [
        (parse_server_time, {"serverTime": "soon"}),
        (parse_server_time, []),
        (parse_order_response, {"symbol": "X"}),
        (parse_order_response, {"symbol": "X", "orderId": 1, "clientOrderId": "c",
                                "transactTime": 1, "status": "NEW", "price": "NaN"}),
        (parse_order_statuses, {"not": "a list"}),
        (parse_trades, [{"symbol": "X", "id": 1}]),
        (parse_account, {"balances": None}),
        (parse_exchange_info, {"serverTime": 1, "symbols": [{"symbol": 5}]}),
        (parse_listen_key, {}),
    ],
)
def test_unreadable_2xx_bodies_are_malformed_responses(parser: Any, body: Any) -> None:
    with pytest.raises(MalformedResponse) as info:
        parser(body)
    assert info.value.reason == "malformed_response"
