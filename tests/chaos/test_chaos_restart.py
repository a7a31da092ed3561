"""SIGKILL of the runtime mid-run, then a restart on the same state dir and database.

The venue must outlive the runtime, so it runs as its own ``spark-runtime venue`` process and
the runtime (mode ``sim``) reaches it through ``[exchange] rest_url``. The runtime is killed
while a burst of orders is in flight; while it is down, its resting orders fill. The restarted
runtime must reconcile (intent log + venue) and keep trading; in the end its view of every order
equals the venue's, its fills are the venue's trades it had not stored before the kill, and the
database holds every venue trade exactly once.

A restarted router leaves out of its table the orders the database holds as final, so those
are compared through the database (at the kill, and again after the final stop).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
from chaos_helpers import (
    FINAL,
    LIMIT_QTY,
    MARKET_QTY,
    SYMBOL,
    TICK,
    ChaosDesk,
    VenueProcess,
    database,
    finish,
    stored_orders,
    wait_until,
)
from runtime_harness import TRADER_TOKEN, RuntimeProcess

Start = Callable[..., RuntimeProcess]
StartVenue = Callable[..., VenueProcess]

BEFORE, AFTER = 3, 3  # rounds of 5 orders before the kill and after the restart
BURST = 6  # MARKET orders in flight when the runtime is killed
LATENCY_MS = 2000  # how long their answers are held back
SEED = 17


def burst(desk: ChaosDesk) -> None:
    """Send ``BURST`` MARKET orders at once and SIGKILL the runtime while they are in flight:
    the venue has executed every one of them, but (REST latency) none of the answers has come
    back yet; only the fills' user-data events may have."""
    rt = desk.rt
    before = len(desk.venue_orders())
    desk.faults(latency_ms=LATENCY_MS)

    def send(side: str) -> None:
        try:
            with httpx.Client(base_url=rt.control_url, timeout=10,
                              headers={"Authorization": f"Bearer {TRADER_TOKEN}"}) as c:
                c.post("/api/private/orders", json={"symbol": SYMBOL, "side": side,
                                                    "quantity": MARKET_QTY, "type": "MARKET"})
        except httpx.HTTPError:
            pass  # killed while we were asking

    threads = [threading.Thread(target=send, args=("BUY" if i % 2 else "SELL",))
               for i in range(BURST)]
    for t in threads:
        t.start()
    wait_until(lambda: len(desk.venue_orders()) == before + BURST, 10.0,
               what="the burst reached the venue")
    rt.proc.send_signal(signal.SIGKILL)
    for t in threads:
        t.join(timeout=15)
    assert rt.proc.wait(timeout=10) == -signal.SIGKILL
    desk.clear_faults()


def stored_trades(state: Path) -> int:
    with database(state) as db:
        return int(db.execute("SELECT count(*) FROM trades").fetchone()[0])


def test_sigkill_mid_run_then_restart_reconciles(
    start_runtime: Start, venue_process: StartVenue, tmp_path: Path,
) -> None:
    venue = venue_process(seed=SEED)
    home = tmp_path / "runtime"
    rt = start_runtime(home=home, seed=SEED, rest_url=venue.url).wait_ready()
    desk = ChaosDesk(rt, venue.url)
    for _ in range(BEFORE):
        desk.round()
    # Resting orders that fill while the runtime is down.
    buy_at = (desk.price * Decimal("0.98")).quantize(TICK)
    sell_at = (desk.price * Decimal("1.02")).quantize(TICK)
    desk.place("BUY", LIMIT_QTY, buy_at)
    desk.place("SELL", LIMIT_QTY, sell_at)
    burst(desk)
    rt.stop()
    desk.cross("BUY", buy_at)
    desk.cross("SELL", sell_at)
    desk.set_price(desk.price)
    placed = list(desk.placed)
    desk.close()
    kept = stored_trades(rt.state)
    final = {cid: state for cid, state in stored_orders(rt.state).items() if state[0] in FINAL}

    rt = start_runtime(home=home, seed=SEED, rest_url=venue.url).wait_ready()
    desk = ChaosDesk(rt, venue.url)  # acknowledges what the startup reconciliation found
    desk.placed, desk.fills_before, desk.stored_final = placed, kept, final
    for _ in range(AFTER):
        desk.round()
    finish(desk, orders=5 * (BEFORE + AFTER) + 2 + BURST)
