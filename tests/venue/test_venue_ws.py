"""Spot WebSocket API, futures user data and market streams over real loopback sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio_websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from venue_helpers import (
    KEY,
    events,
    next_json,
    no_message,
    now_ms,
    quiet_config,
    running,
    subscribe_user_data,
    ws_signed,
)

from spark.core.clock import FixedClock

T0 = 1_790_000_040_000


async def request(ws: trio_websocket.WebSocketConnection, method: str,
                  params: dict[str, Any] | None = None, request_id: Any = 7) -> Any:
    message: dict[str, Any] = {"id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    await ws.send_message(json.dumps(message))
    return await next_json(ws)


async def test_subscribe_signature_then_execution_reports_in_order() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        sid = await subscribe_user_data(ws, timestamp=now_ms())
        order = await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                                  type="MARKET", quantity="0.7", newClientOrderId="ws-1")
        frames = [await next_json(ws) for _ in range(4)]
        assert {f["subscriptionId"] for f in frames} == {sid}
        got = [f["event"] for f in frames]
        assert [(e["e"], e.get("x"), e.get("X")) for e in got] == [
            ("executionReport", "NEW", "NEW"),
            ("executionReport", "TRADE", "PARTIALLY_FILLED"),
            ("executionReport", "TRADE", "FILLED"),
            ("outboundAccountPosition", None, None)]
        assert all(e["i"] == order["orderId"] and e["c"] == "ws-1" for e in got[:3])
        assert [e["t"] for e in got[1:3]] == [f["tradeId"] for f in order["fills"]]
        balances = {b["a"]: b for b in got[3]["B"]}
        assert balances["BTC"]["f"] == "10.69930000"

        resting = await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                                    type="LIMIT", timeInForce="GTC", quantity="0.1",
                                    price="44990")
        new, _ = await events(ws, 2)
        assert (new["x"], new["w"], new["W"]) == ("NEW", True, resting["transactTime"])
        await v.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": "44980"})
        fill, position = await events(ws, 2)
        assert (fill["x"], fill["X"], fill["m"], fill["L"]) == (
            "TRADE", "FILLED", True, "44990.00000000")
        assert position["e"] == "outboundAccountPosition"


async def test_session_logon_with_ed25519_and_subscription_rules() -> None:
    private = Ed25519PrivateKey.generate()
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        v.venue.core.add_key("ed-key", ed25519=private.public_key())
        assert (await request(ws, "ping"))["result"] == {}
        reply = await request(ws, "time")
        assert reply["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        assert abs(reply["result"]["serverTime"] - now_ms()) < 5000

        early = await request(ws, "userDataStream.subscribe")
        assert early["status"] == 401 and early["error"]["code"] == -1002
        hmac_logon = await request(ws, "session.logon",
                                   ws_signed({"apiKey": KEY, "timestamp": now_ms()}))
        assert hmac_logon["error"] == {"code": -4056,
                                       "msg": "HMAC_SHA256 API key is not supported."}
        forged = await request(ws, "session.logon", ws_signed(
            {"apiKey": "ed-key", "timestamp": now_ms()}, private_key=Ed25519PrivateKey.generate()))
        assert forged["error"]["code"] == -1022
        v.venue.core.add_key("dual-key", secret="dual-secret", ed25519=private.public_key())
        hmac_signed = await request(ws, "session.logon", ws_signed(
            {"apiKey": "dual-key", "timestamp": now_ms()}, secret="dual-secret"))
        assert hmac_signed["error"]["code"] == -1022  # logon takes Ed25519 signatures only
        stale = await request(ws, "session.logon", ws_signed(
            {"apiKey": "ed-key", "timestamp": now_ms() - 10_000}, private_key=private))
        assert stale["error"]["code"] == -1021
        logon = await request(ws, "session.logon", ws_signed(
            {"apiKey": "ed-key", "timestamp": now_ms(), "recvWindow": 10000},
            private_key=private))
        assert logon["status"] == 200 and logon["result"]["apiKey"] == "ed-key"

        sub = await request(ws, "userDataStream.subscribe")
        assert sub["result"] == {"subscriptionId": 0}
        twice = await request(ws, "userDataStream.subscribe.signature",
                              ws_signed({"apiKey": KEY, "timestamp": now_ms()}))
        assert twice["error"] == {"code": -2035,
                                  "msg": "User Data Stream subscription already active."}
        await v.client.ok("POST", "/api/v3/order", symbol="ETHUSDT", side="SELL",
                          type="MARKET", quantity="1")
        first = await next_json(ws)
        assert first["subscriptionId"] == 0 and first["event"]["x"] == "NEW"
        await events(ws, 2)  # TRADE, outboundAccountPosition

        done = await request(ws, "userDataStream.unsubscribe", {"subscriptionId": 0})
        assert done["result"] == {}
        ended = await next_json(ws)
        assert ended["subscriptionId"] == 0
        assert ended["event"]["e"] == "eventStreamTerminated"
        again = await request(ws, "userDataStream.unsubscribe")
        assert again["error"]["code"] == -2036
        unknown = await request(ws, "order.place", {})
        assert unknown["status"] == 400
        broken_id = await ws.send_message("{not json")
        assert broken_id is None
        assert (await next_json(ws))["error"]["code"] == -1135


async def test_server_shutdown_and_expiry_notices() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        sid = await subscribe_user_data(ws, timestamp=now_ms())
        assert (await v.admin("POST", "/_sim/server-shutdown"))["connections"] == 1
        shutdown = await next_json(ws)
        assert shutdown["event"]["e"] == "serverShutdown" and "subscriptionId" not in shutdown
        expired = await v.admin("POST", "/_sim/listenkeys/expire")
        assert expired["subscriptions"] == 1
        ended = await next_json(ws)
        assert ended == {"subscriptionId": sid,
                         "event": {"e": "eventStreamTerminated", "E": ended["event"]["E"]}}
        await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                          quantity="0.01")
        assert await no_message(ws)


async def test_futures_listen_key_lifecycle_and_user_stream() -> None:
    clock = FixedClock(T0)
    async with running(clock=clock) as v:
        c = v.client
        key = (await c.ok("POST", "/fapi/v1/listenKey", sign=False))["listenKey"]
        assert (await c.ok("POST", "/fapi/v1/listenKey", sign=False))["listenKey"] == key
        assert (await c.ok("PUT", "/fapi/v1/listenKey", sign=False))["listenKey"] == key
        url = f"{v.ws}/private/ws?listenKey={key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"
        async with trio_websocket.open_websocket_url(url) as ws:
            await c.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                       quantity="0.01")
            got = [await next_json(ws) for _ in range(3)]
            assert [e["e"] for e in got] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE",
                                             "ACCOUNT_UPDATE"]
            assert got[1]["o"]["X"] == "FILLED" and got[1]["o"]["l"] == "0.01000"
            clock.advance(59 * 60_000)
            await v.admin("POST", "/_sim/step")
            assert await no_message(ws, 0.2)
            clock.advance(2 * 60_000)
            await v.admin("POST", "/_sim/step")
            expired = await next_json(ws)
            assert expired == {"e": "listenKeyExpired", "E": str(clock.now_ms()),
                               "listenKey": key}
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.get_message()
        gone = await c.call("PUT", "/fapi/v1/listenKey", sign=False)
        assert gone.status_code == 400
        assert gone.json() == {"code": -1125, "msg": "This listenKey does not exist."}
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with trio_websocket.open_websocket_url(
                    f"{v.ws}/private/ws?listenKey={key}"):
                pass
        assert rejected.value.status_code == 400
        fresh = (await c.ok("POST", "/fapi/v1/listenKey", sign=False))["listenKey"]
        assert fresh != key
        assert await c.ok("DELETE", "/fapi/v1/listenKey", sign=False) == {}
        assert (await c.call("DELETE", "/fapi/v1/listenKey", sign=False)).json()["code"] == -1125


async def test_futures_user_stream_filters_event_types() -> None:
    async with running() as v:
        key = (await v.client.ok("POST", "/fapi/v1/listenKey", sign=False))["listenKey"]
        url = f"{v.ws}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE"
        async with trio_websocket.open_websocket_url(url) as ws:
            await v.client.ok("POST", "/fapi/v1/order", symbol="ETHUSDT", side="SELL",
                              type="MARKET", quantity="0.01")
            only = await next_json(ws)
            assert only["e"] == "ACCOUNT_UPDATE"
            assert only["a"]["P"][0]["pa"] == "-0.01"
            assert await no_message(ws, 0.2)


async def test_market_streams_raw_combined_and_live_subscribe() -> None:
    async with running() as v:
        async with trio_websocket.open_websocket_url(f"{v.ws}/ws/btcusdt@bookTicker") as raw, \
                trio_websocket.open_websocket_url(
                    f"{v.ws}/stream?streams=btcusdt@trade/ethusdt@bookTicker") as combined:
            await v.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": "45100"})
            ticker = await next_json(raw)
            assert (ticker["s"], ticker["b"], ticker["a"]) == (
                "BTCUSDT", "45100.00000000", "45100.01000000")
            assert ticker["B"] == "0.50000000"
            await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL",
                              type="MARKET", quantity="0.2")
            trade = await next_json(combined)
            assert trade["stream"] == "btcusdt@trade"
            assert (trade["data"]["e"], trade["data"]["p"], trade["data"]["q"],
                    trade["data"]["m"]) == ("trade", "45100.00000000", "0.20000000", True)
            after = await next_json(raw)
            assert after["B"] == "0.30000000" and after["u"] > ticker["u"]

            await combined.send_message(json.dumps(
                {"method": "SUBSCRIBE", "params": ["bnbusdt@bookTicker"], "id": 3}))
            assert await next_json(combined) == {"result": None, "id": 3}
            await v.admin("POST", "/_sim/step")
            streams = {(await next_json(combined))["stream"] for _ in range(2)}
            assert streams == {"ethusdt@bookTicker", "bnbusdt@bookTicker"}
            await combined.send_message(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
            listed = await next_json(combined)
            assert listed["result"] == ["bnbusdt@bookTicker", "btcusdt@trade",
                                        "ethusdt@bookTicker"]
        with pytest.raises(trio_websocket.ConnectionRejected):
            async with trio_websocket.open_websocket_url(f"{v.ws}/ws/dogeusdt@trade"):
                pass


async def test_price_path_steps_on_its_timer() -> None:
    async with running(quiet_config(step_interval_ms=20.0, seed=3)) as v, \
            trio_websocket.open_websocket_url(f"{v.ws}/ws/ethusdt@bookTicker") as ws:
        first = await next_json(ws)
        second = await next_json(ws)
        assert second["u"] > first["u"]
        assert v.venue.core.steps >= 2


def test_server_pings_every_20_seconds_by_default() -> None:
    from spark.venue import Venue

    assert Venue().hypercorn_config("127.0.0.1", 0).websocket_ping_interval == 20.0


async def test_rate_limits_can_be_left_out_and_ids_are_echoed() -> None:
    async with running() as v, trio_websocket.open_websocket_url(
            f"{v.ws}/ws-api/v3?returnRateLimits=false") as ws:
        status = await request(ws, "session.status", request_id="abc-1")
        assert status["id"] == "abc-1" and "rateLimits" not in status
        assert status["result"]["apiKey"] is None
        assert status["result"]["userDataStream"] is False
        wanted = await request(ws, "time", {"returnRateLimits": True}, request_id=None)
        assert wanted["id"] is None and wanted["rateLimits"][0]["count"] >= 3
