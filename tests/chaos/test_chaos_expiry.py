"""The user-data credential ends mid-stream while trading: ``POST /_sim/listenkeys/expire``.

Spot (mode ``sim``): the venue ends every WS-API user-data subscription
(``eventStreamTerminated``); the keeper must subscribe again and the router reconcile the gap.

USD-M futures: mode ``sim`` is always spot (``Trading.product`` is futures only when
``exchange.mode`` starts with ``futures``), so the futures half of the simulated venue is reached
the documented way any mode can point at a local venue: ``mode = "futures-testnet"`` with
``[exchange] rest_url`` / ``ws_url`` naming a separately started ``spark-runtime venue``, armed like
a testnet (``EXECUTE=true``, ``BINANCE_API_KEY``/``BINANCE_API_SECRET`` = the venue's account).
The venue expires every listenKey (``listenKeyExpired``, socket closed); the keeper must create a
new key, the reader reconnect with it, and the router reconcile.
"""

from __future__ import annotations

from collections.abc import Callable

from chaos_helpers import (
    ROUNDS,
    ChaosDesk,
    VenueProcess,
    and_resubscribed,
    every,
    finish,
    logged,
)
from runtime_harness import RuntimeProcess

Start = Callable[..., RuntimeProcess]
StartVenue = Callable[..., VenueProcess]

FUTURES_ENV = {"EXECUTE": "true", "BINANCE_API_KEY": "sim-key", "BINANCE_API_SECRET": "sim-secret"}


def test_spot_subscriptions_end_every_four_orders(start_runtime: Start) -> None:
    rt = start_runtime(seed=15).wait_ready()
    assert rt.venue_url is not None
    desk = ChaosDesk(rt, rt.venue_url)
    hook = every(4, and_resubscribed(rt, lambda: desk.sim("listenkeys/expire")))
    for _ in range(ROUNDS):
        desk.round(hook)
    assert logged(rt, "eventStreamTerminated on") >= ROUNDS * 5 // 4
    finish(desk, orders=ROUNDS * 5)


def test_futures_listen_keys_expire_every_four_orders(
    start_runtime: Start, venue_process: StartVenue,
) -> None:
    venue = venue_process(seed=16)
    rt = start_runtime(seed=16, mode="futures-testnet", rest_url=venue.url,
                       ws_url=venue.ws_url, env=FUTURES_ENV).wait_ready()
    desk = ChaosDesk(rt, venue.url, product="futures")
    hook = every(4, and_resubscribed(rt, lambda: desk.sim("listenkeys/expire"),
                                     marker=r"user data: futures-user-\d+ connected"))
    for _ in range(ROUNDS):
        desk.round(hook)
    assert desk.metric("spark_listenkey_renewals_total") >= ROUNDS * 5 // 4
    finish(desk, orders=ROUNDS * 5)
