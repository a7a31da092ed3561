"""Spot and futures REST over real loopback sockets, signed by the test itself."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from venue_helpers import SPOT_API_YAML, hmac_hex, now_ms, quiet_config, running


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPOT_API_YAML.exists():
        pytest.skip("../shared/binance/spot_api.yaml not present")
    yaml = pytest.importorskip("yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict(yaml.load(SPOT_API_YAML.read_text(encoding="utf-8"), Loader=loader))


def required(spec: dict[str, Any], schema: str) -> set[str]:
    return set(spec["components"]["schemas"][schema]["required"])


async def test_market_and_limit_orders_query_cancel_and_lists(spec: dict[str, Any]) -> None:
    async with running() as v:
        c = v.client
        full = await c.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                          quantity="0.6", newClientOrderId="mkt-1")
        assert required(spec, "orderResponseFull") <= set(full)
        assert full["status"] == "FILLED" and full["clientOrderId"] == "mkt-1"
        assert [f["price"] for f in full["fills"]] == ["45000.01000000", "45000.02000000"]
        assert full["fills"][0]["commission"] == "0.00050000"

        resting = await c.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="LIMIT",
                             timeInForce="GTC", quantity="0.25", price="46000.00",
                             newClientOrderId="lim-1")
        assert resting["status"] == "NEW" and resting["fills"] == []

        details = await c.ok("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="lim-1")
        assert required(spec, "orderDetails") <= set(details)
        assert (details["orderId"], details["origQty"], details["price"]) == (
            resting["orderId"], "0.25000000", "46000.00000000")

        open_orders = await c.ok("GET", "/api/v3/openOrders", symbol="BTCUSDT")
        assert [o["clientOrderId"] for o in open_orders] == ["lim-1"]

        cancelled = await c.ok("DELETE", "/api/v3/order", symbol="BTCUSDT",
                               orderId=resting["orderId"], newClientOrderId="undo-1")
        assert required(spec, "order") <= set(cancelled)
        assert (cancelled["status"], cancelled["origClientOrderId"],
                cancelled["clientOrderId"]) == ("CANCELED", "lim-1", "undo-1")
        assert await c.ok("GET", "/api/v3/openOrders") == []

        trades = await c.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT")
        assert all(required(spec, "myTrade") <= set(t) for t in trades)
        assert [t["qty"] for t in trades] == ["0.50000000", "0.10000000"]
        assert trades[0]["isBuyer"] is True and trades[0]["commissionAsset"] == "BTC"
        later = await c.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT", fromId=trades[1]["id"])
        assert [t["id"] for t in later] == [trades[1]["id"]]

        orders = await c.ok("GET", "/api/v3/allOrders", symbol="BTCUSDT")
        assert [o["status"] for o in orders] == ["FILLED", "CANCELED"]

        account = await c.ok("GET", "/api/v3/account")
        assert required(spec, "account") <= set(account)
        balances = {b["asset"]: b for b in account["balances"]}
        assert balances["BTC"]["free"] == "10.59940000"
        assert balances["USDT"]["free"] == "72999.99300000"
        assert account["commissionRates"]["taker"] == "0.00100000"


async def test_response_types_default_and_explicit() -> None:
    async with running() as v:
        c = v.client
        ack = await c.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                         quantity="0.01", newOrderRespType="ACK")
        assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
        result = await c.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                            timeInForce="GTC", quantity="0.01", price="44000",
                            newOrderRespType="RESULT")
        assert "fills" not in result and result["status"] == "NEW"
        maker = await c.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                           type="LIMIT_MAKER", quantity="0.01", price="44000")
        assert "status" not in maker  # LIMIT_MAKER defaults to ACK


async def test_public_endpoints_and_order_test(spec: dict[str, Any]) -> None:
    async with running() as v:
        http = v.http
        assert (await http.get("/api/v3/ping")).json() == {}
        server_time = (await http.get("/api/v3/time")).json()["serverTime"]
        assert abs(server_time - now_ms()) < 5000
        info = (await http.get("/api/v3/exchangeInfo")).json()
        schema = spec["paths"]["/api/v3/exchangeInfo"]["get"]["responses"]["200"]
        body = schema["content"]["application/json"]["schema"]
        assert set(body["required"]) <= set(info)
        assert set(body["properties"]["symbols"]["items"]["required"]) <= set(info["symbols"][0])
        assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
        assert info["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                         "intervalNum": 1, "limit": 6000}
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
        one = (await http.get("/api/v3/exchangeInfo", params={"symbol": "ETHUSDT"})).json()
        assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]

        assert await v.client.ok("POST", "/api/v3/order/test", symbol="BTCUSDT", side="BUY",
                                 type="MARKET", quantity="0.01") == {}
        rates = await v.client.ok("POST", "/api/v3/order/test", symbol="BTCUSDT", side="BUY",
                                  type="MARKET", quantity="0.01", computeCommissionRates="true")
        assert rates["standardCommissionForOrder"]["taker"] == "0.00100000"
        assert await v.client.ok("GET", "/api/v3/allOrders", symbol="BTCUSDT") == []


async def test_params_in_the_body_and_signature_over_query_plus_body() -> None:
    async with running() as v:
        query = urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"})
        body = urlencode({"quantity": "0.01", "timestamp": now_ms()})
        signature = hmac_hex("sim-secret", query + body)
        response = await v.http.post(f"/api/v3/order?{query}",
                                     content=f"{body}&signature={signature}",
                                     headers={"X-MBX-APIKEY": "sim-key", "Content-Type":
                                              "application/x-www-form-urlencoded"})
        assert response.status_code == 200, response.text
        assert response.json()["executedQty"] == "0.01000000"


async def test_ed25519_signed_rest_request() -> None:
    private = Ed25519PrivateKey.generate()
    async with running() as v:
        v.venue.core.add_key("ed-key", ed25519=private.public_key())
        query = urlencode({"timestamp": now_ms()})
        signature = base64.b64encode(private.sign(query.encode())).decode()
        ok = await v.http.get(f"/api/v3/account?{query}&{urlencode({'signature': signature})}",
                              headers={"X-MBX-APIKEY": "ed-key"})
        assert ok.status_code == 200, ok.text
        forged = await v.http.get(f"/api/v3/account?{query}&signature={'A' * 86}%3D%3D",
                                  headers={"X-MBX-APIKEY": "ed-key"})
        assert forged.json()["code"] == -1022


ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.01", "price": "44000"}


@pytest.mark.parametrize(
    ("change", "status", "code", "msg"),
    [
        ({"timestamp": "AHEAD"}, 400, -1021,
         "Timestamp for this request was 1000ms ahead of the server's time."),
        ({"timestamp": "OLD"}, 400, -1021,
         "Timestamp for this request is outside of the recvWindow."),
        ({"secret": "wrong"}, 400, -1022, "Signature for this request is not valid."),
        ({"key": "nobody"}, 401, -2015, "Invalid API-key, IP, or permissions for action."),
        ({"key": ""}, 401, -2014, "API-key format invalid."),
        ({"symbol": "DOGEUSDT"}, 400, -1121, "Invalid symbol."),
        ({"price": "44000.001"}, 400, -1013, "Filter failure: PRICE_FILTER"),
        ({"quantity": "0.000011"}, 400, -1013, "Filter failure: LOT_SIZE"),
        ({"quantity": "0.0001"}, 400, -1013, "Filter failure: NOTIONAL"),
        ({"quantity": "5", "price": "45000"}, 400, -2010,
         "Account has insufficient balance for requested action."),
        ({"price": None}, 400, -1102,
         "Mandatory parameter 'price' was not sent, was empty/null, or malformed."),
        ({"timeInForce": None}, 400, -1102,
         "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
        ({"quantity": "1e-3"}, 400, -1100,
         "Illegal characters found in parameter 'quantity'; legal range is "
         "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
        ({"newClientOrderId": "bad id!"}, 400, -1100,
         "Illegal characters found in parameter 'newClientOrderId'; legal range is "
         "'^[a-zA-Z0-9-_]{1,36}$'."),
        ({"side": "HOLD"}, 400, -1117, "Invalid side."),
        ({"type": "ICEBERG"}, 400, -1116, "Invalid orderType."),
        ({"quantity": "0.123456789"}, 400, -1111, "Parameter 'quantity' has too much precision."),
        ({"recvWindow": "70000"}, 400, -1102,
         "'recvWindow' contains unexpected value. Cannot be greater than '60000'."),
        ({"colour": "blue"}, 400, -1104,
         "Not all sent parameters were read; read '8' parameter(s) but was sent '9'."),
    ],
)
async def test_refusals_carry_binance_codes_and_messages(
    change: dict[str, Any], status: int, code: int, msg: str,
) -> None:
    async with running() as v:
        params: dict[str, Any] = dict(ORDER)
        key, secret = "sim-key", "sim-secret"
        for name, value in change.items():
            if name == "key":
                key = value
            elif name == "secret":
                secret = value
            elif value is None:
                params.pop(name)
            elif value == "AHEAD":
                params["timestamp"] = now_ms() + 1500
            elif value == "OLD":
                params["timestamp"] = now_ms() - 6000
            else:
                params[name] = value
        params.setdefault("timestamp", now_ms())
        query = urlencode(params)
        query += f"&signature={hmac_hex(secret, query)}"
        response = await v.http.post(f"/api/v3/order?{query}", headers={"X-MBX-APIKEY": key})
        assert (response.status_code, response.json()) == (status, {"code": code, "msg": msg})
        assert "x-mbx-used-weight-1m" in response.headers
        assert v.venue.core.spot.orders == {}


async def test_order_lookup_errors() -> None:
    async with running() as v:
        c = v.client
        missing = await c.call("GET", "/api/v3/order", symbol="BTCUSDT", orderId=12345)
        assert missing.json() == {"code": -2013, "msg": "Order does not exist."}
        cancel = await c.call("DELETE", "/api/v3/order", symbol="BTCUSDT",
                              origClientOrderId="ghost")
        assert cancel.json() == {"code": -2011, "msg": "Unknown order sent."}
        neither = await c.call("GET", "/api/v3/order", symbol="BTCUSDT")
        assert neither.json() == {
            "code": -1102,
            "msg": "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"}
        await c.ok("POST", "/api/v3/order", **ORDER, newClientOrderId="dup")
        again = await c.call("POST", "/api/v3/order", **ORDER, newClientOrderId="dup")
        assert again.json() == {"code": -2010, "msg": "Duplicate order sent."}
        duplicated = await v.http.get(
            "/api/v3/openOrders?symbol=BTCUSDT&symbol=ETHUSDT&timestamp=1&signature=00",
            headers={"X-MBX-APIKEY": "sim-key"})
        assert duplicated.json() == {"code": -1101,
                                     "msg": "Duplicate values for a parameter detected."}
        unknown_route = await v.http.get("/api/v3/nothing")
        assert unknown_route.status_code == 404


async def test_futures_rest_orders_and_trades() -> None:
    async with running() as v:
        c = v.client
        placed = await c.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY",
                            type="MARKET", quantity="0.01", newClientOrderId="fut-1")
        assert (placed["status"], placed["executedQty"], placed["avgPrice"]) == (
            "FILLED", "0.01000", "45000.01")
        resting = await c.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="SELL",
                             type="LIMIT", timeInForce="GTC", quantity="0.01", price="46000")
        assert [o["orderId"] for o in await c.ok("GET", "/fapi/v1/openOrders")] == [
            resting["orderId"]]
        queried = await c.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="fut-1")
        assert queried["time"] == placed["updateTime"]
        cancelled = await c.ok("DELETE", "/fapi/v1/order", symbol="BTCUSDT",
                               orderId=resting["orderId"])
        assert cancelled["status"] == "CANCELED"
        trades = await c.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
        assert [(t["qty"], t["commissionAsset"], t["buyer"]) for t in trades] == [
            ("0.01000", "USDT", True)]
        missing = await c.call("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=1)
        assert missing.json()["code"] == -2013
        spot_view = await c.ok("GET", "/api/v3/openOrders")
        assert spot_view == []
        info = (await v.http.get("/fapi/v1/exchangeInfo")).json()
        assert info["symbols"][0]["pricePrecision"] == 2


async def test_default_account_is_funded_as_the_contract_says() -> None:
    async with running(quiet_config()) as v:
        account = await v.client.ok("GET", "/api/v3/account", omitZeroBalances="true")
        free = {b["asset"]: float(b["free"]) for b in account["balances"]}
        assert free["USDT"] >= 100000 and free["BTC"] >= 10 and free["ETH"] >= 100
