"""The market-stream reader: ``@bookTicker`` of the whitelisted symbols → ``Published[PriceBoard]``.

Why conflated and published instead of queued: the risk guard and the drift gate only ever want
the *current* best bid/ask; a queue of every update would let a slow reader act on old prices or
force drops. So each frame overwrites its symbol's slot
(:class:`~spark.core.conflate.ReferencePrices`: latest wins, stale or reordered updates dropped)
and the actor publishes an immutable :class:`~spark.actors.messages.PriceBoard` snapshot. The
socket is drained at once like every reader (:mod:`spark.actors.streamio`): decoding and
publishing are synchronous, nothing waits on a consumer.

One combined stream (``/stream?streams=a@bookTicker/b@bookTicker``, or ``/ws/<stream>`` for a
single symbol). Readers apply the staleness rule themselves against each quote's
``received_at`` (``PriceBoard.connected`` turns False while disconnected, but the last quotes stay
so a reader can still tell how old they are): stale, invalid or missing = no reference price.

Stalls: market data ticks constantly, so here *silence is the symptom* — no frame for
``stall_timeout_s`` → reconnect (:class:`~spark.core.ws_policy.ReconnectPolicy`, with its
jittered backoff; ``serverShutdown`` → reconnect at once). Metrics carry ``stream="market"``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from spark.actors.messages import PriceBoard
from spark.actors.streamio import StreamCounters, race
from spark.config.schema import WsConfig
from spark.core.conflate import Quote, ReferencePrices
from spark.core.published import Published
from spark.core.ws_policy import CloseNow, ReadUntil, ReconnectPolicy, SleepUntil
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import ServerShutdown
from spark.exchange.market import BookTicker, decode_market_frame
from spark.exchange.streams import book_ticker_stream, market_stream_url
from spark.exchange.venues import VenueProfile
from spark.exchange.wsconn import open_ws
from spark.runtime.metrics import Metrics
from spark.supervision import ChildContext

__all__ = ["MarketStream"]

log = logging.getLogger("spark.actors.market_stream")

STREAM_LABEL = "market"


class _State:
    __slots__ = ("attention", "closed", "last_rx", "name", "shutdown_notice")

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.last_rx = now
        self.closed: str | None = None
        self.shutdown_notice = False
        self.attention = trio.Event()


class MarketStream:
    """The market-data reader actor (see the module docstring).

    ``board`` survives restarts (quotes kept, ``connected`` False until the new connection is
    up); the staleness rule makes old quotes harmless.
    """

    def __init__(
        self,
        *,
        profile: VenueProfile,
        symbols: Sequence[str],
        ws: WsConfig,
        metrics: Metrics,
        board: Published[PriceBoard] | None = None,
        stale_after_s: float = 10.0,
        heartbeat_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("the market stream needs at least one symbol")
        self._url = market_stream_url(profile, [book_ticker_stream(s) for s in symbols])
        self._symbols = tuple(symbols)
        self._ws = ws
        self._heartbeat_s = heartbeat_s
        self._connect_timeout_s = connect_timeout_s
        self._rng = rng
        self.board: Published[PriceBoard] = board if board is not None else Published(PriceBoard())
        self.prices = ReferencePrices(stale_after_s)
        self._quotes: dict[str, Quote] = dict(self.board.value.quotes)
        self.counters = StreamCounters(metrics, STREAM_LABEL)
        self.policy = ReconnectPolicy.from_config(ws, rng=rng)
        self._seq = 0
        self.updates = 0

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        policy = self.policy = ReconnectPolicy.from_config(self._ws, rng=self._rng)
        counted = 0
        task_status.started()
        try:
            while not ctx.stop_requested.is_set():
                ctx.progress()
                now = trio.current_time()
                step = policy.next_step(now)
                if isinstance(step, SleepUntil):
                    await race([ctx.wait_stop], min(step.until, now + self._heartbeat_s))
                    continue
                if policy.reconnects > counted:
                    counted = policy.reconnects
                    self.counters.reconnect()
                self._seq += 1
                await self._connection(ctx, f"market-{self._seq}")
        finally:
            self._publish(connected=False)

    async def _connection(self, ctx: ChildContext, name: str) -> None:
        policy = self.policy
        state: _State | None = None
        reason = "closed"
        try:
            try:
                with trio.CancelScope() as abort:
                    async with open_ws(self._url,
                                       connect_timeout_s=self._connect_timeout_s) as ws:
                        now = trio.current_time()
                        policy.on_connected(now)
                        state = _State(name, now)
                        log.info("market data: %s connected (%s)", name,
                                 ", ".join(self._symbols))
                        self.counters.connected(True)
                        self._publish(connected=True)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._read, ws, state)
                            reason = await self._watch(ctx, state)
                            nursery.cancel_scope.cancel()
                        if reason == "stall":
                            abort.cancel()  # no closing handshake with a silent peer
            except (HandshakeError, OSError) as exc:
                if state is None:
                    policy.on_connect_failed(trio.current_time())
                    log.warning("market data: connect failed: %s", type(exc).__name__)
        finally:
            if state is not None:
                now = trio.current_time()
                if reason == "closed:1001":  # going away (24 h limit): reconnect at once
                    policy.on_server_shutdown(now)
                policy.on_closed(now)
                self.counters.flush()
                self.counters.connected(False)
                self._publish(connected=False)
                log.info("market data: %s closed (%s)", name, reason)

    async def _read(self, ws: Any, state: _State) -> None:
        prices = self.prices
        counters = self.counters
        decode = decode_market_frame
        quotes = self._quotes
        try:
            while True:
                raw = await ws.get_message()
                now = trio.current_time()
                state.last_rx = now
                counters.frames += 1
                try:
                    event = decode(raw)
                except MalformedFrame as exc:
                    counters.malformed_frame(exc, state.name)
                    continue
                if event.__class__ is BookTicker:
                    ticker: BookTicker = event
                    if prices.update(ticker, now):
                        quote = prices.latest(ticker.symbol)
                        assert quote is not None
                        quotes[ticker.symbol] = quote
                        self.updates += 1
                        self.board.set(PriceBoard(dict(quotes), True))
                        counters.flush()  # cheap next to the publish; keeps the series live
                elif isinstance(event, ServerShutdown):
                    log.info("market data: serverShutdown on %s; reconnecting now", state.name)
                    state.shutdown_notice = True
                    state.attention.set()
        except ConnectionClosed as exc:
            code = getattr(getattr(exc, "reason", None), "code", None)
            state.closed = "closed" if code is None else f"closed:{code}"
            state.attention.set()

    async def _watch(self, ctx: ChildContext, state: _State) -> str:
        policy = self.policy
        shutdown_seen = False
        while True:
            ctx.progress()
            attention = state.attention = trio.Event()
            now = trio.current_time()
            self.counters.flush()
            if state.closed is not None:
                return state.closed
            if ctx.stop_requested.is_set():
                return "stop"
            if state.shutdown_notice and not shutdown_seen:
                shutdown_seen = True
                policy.on_server_shutdown(now)
            policy.on_frame(state.last_rx)
            step = policy.next_step(now)
            if isinstance(step, CloseNow):
                if step.reason == "stall":
                    log.warning("market data: no frame for %.1f s on %s; reconnecting",
                                now - state.last_rx, state.name)
                return step.reason
            assert isinstance(step, ReadUntil)
            self.counters.connected(True, policy.uptime(now))
            await race([attention.wait, ctx.wait_stop], min(step.deadline,
                                                            now + self._heartbeat_s))

    def _publish(self, *, connected: bool) -> None:
        self.board.set(PriceBoard(dict(self._quotes), connected))



