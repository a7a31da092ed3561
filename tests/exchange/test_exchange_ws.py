"""WS-API session and stream pumps over real websockets (hypercorn on port 0, trio-websocket)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
from exchange_stub import SIM_KEY, SIM_SECRET, VenueStub, WsConn, start_stub

from spark.exchange.credentials import Credentials
from spark.exchange.errors import AuthError, MalformedFrame
from spark.exchange.events import ExecutionEvent, ListenKeyExpired, StreamTerminated, UserEvent
from spark.exchange.market import BookTicker, MarketEvent
from spark.exchange.signing import ws_payload
from spark.exchange.streams import (
    book_ticker_stream,
    futures_user_data_url,
    market_pump,
    market_stream_url,
    redact_url,
    trade_stream,
    user_data_pump,
)
from spark.exchange.venues import venue_profile
from spark.exchange.wsapi import WsApiSession, user_data_session
from spark.exchange.wsapi_codec import (
    WsApiResponse,
    decode_ws_api_frame,
    parse_ws_api_response,
    ping_request,
    session_logon_request,
    subscribe_request,
    subscribe_signature_request,
    time_request,
    unsubscribe_request,
)
from spark.exchange.wsconn import FrameBacklogFull, Inbound, open_ws

CREDS = Credentials.hmac(SIM_KEY, SIM_SECRET)
REPORT = {
    "e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "c-1", "S": "BUY", "o": "LIMIT",
    "f": "GTC", "q": "0.001", "p": "45000", "P": "0", "F": "0", "g": -1, "C": "", "x": "NEW",
    "X": "NEW", "r": "NONE", "i": 7, "l": "0", "z": "0", "L": "0", "n": "0", "N": None,
    "T": 1, "t": -1, "I": 11, "w": True, "m": False, "M": False, "O": 1, "Z": "0", "Y": "0",
    "Q": "0",
}


async def ws_api_venue(conn: WsConn, send: Any) -> None:
    """Enough of Binance's WS API for the client: signature check, subscribe, events."""
    while (text := await conn.recv()) is not None:
        req = orjson.loads(text)
        rid, method, params = req["id"], req["method"], req.get("params", {})
        if method == "userDataStream.subscribe.signature":
            expected = hmac.new(SIM_SECRET.encode(), ws_payload(params).encode(),
                                hashlib.sha256).hexdigest()
            if params.get("apiKey") != SIM_KEY or params.get("signature") != expected:
                await send(orjson.dumps({"id": rid, "status": 400, "error": {
                    "code": -1022, "msg": "Signature for this request is not valid."}}).decode())
                continue
            await send(orjson.dumps({"id": rid, "status": 200, "result": {"subscriptionId": 4},
                                     "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT",
                                                     "interval": "MINUTE", "intervalNum": 1,
                                                     "limit": 6000, "count": 2}]}).decode())
            await send(orjson.dumps({"subscriptionId": 4, "event": REPORT}).decode())
            await send("garbage that is not JSON")
            await send(orjson.dumps({"id": "nobody-asked", "status": 200, "result": {}}).decode())
        elif method == "userDataStream.unsubscribe":
            await send(orjson.dumps({"id": rid, "status": 200, "result": {}}).decode())
            await send(orjson.dumps({"subscriptionId": 4, "event": {
                "e": "eventStreamTerminated", "E": 2}}).decode())
        elif method == "time":
            await send(orjson.dumps({"id": rid, "status": 200,
                                     "result": {"serverTime": 1656400526260}}).decode())
        elif method == "ping":
            await send(orjson.dumps({"id": rid, "status": 200, "result": {}}).decode())


@pytest.fixture
async def stub(nursery: trio.Nursery) -> AsyncIterator[VenueStub]:
    s = await start_stub(nursery)
    s.ws_routes["/ws-api/v3"] = ws_api_venue
    yield s


async def test_subscribe_signature_then_events_arrive(stub: VenueStub) -> None:
    profile = venue_profile("sim", rest_url=stub.url)
    assert profile.ws_api_url == f"{stub.ws_url}/ws-api/v3"
    send, recv = trio.open_memory_channel[Inbound[UserEvent]](16)
    bad: list[MalformedFrame] = []
    async with user_data_session(profile.ws_api_url, CREDS, send, timestamp=lambda: 1,
                                 recv_window_ms=5000, on_malformed=bad.append) as (session, sub):
        assert sub == 4
        first = await recv.receive()
        assert isinstance(first.event, ExecutionEvent)
        assert first.event.client_order_id == "c-1" and first.event.subscription_id == 4
        assert first.received_ms > 1_600_000_000_000
        assert await session.server_time() == 1656400526260
        await session.ping()
        await session.unsubscribe(4)
        term = await recv.receive()
        assert term.event == StreamTerminated(2, 4)
        assert session.sink.malformed == 1 and len(bad) == 1
        assert session.unmatched_responses == 1
        assert session.sink.frames >= 5


async def test_bad_signature_is_an_auth_error(stub: VenueStub) -> None:
    wrong = Credentials.hmac(SIM_KEY, "not-the-secret")
    send, _recv = trio.open_memory_channel[Inbound[UserEvent]](4)
    with pytest.RaisesGroup(AuthError):
        async with user_data_session(f"{stub.ws_url}/ws-api/v3", wrong, send,
                                     timestamp=lambda: 1):
            pytest.fail("subscribed with a wrong secret")


async def test_reader_raises_backlog_full_instead_of_stalling(stub: VenueStub) -> None:
    async def flood(conn: WsConn, send: Any) -> None:
        for i in range(20):
            await send(orjson.dumps({"subscriptionId": 0, "event": dict(REPORT, I=i)}).decode())
        await trio.sleep(5)

    stub.ws_routes["/flood"] = flood
    send, _recv = trio.open_memory_channel[Inbound[UserEvent]](4)
    async with open_ws(f"{stub.ws_url}/flood") as ws:
        session = WsApiSession(ws, send)
        with pytest.raises(FrameBacklogFull):
            await session.run()
    assert session.sink.frames == 5  # four delivered, the fifth found the channel full


async def test_market_pump_decodes_combined_stream(stub: VenueStub) -> None:
    frames = [
        {"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", "b": "45000.1",
                                                  "B": "1.5", "a": "45000.2", "A": "0.3"}},
        {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 2, "s": "BTCUSDT", "t": 9,
                                             "p": "45000.15", "q": "0.01", "T": 2, "m": False}},
    ]
    queries: list[str] = []

    async def market(conn: WsConn, send: Any) -> None:
        queries.append(conn.query)
        for f in frames:
            await send(orjson.dumps(f).decode())
        await send("[]")
        await trio.sleep(5)

    stub.ws_routes["/stream"] = market
    profile = venue_profile("sim", rest_url=stub.url)
    url = market_stream_url(profile, [book_ticker_stream("BTCUSDT"), trade_stream("BTCUSDT")])
    assert url == f"{stub.ws_url}/stream?streams=btcusdt@bookTicker/btcusdt@trade"
    send, recv = trio.open_memory_channel[Inbound[MarketEvent]](8)
    pump = market_pump(send, on_malformed=lambda exc: None)
    async with open_ws(url) as ws, trio.open_nursery() as n:
        n.start_soon(pump.run, ws)
        got = [await recv.receive(), await recv.receive()]
        with trio.fail_after(2):
            while pump.sink.malformed == 0:
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
    assert queries == ["streams=btcusdt@bookTicker/btcusdt@trade"]
    assert isinstance(got[0].event, BookTicker) and got[0].event.stream == "btcusdt@bookTicker"
    assert got[1].event.symbol == "BTCUSDT"  # type: ignore[union-attr]
    assert pump.sink.frames == 3


async def test_futures_user_data_url_and_pump(stub: VenueStub) -> None:
    seen_query: list[str] = []

    async def private(conn: WsConn, send: Any) -> None:
        seen_query.append(conn.query)
        await send('{"e":"listenKeyExpired","E":"1736996475556","listenKey":"lk-9"}')
        await trio.sleep(5)

    stub.ws_routes["/private/ws"] = private
    profile = venue_profile("sim", rest_url=stub.url, sim_product="futures")
    url = futures_user_data_url(profile, "lk-9")
    assert url == (f"{stub.ws_url}/private/ws?listenKey=lk-9"
                   "&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/listenKeyExpired")
    assert "lk-9" not in redact_url(url)
    assert futures_user_data_url(venue_profile("futures"), "k", ["ORDER_TRADE_UPDATE"]) == (
        "wss://fstream.binance.com/private/ws?listenKey=k&events=ORDER_TRADE_UPDATE")
    send, recv = trio.open_memory_channel[Inbound[UserEvent]](4)
    pump = user_data_pump(send)
    async with open_ws(url) as ws, trio.open_nursery() as n:
        n.start_soon(pump.run, ws)
        got = await recv.receive()
        n.cancel_scope.cancel()
    assert got.event == ListenKeyExpired(1736996475556, "lk-9")
    assert seen_query == [
        "listenKey=lk-9&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/listenKeyExpired"]


def test_url_builders_refuse_nonsense() -> None:
    spot = venue_profile("spot")
    assert market_stream_url(spot, ["btcusdt@bookTicker"]) == (
        "wss://stream.binance.com:9443/ws/btcusdt@bookTicker")
    assert market_stream_url(venue_profile("futures"), ["btcusdt@bookTicker"]) == (
        "wss://fstream.binance.com/public/ws/btcusdt@bookTicker")
    with pytest.raises(ValueError):
        market_stream_url(spot, [])
    with pytest.raises(ValueError):
        market_stream_url(spot, ["btcusdt@bookTicker&evil=1"])
    with pytest.raises(ValueError):
        futures_user_data_url(spot, "k")


def test_ws_api_request_shapes() -> None:
    req = subscribe_signature_request("r-1", CREDS, 1700000000000, recv_window_ms=5000)
    msg = orjson.loads(req.to_json())
    assert msg["id"] == "r-1" and msg["method"] == "userDataStream.subscribe.signature"
    params = msg["params"]
    assert set(params) == {"apiKey", "timestamp", "recvWindow", "signature"}
    assert params["signature"] == hmac.new(
        SIM_SECRET.encode(),
        f"apiKey={SIM_KEY}&recvWindow=5000&timestamp=1700000000000".encode(),
        hashlib.sha256).hexdigest()
    assert SIM_SECRET not in repr(req)
    assert orjson.loads(unsubscribe_request("r-2", 3).to_json())["params"] == {
        "subscriptionId": 3}
    assert "params" not in orjson.loads(unsubscribe_request("r-3").to_json())
    logon = orjson.loads(session_logon_request("r-4", CREDS, 5).to_json())
    assert logon["method"] == "session.logon"
    assert set(logon["params"]) == {"apiKey", "timestamp", "signature"}
    for build, method in ((subscribe_request, "userDataStream.subscribe"),
                          (ping_request, "ping"), (time_request, "time")):
        assert orjson.loads(build("r-5").to_json()) == {"id": "r-5", "method": method}
    with pytest.raises(ValueError):
        subscribe_signature_request("r-6", CREDS, 1, recv_window_ms=0)


def test_ws_api_responses_and_routing() -> None:
    ok = decode_ws_api_frame(b'{"id":"a","status":200,"result":{"subscriptionId":0}}')
    assert isinstance(ok, WsApiResponse) and ok.subscription_id() == 0
    err = parse_ws_api_response({"id": "b", "status": 401, "error": {
        "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}})
    assert isinstance(err.error, AuthError) and err.error.code == -2015
    with pytest.raises(AuthError):
        err.subscription_id()
    banned = parse_ws_api_response({"id": 3, "status": 418, "error": {
        "code": -1003, "msg": "banned", "data": {"serverTime": 1, "retryAfter": 1659}}})
    assert banned.error is not None and banned.error.reason == "ip_banned"
    assert banned.retry_until_ms == 1659
    event = decode_ws_api_frame(orjson.dumps({"subscriptionId": 1, "event": REPORT}))
    assert isinstance(event, ExecutionEvent)
    for raw in (b"nope", b'{"id":"x","status":"200"}', b'{"id":[1],"status":200}'):
        with pytest.raises(MalformedFrame):
            decode_ws_api_frame(raw)
