"""The simulated venue as a server: one hypercorn (trio worker) serving one Starlette app.

:class:`Venue` builds everything in-process (tests and the runtime's supervised subtree use it);
:func:`serve` runs one until cancelled and reports its base URL through ``task_status``;
:func:`run_venue_cli` is ``spark-runtime venue``.  Routes on one host:port:

* ``/api/v3/…`` spot REST, ``/fapi/v1/…`` USD-M futures REST;
* ``/ws-api/v3`` spot WebSocket API; ``/private/ws`` futures user data;
* ``/ws/<stream>``, ``/stream?streams=…`` market streams;
* ``/_sim/…`` admin (loopback only).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import attrs
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from spark.config.schema import VenueConfig
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.venue.admin import Admin
from spark.venue.core import VenueCore
from spark.venue.endpoints import FuturesUserEndpoint, MarketEndpoint, RestEndpoint, WsApiEndpoint
from spark.venue.hub import Hub
from spark.venue.rest import RestApi

DEFAULT_API_SECRET = "sim-secret"
WS_PING_INTERVAL_S = 20.0
"""Binance's WebSocket API pings every 20 s (NOTES.md)."""
QUEUE_SIZE = 8192
"""Frames a connection may have queued before it counts as too slow and is disconnected."""
MAX_CONNECTION_S = 24 * 3600.0


class Venue:
    """A simulated Binance built in-process: core state, HTTP/WS app, and how to run it."""

    def __init__(
        self,
        config: VenueConfig | None = None,
        *,
        api_secret: str = DEFAULT_API_SECRET,
        clock: WallClock | None = None,
        ed25519_public_key: Ed25519PublicKey | None = None,
        prices: Mapping[str, Sequence[Decimal]] | None = None,
        ws_ping_interval_s: float | None = WS_PING_INTERVAL_S,
        queue_size: int = QUEUE_SIZE,
        max_connection_s: float = MAX_CONNECTION_S,
    ) -> None:
        self.config = config if config is not None else VenueConfig()
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.core = VenueCore(self.config, api_secret=api_secret,
                              ed25519_public_key=ed25519_public_key, prices=prices)
        self.rest = RestApi(self.core)
        self.hub = Hub(self.core.faults, self.core.listen_keys)
        self.ws_ping_interval_s = ws_ping_interval_s
        self.queue_size = queue_size
        self.max_connection_s = max_connection_s
        self.streams = frozenset(
            f"{symbol.lower()}@{kind}" for symbol in self.core.markets
            for kind in ("bookTicker", "trade"))
        self.url: str | None = None
        self._nursery: trio.Nursery | None = None
        self.app = Starlette(routes=self._routes())

    def _routes(self) -> list[BaseRoute]:
        rest = RestEndpoint(self)
        market = MarketEndpoint(self)
        return [
            Route("/api/v3/{rest:path}", rest),
            Route("/fapi/{rest:path}", rest),
            WebSocketRoute("/ws-api/v3", WsApiEndpoint(self)),
            WebSocketRoute("/private/ws", FuturesUserEndpoint(self)),
            WebSocketRoute("/stream", market),
            WebSocketRoute("/ws/{streams:path}", market),
            *Admin(self).routes(),
        ]

    # -- plumbing used by endpoints and admin ----------------------------------------------
    def now_ms(self) -> int:
        """The host's wall clock (the core adds injected skew)."""
        return self.clock.now_ms()

    def flush(self) -> None:
        """Deliver what the core produced to the websockets (never blocks)."""
        items = self.core.outbox.drain()
        if items:
            self.hub.dispatch(items, self.core.now(self.now_ms()))

    def stall(self, duration_s: float | None) -> None:
        generation = self.hub.stall.stall()
        if duration_s is not None and self._nursery is not None:
            self._nursery.start_soon(self._resume_after, duration_s, generation)

    async def _resume_after(self, duration_s: float, generation: int) -> None:
        await trio.sleep(duration_s)
        self.hub.stall.resume(generation)

    # -- running ----------------------------------------------------------------------------
    def hypercorn_config(self, host: str, port: int) -> HypercornConfig:
        config = HypercornConfig()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None  # per-request logging would dominate the benchmarks
        config.errorlog = logging.getLogger("spark.venue.http")
        config.websocket_ping_interval = self.ws_ping_interval_s
        config.keep_alive_max_requests = 1_000_000_000  # benchmarks reuse connections
        config.graceful_timeout = 1.0
        return config

    async def run(
        self, *, host: str | None = None, port: int | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once the socket is bound."""
        host = self.config.host if host is None else host
        port = self.config.port if port is None else port
        config = self.hypercorn_config(host, port)
        self.core.start(self.now_ms())
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            app: Any = self.app  # Starlette is an ASGI app; hypercorn's alias is narrower
            binds = await nursery.start(partial(hypercorn_serve, app, config))
            self.url = str(binds[0])
            nursery.start_soon(self._ticker)
            task_status.started(self.url)

    async def _ticker(self) -> None:
        """Advance every price path one step per ``step_interval_ms``."""
        interval = self.config.step_interval_ms / 1000
        deadline = trio.current_time()
        while True:
            deadline += interval
            await trio.sleep_until(deadline)
            self.core.step(self.now_ms())
            self.flush()


async def serve(
    config: VenueConfig,
    *,
    api_secret: str,
    clock: WallClock | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a venue from ``config`` until cancelled; report its base URL via ``task_status``."""
    venue = Venue(config, api_secret=api_secret, clock=clock)
    await venue.run(task_status=task_status)


def run_venue_cli(
    host: str | None = None,
    port: int | None = None,
    seed: int | None = None,
    config: VenueConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> int:
    """``spark-runtime venue``: print the URL, serve until Ctrl-C; returns the exit code.

    ``SIM_API_KEY`` / ``SIM_API_SECRET`` from the environment override the key and secret.
    """
    env = os.environ if env is None else env
    config = config if config is not None else VenueConfig()
    config = attrs.evolve(
        config,
        host=config.host if host is None else host,
        port=config.port if port is None else port,
        seed=config.seed if seed is None else seed,
        api_key=env.get("SIM_API_KEY") or config.api_key,
    )
    secret = env.get("SIM_API_SECRET") or DEFAULT_API_SECRET

    async def main() -> None:
        # Ctrl-C / SIGTERM end the serve task cleanly instead of unwinding as KeyboardInterrupt.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(partial(serve, config, api_secret=secret))
                print(f"simulated Binance venue on {url} (api key {config.api_key!r}; "
                      "Ctrl-C stops)", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        print("venue stopped", file=sys.stderr)

    trio.run(main)
    return 0
