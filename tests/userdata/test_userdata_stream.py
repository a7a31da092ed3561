"""User-data readers against the simulated venue: events, drops, stalls, expiry, shutdown."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from userdata_helpers import (
    CREDS,
    FAST_TUNING,
    FAST_WS,
    QUICK_STALL_WS,
    Link,
    is_down,
    is_up,
    new_metrics,
    run_link,
    sample,
    sim_venue,
)

from spark.actors.keeper import FuturesKeeper, ListenKeyGrant
from spark.actors.messages import StreamDown, StreamUp, UserEvents, UserStreamItem
from spark.actors.streamio import StreamCounters
from spark.actors.user_stream import FuturesUserStream, StreamTuning
from spark.config.schema import ListenKeyConfig
from spark.core.listenkey import KeyExpired
from spark.core.published import Published
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import ExecutionEvent
from spark.exchange.rest import RestClient
from spark.supervision import ChildContext

PRODUCTS = ["spot", "futures"]


def trade_view(e: ExecutionEvent) -> dict[str, Any]:
    return {"symbol": e.symbol, "id": e.trade_id, "clientOrderId": e.client_order_id,
            "orderId": e.order_id, "price": e.last_price, "qty": e.last_qty,
            "commission": e.commission, "commissionAsset": e.commission_asset}


def venue_trade_view(t: dict[str, Any]) -> dict[str, Any]:
    return {"symbol": t["symbol"], "id": t["id"], "clientOrderId": t["clientOrderId"],
            "orderId": t["orderId"], "price": Decimal(t["price"]), "qty": Decimal(t["qty"]),
            "commission": Decimal(t["commission"]), "commissionAsset": t["commissionAsset"]}


def trades_of(events: list[ExecutionEvent]) -> list[ExecutionEvent]:
    return [e for e in events if e.is_trade]


async def assert_matches_venue(link: Link, sim: Any, cids: list[str]) -> None:
    """Every trade and every order's final state as the venue's ground truth has it."""
    truth_trades = [t for t in await sim.trades(link.product) if t["clientOrderId"] in cids]
    truth_orders = {o["clientOrderId"]: o for o in await sim.orders(link.product)
                    if o["clientOrderId"] in cids}
    assert len(truth_orders) == len(cids)

    def complete(events: list[ExecutionEvent]) -> bool:
        final = {e.client_order_id: e for e in events}
        return len(trades_of(events)) >= len(truth_trades) and all(
            cid in final and final[cid].order_status == o["status"]
            for cid, o in truth_orders.items())

    events = [e for e in await link.executions(complete) if e.client_order_id in cids]
    got = sorted((trade_view(e) for e in trades_of(events)), key=lambda t: t["id"])
    want = sorted((venue_trade_view(t) for t in truth_trades), key=lambda t: t["id"])
    assert got == want
    last: dict[str, ExecutionEvent] = {}
    for e in events:
        last[e.client_order_id] = e
    for cid, order in truth_orders.items():
        assert last[cid].order_status == order["status"]
        assert last[cid].cum_qty == Decimal(order["executedQty"])
        assert last[cid].order_id == order["orderId"]


@pytest.mark.parametrize("product", PRODUCTS)
async def test_events_arrive_exactly_as_the_venue_reports_them(product: str) -> None:
    async with sim_venue() as sim, run_link(sim, product) as link:
        first = await link.next_item()
        assert isinstance(first, StreamUp) and first.gap  # first subscription: reconcile
        cids = [await link.market_order(qty="0.002") for _ in range(3)]
        cids.append(await link.market_order("ETHUSDT", "SELL", "0.01"))
        await assert_matches_venue(link, sim, cids)
        # Batches carry the connection they came from and the time the first frame arrived.
        batches = [i for i in link.items if isinstance(i, UserEvents)]
        assert batches and all(b.connection == first.connection for b in batches)
        m = link.metrics
        assert sample(m, "spark_ws_connected", stream="user") == 1
        assert sample(m, "spark_ingest_lag_seconds_count") >= len(link.execution_events())
        assert sample(m, "spark_ws_malformed_total", stream="user") == 0
    last = link.notices()[-1]
    assert isinstance(last, StreamDown) and last.connection == first.connection
    assert last.reason == ("shutdown" if product == "spot" else "stop")
    assert sample(link.metrics, "spark_ws_messages_total", stream="user") >= len(
        link.execution_events())
    assert sample(link.metrics, "spark_ws_connected", stream="user") == 0


@pytest.mark.parametrize("product", PRODUCTS)
async def test_drop_gives_stream_down_then_up_with_gap_and_later_events_arrive(
        product: str) -> None:
    async with sim_venue() as sim, run_link(sim, product) as link:
        up = await link.until(is_up())
        before = [await link.market_order()]
        await assert_matches_venue(link, sim, before)
        await sim.admin("POST", "/_sim/ws/drop")
        down = await link.until(is_down)
        assert isinstance(down, StreamDown) and down.connection == up.connection
        again = await link.until(is_up())
        assert isinstance(again, StreamUp) and again.gap and again.connection != up.connection
        after = [await link.market_order("ETHUSDT", qty="0.01") for _ in range(2)]
        await assert_matches_venue(link, sim, after)
        assert sample(link.metrics, "spark_ws_reconnect_total", stream="user") >= 1


async def test_spot_stall_is_detected_by_the_ws_api_ping_and_reconnects() -> None:
    # The venue holds every user-data frame (answers included) while TCP and pings go on.
    ws = QUICK_STALL_WS
    async with sim_venue() as sim, run_link(sim, "spot", ws=ws) as link:
        up = await link.until(is_up())
        await sim.admin("POST", "/_sim/ws/stall", {"duration_s": ws.stall_timeout_s * 2})
        started = trio.current_time()
        down = await link.until(is_down, timeout=ws.stall_timeout_s * 3)
        assert isinstance(down, StreamDown) and down.reason == "stall"
        assert down.connection == up.connection
        assert trio.current_time() - started >= ws.stall_timeout_s * 0.9
        again = await link.until(is_up(gap=True), timeout=ws.stall_timeout_s * 6)
        assert isinstance(again, StreamUp)
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])


@pytest.mark.parametrize("product", PRODUCTS)
async def test_a_healthy_idle_connection_is_not_reconnected(product: str) -> None:
    ws = QUICK_STALL_WS
    async with sim_venue() as sim, run_link(sim, product, ws=ws) as link:
        up = await link.until(is_up())
        # Two and a half stall timeouts without a single event: probes keep the connection.
        with trio.move_on_after(ws.stall_timeout_s * 2.5):
            item = await link.next_item(timeout=100)
            pytest.fail(f"unexpected {item!r} on an idle connection")
        assert link.user.stats.connected
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])
        assert link.notices() == [up]
        assert sample(link.metrics, "spark_ws_reconnect_total", stream="user") == 0


async def test_futures_listen_key_expiry_creates_a_new_key_and_reconnects() -> None:
    async with sim_venue() as sim, run_link(sim, "futures") as link:
        up = await link.until(is_up())
        key = link.listen_key()
        assert key is not None
        await sim.admin("POST", "/_sim/listenkeys/expire")
        down = await link.until(is_down)
        assert isinstance(down, StreamDown) and down.reason == "listen_key_expired"
        again = await link.until(is_up(gap=True))
        assert isinstance(again, StreamUp) and again.connection != up.connection
        assert link.listen_key() not in (None, key)
        assert sample(link.metrics, "spark_listenkey_renewals_total") == 1
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])


async def test_spot_subscription_termination_resubscribes_on_a_new_connection() -> None:
    async with sim_venue() as sim, run_link(sim, "spot") as link:
        up = await link.until(is_up())
        await sim.admin("POST", "/_sim/listenkeys/expire")
        down = await link.until(is_down)
        assert isinstance(down, StreamDown) and down.connection == up.connection
        again = await link.until(is_up(gap=True))
        assert isinstance(again, StreamUp) and again.connection != up.connection
        assert sample(link.metrics, "spark_listenkey_renewals_total") == 1
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])


async def test_spot_server_shutdown_hands_over_early_without_a_gap() -> None:
    async with sim_venue() as sim, run_link(sim, "spot") as link:
        up = await link.until(is_up())
        started = trio.current_time()
        await sim.admin("POST", "/_sim/server-shutdown")
        new = await link.until(is_up())
        assert isinstance(new, StreamUp) and not new.gap and new.connection != up.connection
        down = await link.until(is_down)
        assert isinstance(down, StreamDown) and down.connection == up.connection
        # Early: well before a stall timeout or a backoff would have reconnected.
        assert trio.current_time() - started < 1.0  # stall timeout 3 s, backoff: no wait
        assert sample(link.metrics, "spark_listenkey_keepalive_total") >= 1
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])


async def test_spot_keepalive_check_counts_session_status() -> None:
    lk = ListenKeyConfig(keepalive_interval_s=0.3, retry_initial_s=0.05, retry_max_s=0.5)
    async with sim_venue() as sim, run_link(sim, "spot", listenkey=lk) as link:
        await link.until(is_up())
        await trio.sleep(1.2)
        checks = sample(link.metrics, "spark_listenkey_keepalive_total")
        assert checks >= 2
        assert link.keeper.stats.checks == checks
        assert link.notices()[-1].__class__ is StreamUp  # no reconnect caused by the checks


async def test_futures_keepalive_puts_are_counted() -> None:
    lk = ListenKeyConfig(keepalive_interval_s=0.3, retry_initial_s=0.05, retry_max_s=0.5)
    async with sim_venue() as sim:
        async with run_link(sim, "futures", listenkey=lk) as link:
            await link.until(is_up())
            key = link.listen_key()
            await trio.sleep(1.2)
            assert sample(link.metrics, "spark_listenkey_keepalive_total") >= 2
            assert sample(link.metrics, "spark_listenkey_renewals_total") == 0
            assert link.listen_key() == key
        # The polite stop deleted the key: the venue no longer knows it.
        assert link.listen_key() is None
        response = await sim.admin_http.put("/fapi/v1/listenKey",
                                            headers={"X-MBX-APIKEY": "sim-key"})
        assert response.status_code == 400 and response.json()["code"] == -1125


async def test_futures_keepalive_answered_minus_1125_renews_the_key() -> None:
    # The keeper alone (no socket to hear listenKeyExpired): the next PUT learns it.
    lk = ListenKeyConfig(keepalive_interval_s=0.2, retry_initial_s=0.05, retry_max_s=0.5)
    metrics = new_metrics()
    async with sim_venue() as sim, RestClient(sim.profile("futures"), CREDS) as rest:
        keeper = FuturesKeeper(rest, lk, metrics, heartbeat_s=0.1)
        ctx = ChildContext("keeper")
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run, ctx)
            with trio.fail_after(5):
                _, first = await keeper.grant.wait_changed(0)
            assert first is not None
            await sim.admin("POST", "/_sim/listenkeys/expire")
            with trio.fail_after(5):
                _, second = await keeper.grant.wait_changed(keeper.grant.version)
            assert second is not None and first is not None and second.key != first.key
            assert second.generation > first.generation
            assert sample(metrics, "spark_listenkey_renewals_total") == 1
            ctx.request_stop()
        assert keeper.grant.value is None


async def test_malformed_frame_logs_carry_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    counters = StreamCounters(new_metrics(), "user")
    raw = '{"e":"listenKeyExpired","E":"x","listenKey":"pqJKmZ0secretKEY123"}' + "x" * 500
    with caplog.at_level("WARNING"):
        counters.malformed_frame(MalformedFrame("bad", raw), "futures-user-1")
    assert counters.malformed == 1
    text = caplog.text
    assert "malformed frame" in text and "pqJKmZ0secretKEY123" not in text
    assert len(text) < 400  # truncated


async def test_futures_socket_refused_for_its_key_reports_it_and_waits_for_a_new_grant(
) -> None:


    grants = Published[ListenKeyGrant | None](ListenKeyGrant("not-a-key", 1))
    send, receive = trio.open_memory_channel[UserStreamItem](8)
    reports_send, reports = trio.open_memory_channel[KeyExpired](8)
    async with sim_venue() as sim, RestClient(sim.profile("futures"), CREDS) as rest:
        reader = FuturesUserStream(profile=sim.profile("futures"), grants=grants,
                                   keeper_events=reports_send, out=send, ws=FAST_WS,
                                   metrics=new_metrics(), tuning=FAST_TUNING)
        ctx = ChildContext("user_stream")
        async with trio.open_nursery() as nursery:
            await nursery.start(reader.run, ctx)
            with trio.fail_after(5):
                assert await reports.receive() == KeyExpired("not-a-key")
            # The reader does not retry a refused grant on its own ...
            with trio.move_on_after(0.5):
                await reports.receive()
                pytest.fail("retried a refused grant")
            # ... but does retry when the keeper hands the key out again (a new generation),
            grants.set(ListenKeyGrant("not-a-key", 2))
            with trio.fail_after(5):
                assert await reports.receive() == KeyExpired("not-a-key")
            # and connects with a key the venue knows.
            grants.set(ListenKeyGrant(await rest.futures_create_listen_key(), 3))
            with trio.fail_after(5):
                up = await receive.receive()
            assert isinstance(up, StreamUp) and up.gap
            ctx.request_stop()


async def test_spot_subscribe_pending_on_a_stalled_socket_fails_at_once() -> None:
    # The venue holds everything for 3 stall timeouts: the replacement connection's subscribe
    # request is pending when that socket is called stalled too. The request must fail with
    # its connection, not after the session's request timeout (10 s here).
    ws = QUICK_STALL_WS
    tuning = StreamTuning(heartbeat_s=0.5, connect_timeout_s=5.0, request_timeout_s=10.0)
    async with sim_venue() as sim, run_link(sim, "spot", ws=ws, tuning=tuning) as link:
        await link.until(is_up())
        await sim.admin("POST", "/_sim/ws/stall", {"duration_s": 3 * ws.stall_timeout_s})
        resumes = trio.current_time() + 3 * ws.stall_timeout_s
        again = await link.until(is_up(gap=True), timeout=10)
        assert isinstance(again, StreamUp)
        assert trio.current_time() - resumes < 2.0
        assert link.keeper.stats.failures >= 1  # a subscribe failed with its socket
        cid = await link.market_order()
        await assert_matches_venue(link, sim, [cid])
