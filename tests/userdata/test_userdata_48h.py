"""48 simulated hours: futures keepalives and spot 24-hour rotations, no gap in event delivery.

The real venue runs in-process with a wall clock that follows Trio's clock, and the test runs
under ``MockClock(autojump_threshold=0.005)``: time jumps only when every task has been idle for
5 ms of real time, so real loopback sockets get the moment they need. The config keeps the
number of wake-ups small (long stall timeouts and heartbeats, the venue's server pings off, one
order per product per simulated hour), which keeps the real time to a few seconds.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock
from userdata_helpers import Link, TrioWallClock, is_up, quiet_venue, run_link, sample, sim_venue

from spark.actors.messages import StreamDown, StreamUp
from spark.actors.user_stream import StreamTuning
from spark.config.schema import ListenKeyConfig, WsConfig

HOUR = 3600.0
HOURS = 48


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


LISTENKEY = ListenKeyConfig(keepalive_interval_s=1800.0, spot_rotate_after_s=23 * HOUR,
                            retry_initial_s=1.0, retry_max_s=60.0)
WS = WsConfig(stall_timeout_s=4 * HOUR, backoff_initial_s=1.0, backoff_max_s=30.0,
              inbox_size=1024)
TUNING = StreamTuning(heartbeat_s=1800.0, connect_timeout_s=60.0, request_timeout_s=60.0)


async def order_arrives(link: Link, hour: int) -> None:
    cid = await link.market_order(qty="0.001")
    await link.executions(
        lambda events: any(e.client_order_id == cid and e.order_status == "FILLED"
                           for e in events),
        timeout=HOUR)


async def test_48_simulated_hours_keepalives_rotations_and_no_gap(clock: MockClock) -> None:
    wall = TrioWallClock()
    venue_cfg = quiet_venue(step_interval_ms=HOUR * 1000)  # listenKey expiry checked hourly
    async with sim_venue(venue_cfg, clock=wall, ws_ping_interval_s=None) as sim, \
            run_link(sim, "futures", ws=WS, listenkey=LISTENKEY, tuning=TUNING, clock=wall,
                     rest_timeout_s=120.0) as futures, \
            run_link(sim, "spot", ws=WS, listenkey=LISTENKEY, tuning=TUNING, clock=wall,
                     rest_timeout_s=120.0) as spot:
        await futures.until(is_up(gap=True))
        await spot.until(is_up(gap=True))
        start = trio.current_time()
        for hour in range(HOURS):
            await trio.sleep_until(start + hour * HOUR + 1234.0)
            await order_arrives(futures, hour)
            await order_arrives(spot, hour)
        elapsed_h = (trio.current_time() - start) / HOUR
        assert elapsed_h >= HOURS - 1

        # Futures: one key the whole time, PUT every 30 minutes.
        fm = futures.metrics
        assert sample(fm, "spark_listenkey_renewals_total") == 0
        assert sample(fm, "spark_listenkey_keepalive_total") >= 2 * (HOURS - 1)
        # Every order's events arrived (checked hour by hour above). The venue ends the socket
        # at 24 hours ("going away"): reconnected at once, and the router reconciles.
        assert len({e.client_order_id for e in futures.execution_events()}) == HOURS
        _, down, up2 = futures.notices()
        assert isinstance(down, StreamDown) and down.reason == "closed:1001"
        assert isinstance(up2, StreamUp) and up2.gap and up2.at - down.at < 1.0

        # Spot: rotated before each 24 h limit without a gap, and checked every 30 minutes.
        sm = spot.metrics
        ups = [n for n in spot.notices() if isinstance(n, StreamUp)]
        assert [u.gap for u in ups] == [True, False, False]
        assert all(isinstance(n, StreamUp) or n.reason == "replaced"
                   for n in spot.notices() if isinstance(n, StreamDown))
        assert sample(sm, "spark_listenkey_renewals_total") == 0
        assert spot.keeper.stats.checks >= 2 * (HOURS - 2)
        assert sample(sm, "spark_listenkey_keepalive_total") == spot.keeper.stats.checks + 2
        assert len({e.client_order_id for e in spot.execution_events()}) == HOURS
