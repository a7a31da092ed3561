"""The user-data readers: own the sockets, turn frames into ``UserEvents`` for the router.

Two products, one shape (see :mod:`spark.actors.keeper` for why they differ):

* :class:`FuturesUserStream` — an actor of its own. It reads the listenKey grant its
  :class:`~spark.actors.keeper.FuturesKeeper` publishes, connects to
  ``/private/ws?listenKey=…&events=…``, and reconnects when the key changes. ``listenKeyExpired``
  (or a socket refused for the key) goes back to the keeper, and the reader waits for the next
  key rather than hammering the venue with a dead one.
* :class:`SpotUserStream` — the socket half of the spot user-data actor. It runs the
  :class:`~spark.actors.keeper.SpotKeeper` and implements its
  :class:`~spark.actors.keeper.SpotSockets`: one WS-API connection per id, each with its own
  reader and prober; during a rotation two are open and both deliver (the router's dedup
  removes the copies).

Every connection (see :mod:`spark.actors.streamio` for the buffer and forwarder):

* **drains at once** — the reader task only ever awaits the next frame; decoding and handing
  over are synchronous. If the event buffer is full (the router is far behind) the reader
  pauses, at most ``pause_limit_s``; then it gives the connection up (``StreamDown`` reason
  ``backlog``) rather than leave trio-websocket unable to answer pings for longer. Nothing read
  is ever dropped.
* **notices a stall without reconnecting a healthy idle socket** — user data is silent when
  nothing happens, so silence alone proves nothing. After ``stall_timeout_s / 3`` without a
  frame the prober asks the other side: a websocket ping on futures (the pong proves the
  connection and the server's reader are alive), a WS-API ``ping`` request on spot (the answer
  travels the same path as the events, so it also catches a server that stopped sending). No
  frame, answer or pong for ``stall_timeout_s`` → close and reconnect
  (:class:`~spark.core.ws_policy.ReconnectPolicy` on futures, the subscription schedule on
  spot).
* **``serverShutdown``** → futures: reconnect at once, no backoff; spot: the schedule opens a
  replacement at once and hands over without a gap.
* **malformed frames** are counted (``spark_ws_malformed_total``), logged truncated and
  credential-free, and skipped; the reader carries on.
* **announces coverage**: ``StreamUp(gap=True)`` after every (re)connect-and-subscribe (the
  router reconciles), ``StreamUp(gap=False)`` for a seamless spot hand-over, ``StreamDown`` with
  a reason when a serving connection ends — all in order with the events, through the buffer.

Metrics (label ``stream="user"``): ``spark_ws_messages_total``, ``spark_ws_malformed_total``,
``spark_ws_reconnect_total``, ``spark_ws_connected``, ``spark_ws_connection_uptime_seconds``,
and ``spark_ingest_lag_seconds`` per event (wall clock at receipt minus the event's ``E``,
negative values — clock offset to the venue — clamped to 0).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

from spark.actors.keeper import ListenKeyGrant, SocketFailed, SpotKeeper
from spark.actors.messages import StreamDown, StreamUp, UserEvent, UserStreamItem
from spark.actors.streamio import (
    ROUTER_EVENT_TYPES,
    EventBuffer,
    StreamCounters,
    UserStreamStats,
    forward,
    race,
)
from spark.config.schema import WsConfig
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.core.listenkey import ConnectionLost, KeyExpired, ShutdownNotice, SubscriptionEnded
from spark.core.published import Published
from spark.core.ws_policy import CloseNow, ReadUntil, ReconnectPolicy, SleepUntil
from spark.exchange.errors import ExchangeError, MalformedFrame, TimestampError
from spark.exchange.events import (
    ListenKeyExpired,
    ServerShutdown,
    StreamTerminated,
    UnknownEvent,
    decode_user_frame,
)
from spark.exchange.streams import futures_user_data_url
from spark.exchange.venues import VenueProfile
from spark.exchange.wsapi import WsApiSession
from spark.exchange.wsapi_codec import (
    WsApiRequest,
    WsApiResponse,
    decode_ws_api_frame,
    ping_request,
)
from spark.exchange.wsconn import Inbound, open_ws
from spark.runtime.metrics import Metrics
from spark.supervision import ChildContext

__all__ = ["FuturesUserStream", "SpotUserStream", "StreamTuning"]

log = logging.getLogger("spark.actors.user_stream")

STREAM_LABEL = "user"
ABORT_REASONS = frozenset({"stall", "backlog"})
"""Reasons to drop a socket without the closing handshake: a peer that does not answer (or
that we stopped reading) would only make us wait out the disconnect timeout."""
GOING_AWAY = "closed:1001"
"""Close reason of a socket the server ended with 1001 "going away" (24 h limit, restart)."""


class StreamTuning:
    """Knobs of a user-data reader that are not in ``[ws]`` (defaults suit production)."""

    __slots__ = (
        "batch_max",
        "connect_timeout_s",
        "flush_timeout_s",
        "heartbeat_s",
        "pause_limit_s",
        "request_timeout_s",
    )

    def __init__(
        self,
        *,
        batch_max: int = 512,
        heartbeat_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        pause_limit_s: float | None = None,
        flush_timeout_s: float = 1.0,
    ) -> None:
        self.batch_max = batch_max
        self.heartbeat_s = heartbeat_s
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        # None: the stall timeout (pausing longer than that would look like a stall anyway).
        self.pause_limit_s = pause_limit_s
        self.flush_timeout_s = flush_timeout_s


class _Conn:
    """One connection's state, shared by its reader, prober and supervising loop."""

    __slots__ = ("attention", "close_reason", "grant", "last_rx", "name", "opened_at", "paused",
                 "shutdown_notice", "ws")

    def __init__(self, name: str, ws: Any, opened_at: float,
                 grant: ListenKeyGrant | None = None) -> None:
        self.name = name
        self.ws = ws
        self.grant = grant
        self.opened_at = opened_at
        self.last_rx = opened_at
        self.paused = False
        self.shutdown_notice = False
        self.close_reason: str | None = None
        self.attention = trio.Event()

    def end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.attention.set()


class _Reader:
    """The hot path both products share: stamp, count, measure lag, buffer, pause if full."""

    def __init__(
        self,
        buffer: EventBuffer,
        counters: StreamCounters,
        stats: UserStreamStats,
        clock: WallClock,
        pause_limit_s: float,
    ) -> None:
        self.buffer = buffer
        self.counters = counters
        self.stats = stats
        assert counters.lag is not None
        self._lags = counters.lag.pending_ms  # binned into the histogram at each flush
        self._now_ms = clock.now_ms
        self._put = buffer.put
        self._pause_limit_s = pause_limit_s

    def accept(self, connection: str, event: UserEvent, now: float) -> bool:
        """A router event read at ``now``: lag metric (wall clock at receipt minus the event
        time; a negative value is clock offset to the venue, counted as 0), then the buffer.
        Returns whether the buffer is now full (then :meth:`pause` before reading on)."""
        self._lags.append(self._now_ms() - event.event_time)
        stats = self.stats
        stats.events += 1
        stats.last_event_at = now
        return self._put(connection, event, now)

    async def pause(self, conn: _Conn) -> bool:
        """The buffer is full: stop reading until it has room (True) or give up (False)."""
        self.stats.backlog_pauses += 1
        conn.paused = True
        log.warning("user data: router is behind (%d events buffered); pausing %s",
                    self.buffer.events, conn.name)
        with trio.move_on_after(self._pause_limit_s):
            await self.buffer.wait_space()
        conn.paused = False
        conn.last_rx = trio.current_time()
        if self.buffer.full:
            log.error("user data: router still behind after %.1f s; giving up %s (the router "
                      "reconciles after the reconnect)", self._pause_limit_s, conn.name)
            conn.end("backlog")
            return False
        return True


# --- futures ----------------------------------------------------------------------------------


class FuturesUserStream:
    """The futures user-data reader actor (see the module docstring)."""

    def __init__(
        self,
        *,
        profile: VenueProfile,
        grants: Published[ListenKeyGrant | None],
        keeper_events: trio.MemorySendChannel[KeyExpired],
        out: trio.MemorySendChannel[UserStreamItem],
        ws: WsConfig,
        metrics: Metrics,
        clock: WallClock = SYSTEM_CLOCK,
        tuning: StreamTuning | None = None,
        rng: random.Random | None = None,
        name: str = "futures-user",
    ) -> None:
        self._profile = profile
        self._grants = grants
        self._keeper_events = keeper_events
        self._out = out
        self._ws = ws
        self._metrics = metrics
        self._clock = clock
        self._tuning = tuning if tuning is not None else StreamTuning()
        self._rng = rng
        self._name = name
        self._seq = 0
        self.stats = UserStreamStats()
        self.counters = StreamCounters(metrics, STREAM_LABEL, lag=True)
        self.policy = ReconnectPolicy.from_config(ws, rng=rng)
        self._probe_interval = ws.stall_timeout_s / 3

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        tuning = self._tuning
        buffer = EventBuffer(self._ws.inbox_size, tuning.batch_max)
        pause = tuning.pause_limit_s if tuning.pause_limit_s is not None \
            else self._ws.stall_timeout_s
        reader = _Reader(buffer, self.counters, self.stats, self._clock, pause)
        self.policy = ReconnectPolicy.from_config(self._ws, rng=self._rng)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(forward, buffer, self._out, progress=ctx.progress,
                                       counters=self.counters, heartbeat_s=tuning.heartbeat_s))
            await self._connections(ctx, reader)
            # Polite stop: hand the router what was read (bounded: the router may be gone).
            with trio.move_on_after(tuning.flush_timeout_s):
                await buffer.wait_empty()
            nursery.cancel_scope.cancel()

    async def _connections(self, ctx: ChildContext, reader: _Reader) -> None:
        policy = self.policy
        hb = self._tuning.heartbeat_s
        dead: ListenKeyGrant | None = None
        counted_reconnects = policy.reconnects
        while not ctx.stop_requested.is_set():
            ctx.progress()
            grant, version = self._grants.value, self._grants.version
            now = trio.current_time()
            if grant is None or grant == dead:
                # No usable key: wait for the keeper to hand out a new one.
                await race([ctx.wait_stop, partial(self._grants.wait_changed, version)],
                           now + hb)
                continue
            if reader.buffer.full:
                await race([ctx.wait_stop, reader.buffer.wait_space], now + hb)
                continue
            step = policy.next_step(now)
            if isinstance(step, SleepUntil):
                await race([ctx.wait_stop], min(step.until, now + hb))
                continue
            if policy.reconnects > counted_reconnects:
                counted_reconnects = policy.reconnects
                self.counters.reconnect()
            self._seq += 1
            if await self._connection(ctx, reader, grant, version,
                                      f"{self._name}-{self._seq}"):
                dead = grant

    async def _connection(
        self, ctx: ChildContext, reader: _Reader, grant: ListenKeyGrant, version: int, name: str
    ) -> bool:
        """One connection from connect to close; True when the venue says the key is dead."""
        policy = self.policy
        conn: _Conn | None = None
        reason = "closed"
        url = futures_user_data_url(self._profile, grant.key)
        try:
            try:
                with trio.CancelScope() as abort:
                    async with open_ws(url,
                                       connect_timeout_s=self._tuning.connect_timeout_s) as ws:
                        now = trio.current_time()
                        policy.on_connected(now)
                        conn = _Conn(name, ws, now, grant)
                        self._up(conn, reader.buffer)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._read, conn, reader)
                            nursery.start_soon(self._probe, conn)
                            reason = await self._watch(ctx, conn, version)
                            nursery.cancel_scope.cancel()
                        if reason in ABORT_REASONS:
                            abort.cancel()
            except ConnectionRejected as exc:
                if conn is not None:
                    raise  # pragma: no cover - rejection happens only during the handshake
                policy.on_connect_failed(trio.current_time())
                if exc.status_code == 400:
                    # Binance refuses the socket for an unknown or expired listenKey.
                    log.warning("user data: socket refused for the listenKey (HTTP 400); "
                                "asking the keeper for a new key")
                    self._report_dead_key(grant.key)
                    return True
                log.warning("user data: connect refused: HTTP %s", exc.status_code)
                return False
            except (HandshakeError, OSError) as exc:
                if conn is None:
                    policy.on_connect_failed(trio.current_time())
                    log.warning("user data: connect failed: %s", type(exc).__name__)
                    return False
                # The socket broke or the closing handshake timed out: it is gone either way.
        finally:
            if conn is not None:
                self._down(conn, reason, reader.buffer)
        return reason == "listen_key_expired"

    def _up(self, conn: _Conn, buffer: EventBuffer) -> None:
        log.info("user data: %s connected", conn.name)
        buffer.notice(StreamUp(conn.name, True, conn.opened_at))
        self.stats.connected = True
        self.stats.connections = 1
        self.counters.connected(True)

    def _down(self, conn: _Conn, reason: str, buffer: EventBuffer) -> None:
        now = trio.current_time()
        if reason == GOING_AWAY:
            # The server ended the socket on purpose (e.g. the 24 h limit): like
            # serverShutdown, reconnect at once rather than after a backoff.
            self.policy.on_server_shutdown(now)
        self.policy.on_closed(now)
        self.counters.flush()
        self.counters.connected(False)
        self.stats.connected = False
        self.stats.connections = 0
        buffer.notice(StreamDown(conn.name, reason, now))
        log.info("user data: %s closed (%s) after %.1f s", conn.name, reason,
                 now - conn.opened_at)

    async def _read(self, conn: _Conn, reader: _Reader) -> None:
        ws = conn.ws
        name = conn.name
        counters = reader.counters
        stats = reader.stats
        accept = reader.accept
        router_types = ROUTER_EVENT_TYPES
        decode = decode_user_frame
        clock = trio.lowlevel.current_clock().current_time  # trio.current_time(), minus lookups
        try:
            while True:
                raw = await ws.get_message()
                now = clock()
                conn.last_rx = stats.last_frame_at = now
                counters.frames += 1
                try:
                    event = decode(raw)
                except MalformedFrame as exc:
                    counters.malformed_frame(exc, name)
                    continue
                if event.__class__ in router_types:
                    full = accept(name, event, now)  # type: ignore[arg-type]
                    if full and not await reader.pause(conn):
                        return
                else:
                    self._control(conn, event)
        except ConnectionClosed as exc:
            conn.end(_closed_reason(exc))

    def _control(self, conn: _Conn, event: object) -> None:
        if isinstance(event, ListenKeyExpired):
            key = None if conn.grant is None else conn.grant.key
            if event.listen_key is None or event.listen_key == key:
                log.warning("user data: listenKeyExpired on %s", conn.name)
                self._report_dead_key(key)
                conn.end("listen_key_expired")
        elif isinstance(event, ServerShutdown):
            log.info("user data: serverShutdown on %s; reconnecting now", conn.name)
            conn.shutdown_notice = True
            conn.attention.set()
        elif isinstance(event, UnknownEvent):
            self.stats.unknown_events += 1
            log.debug("user data: ignoring %s event", event.event_type)
        elif isinstance(event, StreamTerminated):  # pragma: no cover - spot only
            log.debug("user data: ignoring eventStreamTerminated on a futures socket")

    def _report_dead_key(self, key: str | None) -> None:
        try:
            self._keeper_events.send_nowait(KeyExpired(key))
        except trio.WouldBlock:
            # The keeper has this news several times over already; it renews once.
            log.warning("user data: keeper inbox full; dead-key report not queued")

    async def _probe(self, conn: _Conn) -> None:
        """Ping when the socket has been silent for a third of the stall timeout."""
        interval = self._probe_interval
        ws = conn.ws
        while True:
            due = conn.last_rx + interval
            if trio.current_time() < due or conn.paused:
                await trio.sleep_until(max(due, trio.current_time() + (interval if conn.paused
                                                                       else 0.0)))
                continue
            with trio.move_on_after(interval):
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return
                except ValueError:  # pragma: no cover - random payload equal to one in flight
                    continue
                conn.last_rx = self.stats.last_frame_at = max(conn.last_rx,
                                                               trio.current_time())

    async def _watch(self, ctx: ChildContext, conn: _Conn, version: int) -> str:
        """Supervise one connection until it must close; returns the reason."""
        policy = self.policy
        hb = self._tuning.heartbeat_s
        grants = self._grants
        shutdown_seen = False
        while True:
            ctx.progress()
            attention = conn.attention = trio.Event()
            now = trio.current_time()
            self.counters.flush()
            if conn.close_reason is not None:
                return conn.close_reason
            if ctx.stop_requested.is_set():
                return "stop"
            if grants.value != conn.grant:
                # A new key replaces this one: reconnect at once (no backoff; not a failure).
                policy.on_server_shutdown(now)
                return "key_changed" if grants.value is not None else "key_withdrawn"
            if conn.shutdown_notice and not shutdown_seen:
                shutdown_seen = True
                policy.on_server_shutdown(now)
            policy.on_frame(now if conn.paused else conn.last_rx)
            step = policy.next_step(now)
            if isinstance(step, CloseNow):
                if step.reason == "stall":
                    log.warning("user data: %s silent for %.1f s (no frame, no pong); "
                                "reconnecting", conn.name, now - conn.last_rx)
                return step.reason
            assert isinstance(step, ReadUntil)
            self.counters.connected(True, policy.uptime(now))
            deadline = min(step.deadline, now + hb)
            await race([attention.wait, ctx.wait_stop, partial(grants.wait_changed, version)],
                       deadline)


def _closed_reason(exc: ConnectionClosed) -> str:
    reason = getattr(exc, "reason", None)
    code = getattr(reason, "code", None)
    return f"closed:{code}" if code is not None else "closed"


# --- spot -------------------------------------------------------------------------------------


class _SpotConn(_Conn):
    __slots__ = ("announced", "conn_id", "ended", "held", "lost", "session")

    def __init__(self, conn_id: int, name: str, ws: Any, session: WsApiSession,
                 opened_at: float) -> None:
        super().__init__(name, ws, opened_at)
        self.conn_id = conn_id
        self.session = session
        self.announced = False
        self.lost = True  # unless the keeper asks us to close it
        self.held: list[tuple[UserEvent, float]] = []
        self.ended = trio.Event()

    def close(self, reason: str, *, lost: bool) -> None:
        if self.close_reason is None:
            self.lost = lost
        self.end(reason)
        self.ended.set()


class SpotUserStream:
    """The spot user-data actor: runs the :class:`SpotKeeper` and owns its WS-API sockets.

    Implements :class:`~spark.actors.keeper.SpotSockets`. Connection ids come from the keeper's
    schedule; each connection is a task in the actor's nursery with a reader and a prober.
    """

    def __init__(
        self,
        *,
        profile: VenueProfile,
        keeper: SpotKeeper,
        out: trio.MemorySendChannel[UserStreamItem],
        ws: WsConfig,
        metrics: Metrics,
        clock: WallClock = SYSTEM_CLOCK,
        tuning: StreamTuning | None = None,
        name: str = "spot-user",
    ) -> None:
        if profile.ws_api_url is None:
            raise ValueError(f"{profile.mode} has no WebSocket API (spot user data)")
        self._url = profile.ws_api_url
        self.keeper = keeper
        self._out = out
        self._ws = ws
        self._metrics = metrics
        self._clock = clock
        self._tuning = tuning if tuning is not None else StreamTuning()
        self._name = name
        self.stats = UserStreamStats()
        self.counters = StreamCounters(metrics, STREAM_LABEL, lag=True)
        self._probe_interval = ws.stall_timeout_s / 3
        self._conns: dict[int, _SpotConn] = {}
        self._opened = 0
        self._nursery: trio.Nursery | None = None
        self._reader: _Reader | None = None
        self._all_closed = trio.Event()
        # WsApiSession wants an event channel; we read events ourselves and only hand it
        # responses (see _read), so this one never carries anything.
        self._no_events, self._no_events_rx = trio.open_memory_channel[Inbound[Any]](1)

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        tuning = self._tuning
        buffer = EventBuffer(self._ws.inbox_size, tuning.batch_max)
        pause = tuning.pause_limit_s if tuning.pause_limit_s is not None \
            else self._ws.stall_timeout_s
        self._reader = _Reader(buffer, self.counters, self.stats, self._clock, pause)
        self._conns = {}
        task_status.started()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(partial(forward, buffer, self._out, progress=ctx.progress,
                                       counters=self.counters, heartbeat_s=tuning.heartbeat_s))
            nursery.start_soon(self._gauges)
            await self.keeper.drive(ctx, self)
            # The keeper closed every connection; let them finish closing, then flush.
            with trio.move_on_after(tuning.connect_timeout_s):
                while self._conns:
                    self._all_closed = trio.Event()
                    await self._all_closed.wait()
            with trio.move_on_after(tuning.flush_timeout_s):
                await buffer.wait_empty()
            nursery.cancel_scope.cancel()
        self._nursery = None

    # -- SpotSockets -------------------------------------------------------------------------

    async def open(self, conn_id: int) -> None:
        assert self._nursery is not None
        self._opened += 1
        if self._opened > 1:
            self.counters.reconnect()
        try:
            # Names stay unique across restarts (the schedule's ids start again at 1).
            await self._nursery.start(self._connection, conn_id, f"{self._name}-{self._opened}")
        except (HandshakeError, OSError) as exc:
            raise SocketFailed("connect", type(exc).__name__) from None

    async def subscribe(self, conn_id: int, request: Callable[[str], WsApiRequest]) -> int:
        conn = self._conns.get(conn_id)
        if conn is None or conn.close_reason is not None:
            raise SocketFailed("closed")
        try:
            response = await self._ask(conn, request(conn.session.next_id()))
            return response.subscription_id()
        except ConnectionClosed:
            raise SocketFailed("closed") from None
        except TimestampError as exc:
            raise SocketFailed("timestamp", str(exc)) from None
        except ExchangeError as exc:
            raise SocketFailed(exc.reason, str(exc)) from None

    async def status(self, conn_id: int) -> bool | None:
        conn = self._conns.get(conn_id)
        if conn is None or conn.close_reason is not None:
            return None
        try:
            response = await self._ask(
                conn, WsApiRequest(conn.session.next_id(), "session.status"))
        except (ConnectionClosed, SocketFailed):
            return None
        except ExchangeError:
            log.warning("user data: %s did not answer session.status; closing it as stalled",
                        conn.name)
            conn.close("stall", lost=True)
            return None
        if response.error is not None:
            log.warning("user data: session.status refused on %s: %s", conn.name,
                        response.error)
            return None
        result = response.result
        flag = result.get("userDataStream") if isinstance(result, dict) else None
        # A venue that does not report the flag has answered on the subscribed connection;
        # a subscription only ends with eventStreamTerminated, which we would have seen.
        return flag if isinstance(flag, bool) else True

    @staticmethod
    async def _ask(conn: _SpotConn, request: WsApiRequest) -> WsApiResponse:
        """A WS-API request that fails at once when its connection ends.

        ``WsApiSession`` fails a pending request only by its own timeout; when we close a
        connection (a stall) while the keeper waits on it, that would hold the keeper — and
        user data — for the whole ``request_timeout_s``. Raises :class:`SocketFailed`
        (``closed``) then, and whatever the session raises otherwise.
        """
        response: WsApiResponse | None = None
        error: Exception | None = None
        with trio.CancelScope() as gone:

            async def watch() -> None:
                await conn.ended.wait()
                gone.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                try:
                    response = await conn.session.request(request)
                except (ConnectionClosed, ExchangeError) as exc:
                    error = exc
                nursery.cancel_scope.cancel()
        if response is not None:
            return response
        if error is not None:
            raise error
        raise SocketFailed("closed", "the connection ended while the request was pending")

    def announce(self, conn_id: int, gap: bool) -> None:
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        assert self._reader is not None
        buffer = self._reader.buffer
        now = trio.current_time()
        conn.announced = True
        buffer.notice(StreamUp(conn.name, gap, now))
        for event, at in conn.held:
            buffer.put(conn.name, event, at)
        conn.held.clear()
        self.stats.connected = True
        self.counters.connected(True, now - conn.opened_at)

    def close(self, conn_id: int, reason: str) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.close(reason, lost=False)

    # -- connections -------------------------------------------------------------------------

    async def _connection(
        self, conn_id: int, name: str, *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        conn: _SpotConn | None = None
        try:
            try:
                with trio.CancelScope() as abort:
                    async with open_ws(self._url,
                                       connect_timeout_s=self._tuning.connect_timeout_s) as ws:
                        session = WsApiSession(ws, self._no_events, clock=self._clock,
                                               request_timeout_s=self._tuning.request_timeout_s,
                                               id_prefix=name)
                        conn = _SpotConn(conn_id, name, ws, session, trio.current_time())
                        self._conns[conn_id] = conn
                        self.stats.connections = len(self._conns)
                        log.info("user data: %s connected", name)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._read, conn)
                            nursery.start_soon(self._probe, conn)
                            task_status.started()
                            await conn.ended.wait()
                            nursery.cancel_scope.cancel()
                        if conn.close_reason in ABORT_REASONS:
                            abort.cancel()
            except (HandshakeError, OSError):
                if conn is None:
                    raise  # before started(): open() turns it into SocketFailed
                # The socket broke or the closing handshake timed out: gone either way.
        finally:
            if conn is not None:
                self._ended(conn)

    def _ended(self, conn: _SpotConn) -> None:
        reason = conn.close_reason or "closed"
        now = trio.current_time()
        self._conns.pop(conn.conn_id, None)
        assert self._reader is not None
        buffer = self._reader.buffer
        if conn.held:  # events on a subscription never announced: still never dropped
            for event, at in conn.held:
                buffer.put(conn.name, event, at)
            conn.held.clear()
        if conn.announced:
            buffer.notice(StreamDown(conn.name, reason, now))
        if conn.lost:
            try:
                self.keeper.events.send_nowait(ConnectionLost(conn.conn_id))
            except trio.WouldBlock:  # pragma: no cover - a handful of connections at most
                log.error("user data: keeper inbox full; loss of %s not reported", conn.name)
        serving = [c for c in self._conns.values() if c.announced]
        self.stats.connected = bool(serving)
        self.stats.connections = len(self._conns)
        self.counters.flush()
        self.counters.connected(bool(serving),
                                now - serving[-1].opened_at if serving else 0.0)
        log.info("user data: %s closed (%s) after %.1f s", conn.name, reason,
                 now - conn.opened_at)
        if not self._conns:
            self._all_closed.set()

    async def _read(self, conn: _SpotConn) -> None:
        reader = self._reader
        assert reader is not None
        ws = conn.ws
        name = conn.name
        counters = reader.counters
        stats = reader.stats
        accept = reader.accept
        router_types = ROUTER_EVENT_TYPES
        decode = decode_ws_api_frame
        clock = trio.lowlevel.current_clock().current_time  # trio.current_time(), minus lookups
        try:
            while True:
                raw = await ws.get_message()
                now = clock()
                conn.last_rx = stats.last_frame_at = now
                counters.frames += 1
                try:
                    frame = decode(raw)
                except MalformedFrame as exc:
                    counters.malformed_frame(exc, name)
                    continue
                cls = frame.__class__
                if cls in router_types:
                    if not conn.announced:
                        # Between the subscribe answer and the keeper's StreamUp: hold, so
                        # the router sees StreamUp first.
                        conn.held.append((frame, now))  # type: ignore[arg-type]
                        continue
                    full = accept(name, frame, now)  # type: ignore[arg-type]
                    if full and not await reader.pause(conn):
                        conn.close("backlog", lost=True)
                        return
                elif cls is WsApiResponse:
                    conn.session.feed(raw)  # wake the request waiting for this answer
                else:
                    self._control(conn, frame)
        except ConnectionClosed as exc:
            conn.close(_closed_reason(exc), lost=True)

    def _control(self, conn: _SpotConn, event: object) -> None:
        events = self.keeper.events
        try:
            if isinstance(event, StreamTerminated):
                log.warning("user data: eventStreamTerminated on %s", conn.name)
                events.send_nowait(SubscriptionEnded(conn.conn_id))
            elif isinstance(event, ServerShutdown):
                log.info("user data: serverShutdown on %s; handing over to a new connection",
                         conn.name)
                events.send_nowait(ShutdownNotice(conn.conn_id))
            elif isinstance(event, UnknownEvent):
                self.stats.unknown_events += 1
                log.debug("user data: ignoring %s event", event.event_type)
        except trio.WouldBlock:  # pragma: no cover - a handful per connection at most
            log.error("user data: keeper inbox full; %s not reported", type(event).__name__)

    async def _probe(self, conn: _SpotConn) -> None:
        """WS-API ``ping`` after a third of the stall timeout of silence; close when stalled.

        The answer comes back on the same path as the events, so a server that keeps TCP and
        pongs alive but has stopped sending is caught too.
        """
        interval = self._probe_interval
        stall = self._ws.stall_timeout_s
        session = conn.session
        while True:
            now = trio.current_time()
            due = conn.last_rx + interval
            if now < due or conn.paused:
                await trio.sleep_until(max(due, now + (interval if conn.paused else 0.0)))
                continue
            with trio.move_on_after(interval):
                try:
                    await session.request(ping_request(session.next_id()))
                except ConnectionClosed:
                    return
                except ExchangeError:
                    pass  # no answer in time: judged below
            now = trio.current_time()
            if not conn.paused and now >= conn.last_rx + stall:
                log.warning("user data: %s silent for %.1f s (WS-API ping unanswered); "
                            "closing it", conn.name, now - conn.last_rx)
                conn.close("stall", lost=True)
                return

    async def _gauges(self) -> None:
        """Uptime gauge and counter flush for the serving connection, every heartbeat."""
        while True:
            await trio.sleep(self._tuning.heartbeat_s)
            serving = [c for c in self._conns.values() if c.announced]
            now = trio.current_time()
            self.counters.flush()
            if serving:
                self.counters.connected(True, now - serving[-1].opened_at)

