"""``/_sim/…`` admin routes and injected faults, over real sockets."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio
import trio_websocket
from venue_helpers import (
    events,
    next_json,
    no_message,
    now_ms,
    quiet_config,
    running,
    subscribe_user_data,
)

MARKET_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.7"}
EXPECTED = [("executionReport", "NEW"), ("executionReport", "TRADE"),
            ("executionReport", "TRADE"), ("outboundAccountPosition", None)]


def kinds(got: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["e"], e.get("x")) for e in got]


async def test_ground_truth_lists_every_order_and_trade() -> None:
    async with running() as v:
        await v.client.ok("POST", "/api/v3/order", **MARKET_BUY, newClientOrderId="truth-1")
        await v.client.ok("POST", "/fapi/v1/order", symbol="ETHUSDT", side="SELL",
                          type="MARKET", quantity="0.01")
        orders = await v.admin("GET", "/_sim/orders")
        first = orders[0]
        assert (first["market"], first["clientOrderId"], first["status"],
                first["executedQty"]) == ("spot", "truth-1", "FILLED", "0.7")
        assert {"symbol", "orderId", "clientOrderId", "status", "executedQty"} <= set(orders[0])
        assert orders[1]["market"] == "futures"
        trades = await v.admin("GET", "/_sim/trades")
        assert [(t["clientOrderId"], t["price"], t["qty"], t["commission"],
                 t["commissionAsset"]) for t in trades[:2]] == [
            ("truth-1", "45000.01", "0.5", "0.0005", "BTC"),
            ("truth-1", "45000.02", "0.2", "0.0002", "BTC")]
        assert {"symbol", "id", "orderId"} <= set(trades[0])
        state = await v.admin("GET", "/_sim/state")
        assert state["url"] == v.url and state["prices"]["BTCUSDT"] == "45000"


async def test_admin_routes_refuse_non_loopback_clients() -> None:
    async with running() as v:
        transport = httpx.ASGITransport(app=v.venue.app, client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://venue") as outside:
            assert (await outside.get("/_sim/orders")).status_code == 403
            assert (await outside.post("/_sim/faults", json={"http_5xx": 1})).status_code == 403
            assert (await outside.get("/api/v3/ping")).status_code == 200
        assert v.venue.core.faults.settings.http_5xx == 0


async def test_drop_closes_every_websocket() -> None:
    async with running() as v, \
            trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as api, \
            trio_websocket.open_websocket_url(f"{v.ws}/ws/btcusdt@trade") as market:
        await subscribe_user_data(api, timestamp=now_ms())
        assert (await v.admin("POST", "/_sim/ws/drop"))["dropped"] == 2
        for ws in (api, market):
            with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1011


async def test_stall_holds_user_data_until_released_without_losing_any() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        await subscribe_user_data(ws, timestamp=now_ms())
        await v.admin("POST", "/_sim/ws/stall")
        await v.client.ok("POST", "/api/v3/order", **MARKET_BUY)
        assert await no_message(ws, 0.3)
        assert ws.closed is None
        await v.admin("DELETE", "/_sim/ws/stall")
        assert kinds(await events(ws, 4)) == EXPECTED

        await v.admin("POST", "/_sim/ws/stall", {"duration_s": 0.2})
        await v.client.ok("POST", "/api/v3/order", **MARKET_BUY)
        assert await no_message(ws, 0.1)
        assert kinds(await events(ws, 4, timeout=3)) == EXPECTED


async def test_duplicate_fault_sends_every_event_twice() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        await subscribe_user_data(ws, timestamp=now_ms())
        await v.admin("POST", "/_sim/faults", {"ws_duplicate": 1.0})
        await v.client.ok("POST", "/api/v3/order", **MARKET_BUY)
        got = await events(ws, 8)
        assert got[0::2] == got[1::2]
        assert kinds(got[0::2]) == EXPECTED


async def test_reorder_fault_swaps_events_but_delivers_all() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        await subscribe_user_data(ws, timestamp=now_ms())
        await v.admin("POST", "/_sim/faults", {"ws_reorder": 1.0})
        await v.client.ok("POST", "/api/v3/order", **MARKET_BUY)
        got = kinds(await events(ws, 4))
        assert got == [EXPECTED[1], EXPECTED[0], EXPECTED[3], EXPECTED[2]]
        await v.client.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                          timeInForce="GTC", quantity="0.1", price="44000")
        lone = kinds(await events(ws, 2))
        assert sorted(lone, key=str) == sorted(
            [("executionReport", "NEW"), ("outboundAccountPosition", None)], key=str)


async def test_slow_consumer_is_disconnected_not_silently_skipped() -> None:
    async with running(queue_size=3) as v, \
            trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        await subscribe_user_data(ws, timestamp=now_ms())
        await v.admin("POST", "/_sim/ws/stall")
        # 5 events: one held by the stalled writer, three queued, one too many.
        await v.client.ok("POST", "/api/v3/order", **{**MARKET_BUY, "quantity": "1.2"})
        with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1008


async def test_unknown_status_places_the_order_but_answers_503() -> None:
    async with running() as v:
        await v.admin("POST", "/_sim/faults", {"unknown_status": 1.0})
        reply = await v.client.call("POST", "/api/v3/order", **MARKET_BUY,
                                    newClientOrderId="maybe-1")
        assert reply.status_code == 503
        assert reply.json() == {
            "code": -1007,
            "msg": "Timeout waiting for response from backend server. Send status unknown; "
                   "execution status unknown."}
        await v.admin("DELETE", "/_sim/faults")
        found = await v.client.ok("GET", "/api/v3/order", symbol="BTCUSDT",
                                  origClientOrderId="maybe-1")
        assert found["status"] == "FILLED"
        assert [o["clientOrderId"] for o in await v.admin("GET", "/_sim/orders")] == ["maybe-1"]


async def test_5xx_before_acting_places_nothing() -> None:
    async with running() as v:
        await v.admin("POST", "/_sim/faults", {"http_5xx": 1.0})
        reply = await v.client.call("POST", "/api/v3/order", **MARKET_BUY,
                                    newClientOrderId="never-1")
        assert reply.status_code == 500 and reply.json()["code"] == -1001
        await v.admin("DELETE", "/_sim/faults")
        assert await v.admin("GET", "/_sim/orders") == []
        missing = await v.client.call("GET", "/api/v3/order", symbol="BTCUSDT",
                                      origClientOrderId="never-1")
        assert missing.json()["code"] == -2013


async def test_clock_skew_makes_host_timestamps_fail_with_1021() -> None:
    async with running() as v:
        await v.admin("POST", "/_sim/faults", {"clock_skew_ms": 10_000})
        venue_time = (await v.http.get("/api/v3/time")).json()["serverTime"]
        assert venue_time - now_ms() > 9_000
        old = await v.client.call("GET", "/api/v3/account")
        assert old.json() == {"code": -1021,
                              "msg": "Timestamp for this request is outside of the recvWindow."}
        synced = await v.client.call("GET", "/api/v3/account", timestamp=now_ms() + 10_000)
        assert synced.status_code == 200
        await v.admin("POST", "/_sim/faults", {"clock_skew_ms": -3_000})
        ahead = await v.client.call("GET", "/api/v3/account")
        assert ahead.json()["msg"] == (
            "Timestamp for this request was 1000ms ahead of the server's time.")


async def test_latency_delays_the_reply_after_acting() -> None:
    async with running() as v, trio_websocket.open_websocket_url(f"{v.ws}/ws-api/v3") as ws:
        await subscribe_user_data(ws, timestamp=now_ms())
        await v.admin("POST", "/_sim/faults", {"latency_ms": 300})
        reply: list[httpx.Response] = []

        async def place() -> None:
            reply.append(await v.client.call("POST", "/api/v3/order", **MARKET_BUY))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(place)
            first = (await next_json(ws))["event"]
            assert first["x"] == "NEW" and not reply  # the event beat the response
        assert trio.current_time() - started >= 0.3
        assert reply[0].status_code == 200


async def test_rate_limit_storm_and_forced_ban() -> None:
    async with running() as v:
        await v.admin("POST", "/_sim/faults", {"rate_limit_storm_s": 30})
        stormy = await v.http.get("/api/v3/ping")
        assert stormy.status_code == 429 and stormy.json()["code"] == -1003
        assert 29 <= int(stormy.headers["retry-after"]) <= 30
        await v.admin("DELETE", "/_sim/faults")
        assert (await v.http.get("/api/v3/ping")).status_code == 200
        await v.admin("POST", "/_sim/faults", {"ban_s": 60})
        banned = await v.http.get("/api/v3/ping")
        assert banned.status_code == 418 and int(banned.headers["retry-after"]) in (59, 60)
        await v.admin("DELETE", "/_sim/faults")
        assert (await v.http.get("/api/v3/ping")).status_code == 200


async def test_configured_storm_starts_with_the_venue() -> None:
    chaos = attrs.evolve(quiet_config().chaos, rate_limit_storm_s=60.0)
    async with running(quiet_config(chaos=chaos)) as v:
        assert (await v.http.get("/api/v3/ping")).status_code == 429
        await v.admin("DELETE", "/_sim/faults")
        assert (await v.http.get("/api/v3/ping")).status_code == 200


async def test_price_route_fills_a_resting_limit_order() -> None:
    async with running() as v:
        placed = await v.client.ok("POST", "/api/v3/order", symbol="ETHUSDT", side="SELL",
                                   type="LIMIT", timeInForce="GTC", quantity="1",
                                   price="2510")
        assert placed["status"] == "NEW"
        moved = await v.admin("POST", "/_sim/price", {"symbol": "ETHUSDT", "price": "2520.5"})
        assert moved == {"symbol": "ETHUSDT", "price": "2520.50"}
        after = await v.client.ok("GET", "/api/v3/order", symbol="ETHUSDT",
                                  orderId=placed["orderId"])
        assert (after["status"], after["executedQty"], after["cummulativeQuoteQty"]) == (
            "FILLED", "1.00000000", "2510.00000000")
        trades = await v.client.ok("GET", "/api/v3/myTrades", symbol="ETHUSDT")
        assert trades[0]["isMaker"] is True


async def test_admin_rejects_bad_fault_requests() -> None:
    async with running(quiet_config()) as v:
        bad = await v.http.post("/_sim/faults", json={"http_5xx": 2})
        assert bad.status_code == 400
        unknown = await v.http.post("/_sim/faults", json={"gremlins": 1})
        assert unknown.status_code == 400 and "gremlins" in unknown.json()["error"]
        price = await v.http.post("/_sim/price", json={"symbol": "DOGEUSDT", "price": "1"})
        assert price.status_code == 404
