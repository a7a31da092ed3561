"""Shared pieces of the user-data path tests: an in-process venue, the real client, the actors.

Everything runs over real loopback sockets: the simulated venue (``spark.venue``) on port 0, the
runtime's own ``RestClient`` to place orders, and the actors under test reading the venue's
websockets. The test itself plays the router: it reads the user-data channel.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import httpx
import trio
from prometheus_client import CollectorRegistry

from spark.actors.keeper import FuturesKeeper, SpotKeeper
from spark.actors.market_stream import MarketStream
from spark.actors.messages import StreamDown, StreamUp, UserEvents, UserStreamItem
from spark.actors.user_stream import FuturesUserStream, SpotUserStream, StreamTuning
from spark.config.schema import ListenKeyConfig, VenueConfig, WsConfig
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.exchange.credentials import Credentials
from spark.exchange.events import ExecutionEvent
from spark.exchange.rest import RestClient
from spark.exchange.venues import VenueProfile, venue_profile
from spark.runtime.metrics import Metrics
from spark.supervision import ChildContext
from spark.venue import Venue

KEY = "sim-key"
SECRET = "sim-secret"
CREDS = Credentials.hmac(KEY, SECRET)

FAST_WS = WsConfig(stall_timeout_s=3.0, backoff_initial_s=0.05, backoff_max_s=0.5,
                   inbox_size=1024)
QUICK_STALL_WS = WsConfig(stall_timeout_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.5,
                         inbox_size=1024)
FAST_TUNING = StreamTuning(heartbeat_s=0.5, connect_timeout_s=5.0, request_timeout_s=2.0)


def quiet_venue(**changes: Any) -> VenueConfig:
    """Port 0, and a price path that only moves when a test moves it."""
    return attrs.evolve(VenueConfig(port=0, step_interval_ms=3_600_000.0), **changes)


class TrioWallClock:
    """Wall-clock ms that follow Trio's clock (so a MockClock moves the venue's time too)."""

    def __init__(self, base_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00Z
        self.base_ms = base_ms

    def now_ms(self) -> int:
        return self.base_ms + int(trio.current_time() * 1000)


_ids = itertools.count(1)


def client_id(prefix: str = "t") -> str:
    return f"{prefix}-{next(_ids)}"


@attrs.define
class Sim:
    """A running venue with an admin client."""

    venue: Venue
    url: str
    admin_http: httpx.AsyncClient

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.admin_http.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def trades(self, market: str) -> list[dict[str, Any]]:
        return [t for t in await self.admin("GET", "/_sim/trades") if t["market"] == market]

    async def orders(self, market: str) -> list[dict[str, Any]]:
        return [o for o in await self.admin("GET", "/_sim/orders") if o["market"] == market]

    def profile(self, product: str) -> VenueProfile:
        return venue_profile("sim", rest_url=self.url, sim_product=product)  # type: ignore[arg-type]


@asynccontextmanager
async def sim_venue(config: VenueConfig | None = None, *, clock: WallClock | None = None,
                    **venue_kw: Any) -> AsyncIterator[Sim]:
    venue = Venue(config or quiet_venue(), clock=clock, **venue_kw)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(venue.run)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            yield Sim(venue, url, http)
        nursery.cancel_scope.cancel()


def new_metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process=False)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


@attrs.define
class Link:
    """The actors of one product wired like the venue link, run under plain child contexts."""

    product: str
    metrics: Metrics
    rest: RestClient
    receive: trio.MemoryReceiveChannel[UserStreamItem]
    user: FuturesUserStream | SpotUserStream
    keeper: FuturesKeeper | SpotKeeper
    contexts: list[ChildContext] = attrs.field(factory=list)
    items: list[UserStreamItem] = attrs.field(factory=list)

    def stop(self) -> None:
        for ctx in reversed(self.contexts):
            ctx.request_stop()

    def listen_key(self) -> str | None:
        """The futures key the keeper hands out (None: none)."""
        assert isinstance(self.keeper, FuturesKeeper)
        grant = self.keeper.grant.value
        return None if grant is None else grant.key

    # -- the test as router ---------------------------------------------------------------------
    async def next_item(self, timeout: float = 10.0) -> UserStreamItem:
        with trio.fail_after(timeout):
            item = await self.receive.receive()
        self.items.append(item)
        return item

    async def until(self, predicate: Callable[[UserStreamItem], bool],
                    timeout: float = 10.0) -> UserStreamItem:
        with trio.fail_after(timeout):
            while True:
                item = await self.next_item(timeout)
                if predicate(item):
                    return item

    async def executions(self, want: Callable[[list[ExecutionEvent]], bool],
                         timeout: float = 10.0) -> list[ExecutionEvent]:
        """Read until ``want(all executions so far, deduplicated)`` holds."""
        with trio.fail_after(timeout):
            while not want(self.execution_events()):
                await self.next_item(timeout)
        return self.execution_events()

    def execution_events(self) -> list[ExecutionEvent]:
        seen: set[str] = set()
        out: list[ExecutionEvent] = []
        for item in self.items:
            if isinstance(item, UserEvents):
                for e in item.events:
                    if isinstance(e, ExecutionEvent) and e.execution_id not in seen:
                        seen.add(e.execution_id)
                        out.append(e)
        return out

    def notices(self) -> list[StreamUp | StreamDown]:
        return [i for i in self.items if isinstance(i, StreamUp | StreamDown)]

    # -- orders ---------------------------------------------------------------------------------
    async def market_order(self, symbol: str = "BTCUSDT", side: str = "BUY",
                           qty: str = "0.001") -> str:
        cid = client_id(self.product)
        if self.product == "spot":
            await self.rest.place_order(symbol, side, "MARKET",  # type: ignore[arg-type]
                                        new_client_order_id=cid, quantity=Decimal(qty))
        else:
            await self.rest.futures_place_order(symbol, side, "MARKET",  # type: ignore[arg-type]
                                                new_client_order_id=cid, quantity=Decimal(qty))
        return cid


@asynccontextmanager
async def run_link(
    sim: Sim,
    product: str,
    *,
    ws: WsConfig = FAST_WS,
    listenkey: ListenKeyConfig | None = None,
    tuning: StreamTuning = FAST_TUNING,
    channel_size: int = 64,
    clock: WallClock = SYSTEM_CLOCK,
    metrics: Metrics | None = None,
    rest_timeout_s: float = 10.0,
) -> AsyncIterator[Link]:
    """Start the keeper + user-data reader of ``product`` against ``sim``; stop them politely."""
    from spark.exchange.rest import RestConfig

    metrics = metrics if metrics is not None else new_metrics()
    listenkey = listenkey if listenkey is not None else ListenKeyConfig(
        keepalive_interval_s=600.0, retry_initial_s=0.05, retry_max_s=0.5)
    profile = sim.profile(product)
    send, receive = trio.open_memory_channel[UserStreamItem](channel_size)
    rest_cfg = RestConfig(read_timeout_s=rest_timeout_s, connect_timeout_s=rest_timeout_s,
                          write_timeout_s=rest_timeout_s, pool_timeout_s=rest_timeout_s)
    async with RestClient(profile, CREDS, clock=clock, config=rest_cfg) as rest:
        keeper: FuturesKeeper | SpotKeeper
        user: FuturesUserStream | SpotUserStream
        entries: list[tuple[str, Any]] = []
        if product == "futures":
            keeper = FuturesKeeper(rest, listenkey, metrics, heartbeat_s=tuning.heartbeat_s,
                                   request_timeout_s=rest_timeout_s)
            user = FuturesUserStream(profile=profile, grants=keeper.grant,
                                     keeper_events=keeper.events, out=send, ws=ws,
                                     metrics=metrics, clock=clock, tuning=tuning)
            entries = [("keeper", keeper.run), ("user_stream", user.run)]
        else:
            keeper = SpotKeeper(CREDS, listenkey, metrics,
                                timestamp=lambda: rest.time_offset.timestamp(clock.now_ms()),
                                heartbeat_s=tuning.heartbeat_s)
            user = SpotUserStream(profile=profile, keeper=keeper, out=send, ws=ws,
                                  metrics=metrics, clock=clock, tuning=tuning)
            entries = [("user_stream", user.run)]
        link = Link(product, metrics, rest, receive, user, keeper)
        async with trio.open_nursery() as nursery:
            for name, entry in entries:
                ctx = ChildContext(name)
                link.contexts.append(ctx)
                await nursery.start(_entry, entry, ctx)
            try:
                yield link
            finally:
                link.stop()
                # Keep consuming so a polite stop can flush; bounded.
                with trio.move_on_after(10):
                    while nursery.child_tasks:
                        _drain(receive, link.items)
                        await trio.sleep(0.01)
                _drain(receive, link.items)
                nursery.cancel_scope.cancel()


def _drain(receive: trio.MemoryReceiveChannel[UserStreamItem], into: list[UserStreamItem]) -> None:
    while True:
        try:
            into.append(receive.receive_nowait())
        except trio.WouldBlock:
            return


async def _entry(entry: Any, ctx: ChildContext, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    await entry(ctx, task_status=task_status)


@asynccontextmanager
async def run_market(sim: Sim, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), *,
                     ws: WsConfig = FAST_WS, metrics: Metrics | None = None,
                     product: str = "spot") -> AsyncIterator[MarketStream]:
    metrics = metrics if metrics is not None else new_metrics()
    market = MarketStream(profile=sim.profile(product), symbols=symbols, ws=ws, metrics=metrics,
                          heartbeat_s=0.5)
    ctx = ChildContext("market_stream")
    async with trio.open_nursery() as nursery:
        await nursery.start(_entry, market.run, ctx)
        try:
            yield market
        finally:
            ctx.request_stop()
            with trio.move_on_after(5):
                while nursery.child_tasks:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


def is_up(gap: bool | None = None) -> Callable[[UserStreamItem], bool]:
    def check(item: UserStreamItem) -> bool:
        return isinstance(item, StreamUp) and (gap is None or item.gap == gap)

    return check


def is_down(item: UserStreamItem) -> bool:
    return isinstance(item, StreamDown)
