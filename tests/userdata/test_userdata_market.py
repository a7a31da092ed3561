"""The market-stream reader: conflated bookTicker quotes published as ``PriceBoard``."""

from __future__ import annotations

from decimal import Decimal

import trio
from userdata_helpers import FAST_WS, new_metrics, run_market, sample, sim_venue

from spark.actors.market_stream import MarketStream
from spark.config.schema import WsConfig


async def wait_board(market: MarketStream, check: object, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not check(market.board.value):  # type: ignore[operator]
            await market.board.wait_changed(market.board.version)


async def test_quotes_are_conflated_per_symbol_and_published() -> None:
    metrics = new_metrics()
    async with sim_venue() as sim, run_market(sim, ("BTCUSDT", "ETHUSDT"),
                                              metrics=metrics) as market:
        await wait_board(market, lambda b: b.connected)
        for price in ("45000", "45100", "45200.5"):
            await sim.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": price})
        await sim.admin("POST", "/_sim/price", {"symbol": "ETHUSDT", "price": "2500"})

        def both(b: object) -> bool:
            quotes = b.quotes  # type: ignore[attr-defined]
            return "BTCUSDT" in quotes and "ETHUSDT" in quotes and abs(
                quotes["BTCUSDT"].mid - Decimal("45200.5")) < 1

        await wait_board(market, both)
        board = market.board.value
        btc = board.quotes["BTCUSDT"]
        assert btc.bid <= btc.mid <= btc.ask and btc.valid  # type: ignore[operator]
        # Readers get the freshest price through the staleness rule.
        assert market.prices.price("BTCUSDT", trio.current_time()) == btc.mid
        assert sample(metrics, "spark_ws_messages_total", stream="market") >= 4
        assert sample(metrics, "spark_ws_connected", stream="market") == 1


async def test_drop_marks_the_board_disconnected_and_reconnects_keeping_quotes() -> None:
    metrics = new_metrics()
    async with sim_venue() as sim, run_market(sim, ("BTCUSDT",), metrics=metrics) as market:
        await wait_board(market, lambda b: b.connected)
        await sim.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": "45000"})
        await wait_board(market, lambda b: "BTCUSDT" in b.quotes)
        await sim.admin("POST", "/_sim/ws/drop")
        await wait_board(market, lambda b: not b.connected)
        assert "BTCUSDT" in market.board.value.quotes  # kept; its age tells readers the rest
        await wait_board(market, lambda b: b.connected)
        await sim.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": "45500"})
        await wait_board(market, lambda b: abs(b.quotes["BTCUSDT"].mid - 45500) < 1)
        assert sample(metrics, "spark_ws_reconnect_total", stream="market") == 1


async def test_a_silent_market_stream_is_reconnected() -> None:
    # Market data ticks all the time; silence for the stall timeout means a dead stream.
    ws = WsConfig(stall_timeout_s=0.4, backoff_initial_s=0.05, backoff_max_s=0.2)
    metrics = new_metrics()
    async with sim_venue() as sim, run_market(sim, ("BTCUSDT",), ws=ws,
                                              metrics=metrics) as market:
        await wait_board(market, lambda b: b.connected)
        with trio.fail_after(5):
            while sample(metrics, "spark_ws_reconnect_total", stream="market") < 2:
                await trio.sleep(0.05)
        assert market.policy.stalls >= 2
        await sim.admin("POST", "/_sim/price", {"symbol": "BTCUSDT", "price": "45000"})
        await wait_board(market, lambda b: "BTCUSDT" in b.quotes)
    assert FAST_WS.stall_timeout_s > ws.stall_timeout_s
