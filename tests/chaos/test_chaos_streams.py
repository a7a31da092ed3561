"""Chaos on the spot user-data socket while trading: drops, stalls, duplicates, reorders and
``serverShutdown``.

Each test trades M = 30 orders (MARKET and resting LIMIT orders in both directions, some
cancelled; see :meth:`ChaosDesk.round`) through the real runtime process while the embedded
simulated venue misbehaves, then requires the runtime's view to converge on the venue's ground
truth: every order's status and executedQty (``GET /api/private/orders`` vs ``GET /_sim/orders``),
``spark_live_fills_total`` vs the venue's trade count, and — after a clean stop — the database
(``trades`` rows equal the venue's trades by (symbol, trade_id); no execution stored twice; the
``orders`` table agrees).
"""

from __future__ import annotations

from collections.abc import Callable

from chaos_helpers import (
    ROUNDS,
    ChaosDesk,
    and_resubscribed,
    every,
    finish,
    logged,
    logged_more,
    wait_until,
)
from runtime_harness import RuntimeProcess

Start = Callable[..., RuntimeProcess]


def test_websockets_dropped_every_three_orders(start_runtime: Start) -> None:
    rt = start_runtime(seed=11).wait_ready()
    assert rt.venue_url is not None
    desk = ChaosDesk(rt, rt.venue_url)
    hook = every(3, and_resubscribed(rt, lambda: desk.sim("ws/drop")))
    for _ in range(ROUNDS):
        desk.round(hook)
    assert desk.metric("spark_ws_reconnect_total", stream="user") >= ROUNDS * 5 // 3
    finish(desk, orders=ROUNDS * 5)


def test_user_data_stalled_longer_than_stall_detection(start_runtime: Start) -> None:
    rt = start_runtime(seed=12, stall_timeout_s=1.5).wait_ready()
    assert rt.venue_url is not None
    desk = ChaosDesk(rt, rt.venue_url)
    stalls = 3
    for n in range(ROUNDS):
        if n < stalls:
            # Every user-data frame (events, ping answers) is held for 2.5 s while TCP stays
            # open; the round's fills happen meanwhile. The reader must call the socket stalled
            # within stall_timeout_s, reconnect, and the router reconcile what was held.
            subscribed = logged(rt, "subscribed on connection")
            desk.sim("ws/stall", {"duration_s": 2.5})
            desk.round()
            wait_until(logged_more(rt, "WS-API ping unanswered", n),
                       what=f"stall {n + 1} detected by the reader")
            wait_until(logged_more(rt, "subscribed on connection", subscribed),
                       what=f"user data subscribed again after stall {n + 1}")
        else:
            desk.round()
    finish(desk, orders=ROUNDS * 5)


def test_duplicated_and_reordered_events(start_runtime: Start) -> None:
    rt = start_runtime(seed=13).wait_ready()
    assert rt.venue_url is not None
    desk = ChaosDesk(rt, rt.venue_url)
    desk.faults(ws_duplicate=0.3, ws_reorder=0.3)
    for _ in range(ROUNDS):
        desk.round()
    # No reconnect, so no reconciliation racing the socket: each trade is one execution.
    finish(desk, orders=ROUNDS * 5, trade_executions_once=True)


def test_server_shutdown_every_four_orders(start_runtime: Start) -> None:
    rt = start_runtime(seed=14).wait_ready()
    assert rt.venue_url is not None
    desk = ChaosDesk(rt, rt.venue_url)
    hook = every(4, lambda: desk.sim("server-shutdown"))
    for _ in range(ROUNDS):
        desk.round(hook)
    wait_until(lambda: logged(rt, "serverShutdown on") >= ROUNDS * 5 // 4,
               what="the reader saw every serverShutdown")
    # A seamless hand-over needs no reconciliation: each trade is one execution.
    finish(desk, orders=ROUNDS * 5, trade_executions_once=True)
