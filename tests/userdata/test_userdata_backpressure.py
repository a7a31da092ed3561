"""A slow router and malformed frames: backpressure holds, nothing is lost, the reader survives."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import orjson
import pytest
import trio
import trio_websocket
from userdata_helpers import FAST_WS, is_up, new_metrics, run_link, sample, sim_venue

from spark.actors.keeper import ListenKeyGrant
from spark.actors.messages import StreamDown, StreamUp, UserEvents, UserStreamItem
from spark.actors.user_stream import FuturesUserStream, StreamTuning
from spark.config.schema import WsConfig
from spark.core.listenkey import KeyExpired
from spark.core.published import Published
from spark.exchange.events import ExecutionEvent
from spark.exchange.venues import venue_profile
from spark.supervision import ChildContext


@pytest.mark.parametrize("product", ["spot", "futures"])
async def test_slow_consumer_backpressure_holds_and_no_event_is_lost(product: str) -> None:
    # A router channel of one batch, batches of 4, and a reader buffer of 16 events: a burst of
    # a hundred-odd events must back up through all of them and still arrive complete.
    ws = WsConfig(stall_timeout_s=5.0, backoff_initial_s=0.05, backoff_max_s=0.5, inbox_size=16)
    tuning = StreamTuning(batch_max=4, heartbeat_s=0.5, request_timeout_s=2.0)
    async with sim_venue() as sim, run_link(sim, product, ws=ws, tuning=tuning,
                                            channel_size=1) as link:
        await link.until(is_up())
        cids = [await link.market_order(qty="0.001") for _ in range(30)]
        truth_trades = [t for t in await sim.trades(product) if t["clientOrderId"] in cids]
        # Consume slowly until every order is final and every trade is in.
        with trio.fail_after(30):
            while True:
                events = link.execution_events()
                final = {e.client_order_id for e in events if e.order_status == "FILLED"}
                trades = [e for e in events if e.is_trade]
                if final >= set(cids) and len(trades) >= len(truth_trades):
                    break
                await link.next_item()
                await trio.sleep(0.005)
        user = link.user
        assert user.stats.backlog_pauses >= 1  # the reader buffer really filled up
        raw = [e for i in link.items if isinstance(i, UserEvents) for e in i.events
               if isinstance(e, ExecutionEvent)]
        # No loss and no copies: every execution report exactly once.
        assert len(raw) == len({e.execution_id for e in raw})
        assert {(e.symbol, e.trade_id) for e in raw if e.is_trade} == {
            (t["symbol"], t["id"]) for t in truth_trades}
        news = Counter(e.client_order_id for e in raw if e.execution_type == "NEW")
        assert all(news[c] == 1 for c in cids)
        assert all(len(i.events) <= 4 for i in link.items if isinstance(i, UserEvents))
        # Backpressure, not a reconnect: the connection never went down.
        assert [type(n) for n in link.notices()] == [StreamUp]


REPORT = {
    "e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "c-1", "S": "BUY", "o": "LIMIT",
    "f": "GTC", "q": "0.001", "p": "45000", "P": "0", "F": "0", "g": -1, "C": "", "x": "NEW",
    "X": "NEW", "r": "NONE", "i": 7, "l": "0", "z": "0", "L": "0", "n": "0", "N": None,
    "T": 1, "t": -1, "I": 11, "w": True, "m": False, "M": False, "O": 1, "Z": "0", "Y": "0",
    "Q": "0",
}


async def test_malformed_frames_are_counted_and_the_reader_survives() -> None:
    # The simulated venue never sends garbage, so a minimal websocket server does, on the
    # futures user-data path the reader connects to.
    frames = [
        orjson.dumps(REPORT).decode(),
        "this is not JSON",
        orjson.dumps({**REPORT, "i": "seven", "listenKey": "secret-key"}).decode(),
        orjson.dumps([1, 2, 3]).decode(),
        orjson.dumps({**REPORT, "I": 12, "x": "CANCELED", "X": "CANCELED"}).decode(),
    ]
    seen_paths: list[str] = []

    async def handler(request: Any) -> None:
        ws = await request.accept()
        seen_paths.append(request.path)
        for frame in frames:
            await ws.send_message(frame)
        await trio.sleep_forever()

    metrics = new_metrics()
    send, receive = trio.open_memory_channel[UserStreamItem](16)
    keeper_send, _keeper_receive = trio.open_memory_channel[KeyExpired](4)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     None)
        port = server.port
        profile = venue_profile("sim", rest_url=f"http://127.0.0.1:{port}",
                                sim_product="futures")
        reader = FuturesUserStream(profile=profile, grants=one_grant("k1"),
                                   keeper_events=keeper_send, out=send, ws=FAST_WS,
                                   metrics=metrics,
                                   tuning=StreamTuning(heartbeat_s=0.2))
        ctx = ChildContext("user_stream")
        await nursery.start(reader.run, ctx)
        got: list[ExecutionEvent] = []
        with trio.fail_after(5):
            first = await receive.receive()
            assert isinstance(first, StreamUp) and first.gap
            while len(got) < 2:
                item = await receive.receive()
                assert isinstance(item, UserEvents)
                got.extend(e for e in item.events if isinstance(e, ExecutionEvent))
        assert [(e.execution_id, e.order_status) for e in got] == [("11", "NEW"),
                                                                   ("12", "CANCELED")]
        assert sample(metrics, "spark_ws_malformed_total", stream="user") == 3
        assert reader.stats.connected
        assert seen_paths and seen_paths[0].startswith("/private/ws?listenKey=k1&events=")
        ctx.request_stop()
        with trio.fail_after(5):
            last = await receive.receive()
        assert isinstance(last, StreamDown) and last.reason == "stop"
        assert sample(metrics, "spark_ws_messages_total", stream="user") == len(frames)
        nursery.cancel_scope.cancel()


async def test_router_too_far_behind_gives_the_connection_up_and_loses_nothing() -> None:
    # The reader may pause only briefly (so trio-websocket keeps answering pings); past that it
    # closes the connection (StreamDown "backlog"), delivers what it read, and reconnects with a
    # gap for the router to reconcile. Every event read off the socket still arrives once.
    ws = WsConfig(stall_timeout_s=5.0, backoff_initial_s=0.05, backoff_max_s=0.5, inbox_size=8)
    tuning = StreamTuning(batch_max=4, heartbeat_s=0.2, request_timeout_s=2.0,
                          pause_limit_s=0.2)
    async with sim_venue() as sim, run_link(sim, "futures", ws=ws, tuning=tuning,
                                            channel_size=1) as link:
        first = await link.until(is_up())
        cids = [await link.market_order(qty="0.001") for _ in range(12)]
        await trio.sleep(1.0)  # the router (this test) looks away
        down = await link.until(lambda i: isinstance(i, StreamDown))
        assert isinstance(down, StreamDown) and down.reason == "backlog"
        assert down.connection == first.connection
        again = await link.until(is_up(gap=True))
        assert isinstance(again, StreamUp) and again.connection != first.connection
        raw = [e for i in link.items if isinstance(i, UserEvents) for e in i.events
               if isinstance(e, ExecutionEvent)]
        assert raw and len(raw) == len({e.execution_id for e in raw})
        assert {e.client_order_id for e in raw} <= set(cids)
        assert link.user.stats.backlog_pauses >= 1


async def test_futures_silent_socket_is_found_by_unanswered_pings() -> None:
    # A server that completes the handshake and then never reads again: no pongs. The reader
    # must notice within the stall timeout and reconnect (to the same silent server here).
    import wsproto
    from wsproto.events import AcceptConnection, Request

    accepted: list[float] = []

    async def silent(stream: trio.SocketStream) -> None:
        conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            conn.receive_data(await stream.receive_some(4096))
            if any(isinstance(e, Request) for e in conn.events()):
                break
        await stream.send_all(conn.send(AcceptConnection()))
        accepted.append(trio.current_time())
        await trio.sleep_forever()

    ws = WsConfig(stall_timeout_s=0.6, backoff_initial_s=0.05, backoff_max_s=0.2)
    send, receive = trio.open_memory_channel[UserStreamItem](16)
    keeper_send, _keeper_receive = trio.open_memory_channel[KeyExpired](4)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        profile = venue_profile("sim", rest_url=f"http://127.0.0.1:{port}",
                                sim_product="futures")
        reader = FuturesUserStream(profile=profile, grants=one_grant("k1"),
                                   keeper_events=keeper_send, out=send, ws=ws,
                                   metrics=new_metrics(), tuning=StreamTuning(heartbeat_s=0.1))
        ctx = ChildContext("user_stream")
        await nursery.start(reader.run, ctx)
        with trio.fail_after(5):
            up = await receive.receive()
            down = await receive.receive()
            again = await receive.receive()
        assert isinstance(up, StreamUp) and isinstance(down, StreamDown)
        assert down.reason == "stall" and down.at - up.at >= ws.stall_timeout_s * 0.9
        assert isinstance(again, StreamUp) and again.gap
        assert reader.policy.stalls >= 1
        ctx.request_stop()
        nursery.cancel_scope.cancel()


def one_grant(key: str) -> Published[ListenKeyGrant | None]:
    """A fixed listenKey grant, as a keeper would hand it out."""
    return Published[ListenKeyGrant | None](ListenKeyGrant(key, 1))
