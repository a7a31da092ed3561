"""RestClient against a real local HTTP server (hypercorn, Trio worker, port 0)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
from exchange_stub import SIM_KEY, SIM_SECRET, Reply, Seen, VenueStub, free_port_url, start_stub

from spark.core.clock import SystemClock
from spark.exchange.credentials import Credentials
from spark.exchange.errors import (
    IpBanned,
    MalformedResponse,
    RateLimited,
    TimestampError,
    TransportError,
    UnknownExecutionStatus,
    UnknownListenKey,
    VenueRejected,
)
from spark.exchange.hooks import NullObserver
from spark.exchange.models import OrderAck, OrderResult
from spark.exchange.rest import RestClient, RestConfig
from spark.exchange.venues import venue_profile

CREDS = Credentials.hmac(SIM_KEY, SIM_SECRET)
SERVER_MS = 1_700_000_000_000
# Our clock runs 5 s behind the venue's (the host's), so signing needs the measured offset.
BEHIND = SystemClock(offset_ms=-5_000)
ACK = {"symbol": "BTCUSDT", "orderId": 7, "orderListId": -1, "clientOrderId": "c-1",
       "transactTime": SERVER_MS}
ORDER = {"symbol": "BTCUSDT", "orderId": 7, "orderListId": -1, "clientOrderId": "c-1",
         "price": "45000.10", "origQty": "0.001", "executedQty": "0", "cummulativeQuoteQty": "0",
         "status": "NEW", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY",
         "stopPrice": "0", "icebergQty": "0", "time": 1, "updateTime": 1, "isWorking": True,
         "workingTime": 1, "origQuoteOrderQty": "0", "selfTradePreventionMode": "NONE"}


class Recorder(NullObserver):
    def __init__(self) -> None:
        self.sent: list[tuple[str, float, float]] = []
        self.responses: list[tuple[str, str]] = []
        self.weights: list[int] = []
        self.states: list[tuple[float | None, float | None]] = []

    def on_bytes_sent(self, endpoint: str, since_call_s: float, budget_wait_s: float) -> None:
        self.sent.append((endpoint, since_call_s, budget_wait_s))

    def on_response(self, endpoint: str, status: str, elapsed_s: float) -> None:
        self.responses.append((endpoint, status))

    def on_used_weight(self, used: int) -> None:
        self.weights.append(used)

    def on_rate_limit_state(self, blocked_until: float | None, banned_until: float | None) -> None:
        self.states.append((blocked_until, banned_until))


@pytest.fixture
async def stub(nursery: trio.Nursery) -> AsyncIterator[VenueStub]:
    s = await start_stub(nursery)
    s.server_time_ms = lambda: time.time_ns() // 1_000_000
    yield s


def make_client(stub: VenueStub, **config: Any) -> tuple[RestClient, Recorder]:
    rec = Recorder()
    cfg = RestConfig(**{"read_timeout_s": 2.0, **config})
    client = RestClient(venue_profile("sim", rest_url=stub.url), CREDS, config=cfg,
                        observer=rec, clock=BEHIND)
    return client, rec


async def place(client: RestClient, cid: str = "c-1") -> OrderAck | OrderResult:
    return await client.place_order("BTCUSDT", "BUY", "LIMIT", new_client_order_id=cid,
                                    quantity=Decimal("0.001"), price=Decimal("45000.10"),
                                    time_in_force="GTC")


async def test_signed_order_on_the_wire_and_weight_headers(stub: VenueStub) -> None:
    stub.reply("POST", "/api/v3/order", Reply(body=ACK, headers=(
        ("X-MBX-USED-WEIGHT-1M", "17"), ("X-MBX-ORDER-COUNT-10S", "1"),
        ("X-MBX-ORDER-COUNT-1D", "1"))))
    client, rec = make_client(stub)
    async with client:
        ack = await place(client)
        assert ack == OrderAck("BTCUSDT", 7, "c-1", SERVER_MS, -1)
        # Our clock is 5 s behind the server: the offset was measured before signing.
        assert abs(client.time_offset.offset_ms - 5_000) < 500
        sent = stub.requests("POST", "/api/v3/order")[0]
        assert sent.signature_ok()
        assert sent.headers["x-mbx-apikey"] == SIM_KEY
        assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
        assert sent.query == ""
        assert abs(int(sent.params()["timestamp"]) - time.time_ns() // 1_000_000) < 1_000
        assert sent.params()["recvWindow"] == "5000"
        now = client.server_now_s()
        assert client.budget.used_weight(now) == 17
        assert client.budget.own_usage(now, "orders", "10S") == 1
    assert rec.weights[-1] == 17
    assert ("spot.order.place", "200") in rec.responses
    endpoint, since_call, waited = rec.sent[-1]
    assert endpoint == "spot.order.place" and 0 < since_call < 5 and waited == 0


async def test_get_query_string_arrives_exactly_as_signed(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/order", Reply(body=ORDER))
    client, _ = make_client(stub)
    async with client:
        status = await client.query_order("BTCUSDT", orig_client_order_id="c-1")
    assert status.client_order_id == "c-1" and status.price == Decimal("45000.10")
    seen = stub.requests("GET", "/api/v3/order")[0]
    assert re.fullmatch(
        r"symbol=BTCUSDT&origClientOrderId=c-1&recvWindow=5000&timestamp=\d{13}"
        r"&signature=[0-9a-f]{64}", seen.query)
    assert seen.signature_ok() and seen.body == b""


async def test_429_retry_after_blocks_the_next_request(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/openOrders",
               Reply(429, {"code": -1003, "msg": "Too many requests"},
                     headers=(("Retry-After", "1"),)),
               Reply(body=[ORDER]))
    client, rec = make_client(stub)
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.open_orders("BTCUSDT")
        assert info.value.retry_after_s == 1 and not info.value.local
        assert client.blocked_until is not None
        first = stub.requests("GET", "/api/v3/openOrders")[0].at
        orders = await client.open_orders("BTCUSDT")
        second = stub.requests("GET", "/api/v3/openOrders")[1].at
    assert len(orders) == 1
    assert second - first >= 0.95  # waited for Retry-After before sending
    assert rec.states and rec.states[0][0] is not None


async def test_429_with_a_long_retry_after_is_refused_locally(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/account",
               Reply(429, {"code": -1003, "msg": "slow down"}, headers=(("Retry-After", "30"),)))
    client, _ = make_client(stub, max_budget_wait_s=0.5)
    async with client:
        with pytest.raises(RateLimited):
            await client.account()
        with pytest.raises(RateLimited) as info:
            await client.account()
    assert info.value.local and info.value.retry_after_s is not None
    assert len(stub.requests("GET", "/api/v3/account")) == 1  # second never left


async def test_418_ban_blocks_and_is_exposed(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/account",
               Reply(418, {"code": -1003, "msg": "IP banned"}, headers=(("Retry-After", "1"),)),
               Reply(body={"canTrade": True, "updateTime": 1, "accountType": "SPOT",
                           "balances": [], "permissions": ["SPOT"]}))
    short, rec = make_client(stub, max_budget_wait_s=0.2)
    async with short:
        with pytest.raises(IpBanned) as info:
            await short.account()
        banned = short.banned_until
        assert banned is not None and info.value.until == banned
        assert rec.states[-1][1] == banned
        with pytest.raises(IpBanned):  # refused without touching the venue
            await short.account()
        assert len(stub.requests("GET", "/api/v3/account")) == 1
        # A caller willing to wait is held until the ban lifts, then goes through.
        patient = RestClient(short.profile, CREDS, budget=short.budget,
                             time_offset=short.time_offset, clock=BEHIND,
                             config=RestConfig(max_budget_wait_s=5))
        async with patient:
            account = await patient.account()
    assert account.can_trade
    first, second = stub.requests("GET", "/api/v3/account")
    assert second.at - first.at >= 0.95  # held until the ban lifted


async def test_minus_1021_resyncs_time_and_retries_once(stub: VenueStub) -> None:
    stub.reply("POST", "/api/v3/order",
               Reply(400, {"code": -1021, "msg": "Timestamp for this request is outside of "
                                                 "the recvWindow."}),
               Reply(body=ACK))
    client, _ = make_client(stub)
    async with client:
        assert isinstance(await place(client), OrderAck)
    assert len(stub.requests("GET", "/api/v3/time")) == 2  # initial sync + resync
    assert len(stub.requests("POST", "/api/v3/order")) == 2
    assert all(s.signature_ok() for s in stub.requests("POST", "/api/v3/order"))


async def test_minus_1021_twice_is_raised_after_exactly_one_retry(stub: VenueStub) -> None:
    stub.reply("POST", "/api/v3/order", Reply(400, {"code": -1021, "msg": "ahead"}))
    client, _ = make_client(stub)
    async with client:
        with pytest.raises(TimestampError):
            await place(client)
    assert len(stub.requests("POST", "/api/v3/order")) == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, b"<html>Internal error</html>"),
        Reply(503, {"code": -1008, "msg": "Server is currently overloaded"}),
        Reply(408, {"code": -1007, "msg": "Timeout waiting for response from backend"}),
        Reply(200, b"{not json"),
    ],
)
async def test_unknown_outcomes_are_never_retried(stub: VenueStub, reply: Reply) -> None:
    stub.reply("POST", "/api/v3/order", reply)
    client, _ = make_client(stub)
    async with client:
        with pytest.raises(UnknownExecutionStatus) as info:
            await place(client)
    assert len(stub.requests("POST", "/api/v3/order")) == 1
    if reply.body == b"{not json":
        assert isinstance(info.value, MalformedResponse)


async def test_read_timeout_after_sending_is_unknown_and_not_retried(stub: VenueStub) -> None:
    stub.reply("POST", "/api/v3/order", Reply(body=ACK, delay_s=0.6))
    client, rec = make_client(stub, read_timeout_s=0.2)
    async with client:
        with pytest.raises(UnknownExecutionStatus):
            await place(client)
    await trio.sleep(0.5)  # let the stub finish; it must still have seen only one order
    assert len(stub.requests("POST", "/api/v3/order")) == 1
    assert ("spot.order.place", "timeout") in rec.responses


async def test_rejection_keeps_venue_code_and_message(stub: VenueStub) -> None:
    stub.reply("POST", "/api/v3/order",
               Reply(400, {"code": -2010, "msg": "Account has insufficient balance."}))
    client, _ = make_client(stub)
    async with client:
        with pytest.raises(VenueRejected) as info:
            await place(client)
    assert (info.value.code, info.value.reason) == (-2010, "order_rejected")
    assert "insufficient balance" in str(info.value)
    assert "signature" not in str(info.value) and SIM_KEY not in str(info.value)
    assert len(stub.requests("POST", "/api/v3/order")) == 1


async def test_connect_refused_is_a_transport_error() -> None:
    client = RestClient(venue_profile("sim", rest_url=free_port_url()), CREDS,
                        config=RestConfig(connect_timeout_s=1))
    async with client:
        with pytest.raises(TransportError):
            await client.server_time()
        with pytest.raises(TransportError):  # the time sync fails before the order is built
            await place(client)


async def test_in_flight_bound_holds(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/order", Reply(body=ORDER, delay_s=0.15))
    client, _ = make_client(stub, max_in_flight=3, pool_size=4)
    results: list[Any] = []

    async def one() -> None:
        results.append(await client.query_order("BTCUSDT", order_id=7))

    async with client:
        await client.sync_time()
        async with trio.open_nursery() as n:
            for _ in range(12):
                n.start_soon(one)
    assert len(results) == 12
    assert stub.max_in_flight == 3


async def test_pool_exhaustion_recreates_the_client(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/order", Reply(body=ORDER))
    stub.reply("GET", "/hang", Reply(body={}, delay_s=30))
    client, _ = make_client(stub, max_in_flight=1, pool_size=2, pool_timeout_s=0.2,
                            pool_timeouts_before_reset=2)
    async with client, trio.open_nursery() as n:
        await client.sync_time()
        # Occupy every pool slot behind the client's back, as leaked slots would.
        leaked = client._http

        async def hog() -> None:
            # Closing the stuck client fails whatever was still using it; that is expected.
            with pytest.raises(httpx.HTTPError):
                await leaked.get("/hang")

        for _ in range(2):
            n.start_soon(hog)
        with trio.fail_after(5):
            while stub.in_flight < 2:
                await trio.sleep(0.01)
        for _ in range(2):
            with pytest.raises(TransportError, match="pool"):
                await client.query_order("BTCUSDT", order_id=7)
        assert client.client_resets == 1 and client._http is not leaked
        status = await client.query_order("BTCUSDT", order_id=7)
        assert status.order_id == 7
        n.cancel_scope.cancel()


async def test_futures_listen_key_lifecycle(stub: VenueStub) -> None:
    stub.reply("POST", "/fapi/v1/listenKey", Reply(body={"listenKey": "lk-1"}))
    stub.reply("PUT", "/fapi/v1/listenKey", Reply(body={}),
               Reply(400, {"code": -1125, "msg": "This listenKey does not exist."}))
    stub.reply("DELETE", "/fapi/v1/listenKey", Reply(body={}))
    client = RestClient(venue_profile("sim", rest_url=stub.url, sim_product="futures"), CREDS)
    async with client:
        assert await client.futures_create_listen_key() == "lk-1"
        assert await client.futures_keepalive_listen_key() is None
        with pytest.raises(UnknownListenKey):
            await client.futures_keepalive_listen_key()
        await client.futures_close_listen_key()
    for seen in stub.seen:
        assert seen.headers["x-mbx-apikey"] == SIM_KEY
        assert "signature" not in seen.query and not seen.body
    assert not stub.requests("GET", "/fapi/v1/time")  # USER_STREAM needs no clock


async def test_futures_order_uses_futures_paths(stub: VenueStub) -> None:
    async def order(seen: Seen) -> Reply:
        p = seen.params()
        return Reply(body={"symbol": p["symbol"], "orderId": 9, "clientOrderId":
                           p["newClientOrderId"], "price": p["price"], "origQty": p["quantity"],
                           "executedQty": "0", "cumQuote": "0", "avgPrice": "0",
                           "status": "NEW", "timeInForce": "GTC", "type": "LIMIT",
                           "side": p["side"], "updateTime": SERVER_MS, "reduceOnly": False,
                           "positionSide": "BOTH"})

    stub.handle("POST", "/fapi/v1/order", order)
    client = RestClient(venue_profile("sim", rest_url=stub.url, sim_product="futures"), CREDS,
                        clock=BEHIND)
    async with client:
        result = await client.futures_place_order(
            "BTCUSDT", "SELL", "LIMIT", new_client_order_id="f-1", quantity=Decimal("0.002"),
            price=Decimal("60000"), time_in_force="GTC")
    assert isinstance(result, OrderResult) and result.client_order_id == "f-1"
    assert stub.requests("GET", "/fapi/v1/time")  # futures time endpoint for the offset
    assert stub.requests("POST", "/fapi/v1/order")[0].signature_ok()


async def test_exchange_info_configures_the_budget(stub: VenueStub) -> None:
    stub.reply("GET", "/api/v3/exchangeInfo", Reply(body={
        "serverTime": SERVER_MS,
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                        "intervalNum": 1, "limit": 1200},
                       {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                        "limit": 50}],
        "symbols": [],
    }))
    client, _ = make_client(stub)
    async with client:
        await client.exchange_info()
    assert client.budget.limits("weight") == {"1M": 1200}
    assert client.budget.limits("orders") == {"10S": 50}


async def test_a_failing_observer_never_fails_a_placed_order(stub: VenueStub) -> None:
    class Broken(NullObserver):
        def on_response(self, endpoint: str, status: str, elapsed_s: float) -> None:
            raise RuntimeError("metrics bug")

        def on_used_weight(self, used: int) -> None:
            raise RuntimeError("metrics bug")

    stub.reply("POST", "/api/v3/order", Reply(body=ACK))
    client = RestClient(venue_profile("sim", rest_url=stub.url), CREDS, observer=Broken(),
                        clock=BEHIND)
    async with client:
        assert isinstance(await place(client), OrderAck)
