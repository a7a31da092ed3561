"""``build_venue_link``: the one_for_all sub-supervisor as the runtime will run it."""

from __future__ import annotations

import attrs
import pytest
import trio
from userdata_helpers import CREDS, new_metrics, sample, sim_venue

from spark.actors.messages import StreamDown, StreamUp, UserEvents
from spark.actors.venue_link import build_venue_link
from spark.config.schema import (
    ListenKeyConfig,
    RiskConfig,
    SparkConfig,
    SupervisionConfig,
    WsConfig,
)
from spark.exchange.events import ExecutionEvent
from spark.exchange.rest import RestClient
from spark.supervision import ChildContext


def config() -> SparkConfig:
    return SparkConfig(
        ws=WsConfig(stall_timeout_s=3.0, backoff_initial_s=0.05, backoff_max_s=0.5),
        listenkey=ListenKeyConfig(keepalive_interval_s=600.0, retry_initial_s=0.05),
        risk=attrs.evolve(RiskConfig(), whitelist=("BTCUSDT", "ETHUSDT")),
        supervision=SupervisionConfig(stall_timeout_s=4.0, shutdown_deadline_s=3.0),
    )


@pytest.mark.parametrize("product", ["spot", "futures"])
async def test_venue_link_streams_events_and_prices_and_stops_cleanly(product: str) -> None:
    from decimal import Decimal

    metrics = new_metrics()
    async with sim_venue() as sim:
        profile = sim.profile(product)
        async with RestClient(profile, CREDS) as rest:
            spec, handles = build_venue_link(config=config(), profile=profile, rest=rest,
                                             credentials=CREDS, metrics=metrics)
            assert spec.name == "venue_link"
            assert [c.name for c in handles.supervisor.children] == (
                ["keeper", "user_stream", "market_stream"] if product == "futures"
                else ["user_stream", "market_stream"])
            ctx = ChildContext("venue_link")
            async with trio.open_nursery() as nursery:
                await nursery.start(spec.entry, ctx)
                with trio.fail_after(5):
                    up = await handles.events.receive()
                assert isinstance(up, StreamUp) and up.gap and handles.connected
                await sim.admin("POST", "/_sim/price", {"symbol": "ETHUSDT", "price": "2501"})
                cid = "link-1"
                if product == "spot":
                    await rest.place_order("ETHUSDT", "BUY", "MARKET", new_client_order_id=cid,
                                           quantity=Decimal("0.01"))
                else:
                    await rest.futures_place_order("ETHUSDT", "BUY", "MARKET",
                                                   new_client_order_id=cid,
                                                   quantity=Decimal("0.01"))
                events: list[ExecutionEvent] = []
                with trio.fail_after(5):
                    while not any(e.order_status == "FILLED" for e in events):
                        item = await handles.events.receive()
                        if isinstance(item, UserEvents):
                            events += [e for e in item.events if isinstance(e, ExecutionEvent)]
                assert {e.client_order_id for e in events} == {cid}
                age = handles.last_event_age_s()
                assert age is not None and age < 5
                with trio.fail_after(5):
                    while "ETHUSDT" not in handles.prices.value.quotes:
                        await trio.sleep(0.01)
                assert handles.prices.value.connected
                assert handles.prices.value.quotes["ETHUSDT"].mid is not None
                assert sample(metrics, "spark_ws_connected", stream="market") == 1
                snapshot = handles.supervisor.snapshot()
                assert all(c.state.value == "running" for c in snapshot.children)

                ctx.request_stop()
                with trio.fail_after(10):
                    while nursery.child_tasks:
                        await trio.sleep(0.01)
            rest_items: list[object] = []
            while True:
                try:
                    rest_items.append(handles.events.receive_nowait())
                except trio.WouldBlock:
                    break
            assert isinstance(rest_items[-1], StreamDown)
            assert (handles.connected, handles.prices.value.connected) == (False, False)
            if product == "futures":
                assert handles.listen_key is not None and handles.listen_key.value is None
                response = await sim.admin_http.put("/fapi/v1/listenKey",
                                                    headers={"X-MBX-APIKEY": "sim-key"})
                assert response.json()["code"] == -1125  # deleted at shutdown
