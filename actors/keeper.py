"""The listenKey keeper: keeps the *user-data credential* alive, never a socket.

Binance has two different user-data credentials (``shared/binance/NOTES.md``), and the keeper
drives the matching sans-IO schedule of :mod:`spark.core.listenkey` for each:

**USD-M futures — :class:`FuturesKeeper`, an actor of its own.** The credential is a listenKey,
a bearer token that lives on the REST side: ``POST /fapi/v1/listenKey`` creates it, a ``PUT``
every ``keepalive_interval_s`` extends it, ``-1125`` on a PUT (or ``listenKeyExpired`` reported
by the reader) means "create a new one", and ``DELETE`` at shutdown closes it. The keeper
publishes the key it holds (``Published[ListenKeyGrant | None]``); the user-data reader
(:class:`~spark.actors.user_stream.FuturesUserStream`) connects with whatever key is published
and reconnects when it changes. The reader reports ``listenKeyExpired`` (or a socket refused
for its key) back on :attr:`FuturesKeeper.events`.

**Spot — :class:`SpotKeeper`, a component of the spot user-data actor.** The credential is a
WebSocket-API subscription (``userDataStream.subscribe.signature``), and it lives *on a
connection*: it ends with its socket, and every connection ends within 24 h. So the keeper
cannot hold it apart from a socket; instead it decides and the socket owner acts. The keeper
owns the API credentials and the :class:`~spark.core.listenkey.SpotSubscriptionSchedule` (when
to open a connection, subscribe on it, rotate before 24 h without a gap, close the old one,
resubscribe after ``eventStreamTerminated`` or a drop) and signs each subscribe request; the
socket owner (:class:`~spark.actors.user_stream.SpotUserStream`, through the
:class:`SpotSockets` protocol) opens and closes the connections, sends the signed request and
reports what happens to each connection. Both run in one actor task tree, because a
subscription cannot outlive its connection anyway; the split is by responsibility: the keeper
never touches a socket, the socket owner never sees the API secret.

**The spot keepalive check.** Spot subscriptions need no keepalive, but operations alert on "no
listenKey keepalive in 40 min" (``spark_listenkey_keepalive_total``). So every
``keepalive_interval_s`` the keeper asks the primary connection for ``session.status`` and
counts a keepalive when Binance confirms ``userDataStream: true`` — a real check, not a fake
tick: ``false`` means the subscription is gone (resubscribe), no answer means the connection is
stalled (the socket owner closes it and a new one is subscribed).

Counters (CONTRACT §6): ``spark_listenkey_keepalive_total`` = futures PUTs that succeeded,
spot seamless rotations and spot keepalive checks; ``spark_listenkey_renewals_total`` = new
futures keys replacing a lost one and spot subscriptions made after coverage was lost.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from spark.actors.streamio import race
from spark.config.schema import ListenKeyConfig
from spark.core.listenkey import (
    CloseOld,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    CreateKey,
    DeleteKey,
    FuturesKeySchedule,
    FuturesResult,
    Keepalive,
    KeepaliveOk,
    KeyCreated,
    KeyDeleted,
    KeyExpired,
    KeyUnknown,
    OpenRotation,
    RequestFailed,
    SpotEvent,
    SpotResult,
    SpotSubscriptionSchedule,
    Stopped,
    Subscribe,
    Subscribed,
    SubscribeFailed,
    SubscriptionEnded,
    Wait,
)
from spark.core.published import Published
from spark.exchange.credentials import Credentials
from spark.exchange.errors import ExchangeError, UnknownListenKey
from spark.exchange.rest import RestClient
from spark.exchange.wsapi_codec import WsApiRequest, subscribe_signature_request
from spark.runtime.metrics import Metrics
from spark.supervision import ChildContext

__all__ = [
    "FuturesKeeper",
    "KeeperStats",
    "ListenKeyGrant",
    "SocketFailed",
    "SpotKeeper",
    "SpotSockets",
]

log = logging.getLogger("spark.actors.keeper")


@attrs.frozen
class ListenKeyGrant:
    """The listenKey the reader should connect with, as the keeper hands it out.

    ``generation`` grows with every hand-out (over the keeper object's whole life, restarts
    included), so handing out the *same* key again after a reported failure — Binance's POST
    returns the live key when there is one — is still a change the reader sees and acts on.
    The key is a bearer credential: it is kept out of ``repr``.
    """

    key: str = attrs.field(repr=False)
    generation: int


@attrs.define
class KeeperStats:
    """What the keeper has done, for health and tests (never the key itself)."""

    has_credential: bool = False
    keepalives: int = 0  # as counted in spark_listenkey_keepalive_total
    renewals: int = 0  # as counted in spark_listenkey_renewals_total
    checks: int = 0  # spot: confirmed session.status keepalive checks
    failures: int = 0  # requests / connects / subscribes that failed
    last_keepalive_at: float | None = None  # monotonic


class _CounterSync:
    """Moves a schedule's own counters into the Prometheus counters (by their increase)."""

    def __init__(self, metrics: Metrics, stats: KeeperStats) -> None:
        self._keepalive = metrics.listenkey_keepalive_total
        self._renewals = metrics.listenkey_renewals_total
        self._stats = stats
        self._seen_keepalives = 0
        self._seen_renewals = 0

    def sync(self, keepalives: int, renewals: int) -> None:
        if keepalives > self._seen_keepalives:
            self.keepalive(keepalives - self._seen_keepalives)
            self._seen_keepalives = keepalives
        if renewals > self._seen_renewals:
            delta = renewals - self._seen_renewals
            self._seen_renewals = renewals
            self._renewals.inc(delta)
            self._stats.renewals += delta

    def keepalive(self, n: int = 1) -> None:
        self._keepalive.inc(n)
        self._stats.keepalives += n
        self._stats.last_keepalive_at = trio.current_time()


# --- futures ----------------------------------------------------------------------------------


class FuturesKeeper:
    """The futures listenKey keeper actor (see the module docstring).

    ``run`` is a supervised entry point. The schedule is rebuilt on every start: a restarted
    keeper POSTs, and Binance hands back the live key (extended) if there is one, so the reader
    keeps its connection. On a polite stop the key is DELETEd (shielded, at most
    ``delete_timeout_s``) and ``None`` is published.
    """

    def __init__(
        self,
        rest: RestClient,
        config: ListenKeyConfig,
        metrics: Metrics,
        *,
        grant: Published[ListenKeyGrant | None] | None = None,
        inbox_size: int = 16,
        request_timeout_s: float = 15.0,
        delete_timeout_s: float = 3.0,
        heartbeat_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._rest = rest
        self._config = config
        self._metrics = metrics
        self.grant: Published[ListenKeyGrant | None] = (
            grant if grant is not None else Published(None))
        self._generation = 0
        # The reader's reports (listenKeyExpired, a socket refused for its key). Bounded and
        # tiny: each report says the same thing ("this key is dead"), and the reader sends
        # one per connection at most.
        self._events_send, self._events = trio.open_memory_channel[KeyExpired](inbox_size)
        self._request_timeout_s = request_timeout_s
        self._delete_timeout_s = delete_timeout_s
        self._heartbeat_s = heartbeat_s
        self._rng = rng
        self.stats = KeeperStats()
        self._sync = _CounterSync(metrics, self.stats)

    @property
    def events(self) -> trio.MemorySendChannel[KeyExpired]:
        """Where the user-data reader reports a dead key."""
        return self._events_send

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        schedule = FuturesKeySchedule(self._config, rng=self._rng)
        self._sync = _CounterSync(self._metrics, self.stats)  # a fresh schedule counts from 0
        self._drain_stale()
        stopping = False
        task_status.started()
        while True:
            ctx.progress()
            now = trio.current_time()
            if not stopping and ctx.stop_requested.is_set():
                stopping = True
                schedule.stop(now)
            self._take_events(schedule, now)
            action = schedule.next_action(now)
            if isinstance(action, Stopped):
                self._publish(None)
                return
            if isinstance(action, Connect):
                self._publish(action.listen_key)
                continue
            if isinstance(action, Wait):
                await self._wait(ctx, schedule, action.until, stopping)
                continue
            if isinstance(action, DeleteKey):
                result: FuturesResult = RequestFailed("shutdown")
                with trio.CancelScope(shield=True), trio.move_on_after(self._delete_timeout_s):
                    result = await self._perform(action)
            elif isinstance(action, CreateKey | Keepalive):
                result = await self._perform(action)
            else:  # pragma: no cover - spot actions never come from the futures schedule
                raise TypeError(f"unexpected futures action {type(action).__name__}")
            schedule.on_result(result, trio.current_time())
            self._sync.sync(schedule.keepalives, schedule.renewals)
            if isinstance(result, RequestFailed):
                self.stats.failures += 1

    def _publish(self, key: str | None) -> None:
        if key is None:
            if self.grant.value is not None:
                log.info("listenKey withdrawn")
            self.grant.set(None)
        else:
            self._generation += 1
            log.info("listenKey handed to the reader (generation %d)", self._generation)
            self.grant.set(ListenKeyGrant(key, self._generation))
        self.stats.has_credential = key is not None

    def _drain_stale(self) -> None:
        # Reports addressed to a previous incarnation's key: the new schedule starts from a
        # POST anyway, which returns the live key or a new one.
        while True:
            try:
                self._events.receive_nowait()
            except trio.WouldBlock:
                return

    def _take_events(self, schedule: FuturesKeySchedule, now: float) -> None:
        while True:
            try:
                event = self._events.receive_nowait()
            except trio.WouldBlock:
                return
            log.warning("listenKey reported expired by the user-data reader; renewing")
            schedule.on_event(event, now)

    async def _wait(
        self, ctx: ChildContext, schedule: FuturesKeySchedule, until: float | None, stopping: bool
    ) -> None:
        """Until ``until`` (at most a heartbeat), a report from the reader, or a stop request."""
        now = trio.current_time()
        deadline = min(math.inf if until is None else until, now + self._heartbeat_s)
        got: list[KeyExpired] = []

        async def report() -> None:
            got.append(await self._events.receive())

        await race([report] if stopping else [report, ctx.wait_stop], deadline)
        for event in got:
            log.warning("listenKey reported expired by the user-data reader; renewing")
            schedule.on_event(event, trio.current_time())

    async def _perform(self, action: CreateKey | Keepalive | DeleteKey) -> FuturesResult:
        """One REST call, bounded; every failure becomes a result the schedule understands."""
        rest = self._rest
        try:
            with trio.fail_after(self._request_timeout_s):
                if isinstance(action, CreateKey):
                    return KeyCreated(await rest.futures_create_listen_key())
                if isinstance(action, Keepalive):
                    returned = await rest.futures_keepalive_listen_key()
                    if returned is not None and returned != action.key:
                        # Binance extended *another* key of this account: ours is not the
                        # live one any more; POST to learn which one is.
                        return KeyUnknown(action.key)
                    return KeepaliveOk(action.key)
                await rest.futures_close_listen_key()
                return KeyDeleted()
        except UnknownListenKey:
            if isinstance(action, Keepalive):
                log.warning("listenKey keepalive answered -1125: the key is gone; renewing")
                return KeyUnknown(action.key)
            if isinstance(action, DeleteKey):
                return KeyDeleted()  # already gone: nothing left to close
            return RequestFailed("unknown_listen_key")
        except ExchangeError as exc:
            log.warning("listenKey %s failed: %s", _op_name(action), exc)
            return RequestFailed(exc.reason)
        except trio.TooSlowError:
            log.warning("listenKey %s timed out", _op_name(action))
            return RequestFailed("timeout")


def _op_name(action: CreateKey | Keepalive | DeleteKey) -> str:
    if isinstance(action, CreateKey):
        return "create"
    return "keepalive" if isinstance(action, Keepalive) else "delete"


# --- spot -------------------------------------------------------------------------------------


class SocketFailed(Exception):
    """A spot socket operation failed; ``reason`` is a short stable code for logs/results."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class SpotSockets(Protocol):
    """What the spot keeper needs from the socket owner (one WS-API connection per id)."""

    async def open(self, conn_id: int) -> None:
        """Open WS-API connection ``conn_id``; raises :class:`SocketFailed`."""

    async def subscribe(self, conn_id: int, request: Callable[[str], WsApiRequest]) -> int:
        """Send ``request(request_id)`` on ``conn_id``; the subscription id, or
        :class:`SocketFailed`."""

    async def status(self, conn_id: int) -> bool | None:
        """``session.status`` on ``conn_id``: whether the user-data subscription is active;
        None when there was no usable answer (a connection that does not answer is closed as
        stalled and reported lost)."""

    def announce(self, conn_id: int, gap: bool) -> None:
        """``conn_id``'s subscription now serves user data (``StreamUp(gap)`` to the router)."""

    def close(self, conn_id: int, reason: str) -> None:
        """Close ``conn_id`` (not reported back as lost)."""


class SpotKeeper:
    """Drives :class:`~spark.core.listenkey.SpotSubscriptionSchedule` over :class:`SpotSockets`.

    ``timestamp`` returns the server-adjusted epoch ms for signing (e.g. the REST client's time
    offset applied to the wall clock); ``resync_time``, if given, re-measures that offset after
    a subscribe is refused for its timestamp (-1021).
    """

    def __init__(
        self,
        credentials: Credentials,
        config: ListenKeyConfig,
        metrics: Metrics,
        *,
        timestamp: Callable[[], int],
        resync_time: Callable[[], Awaitable[object]] | None = None,
        recv_window_ms: int | None = None,
        inbox_size: int = 64,
        heartbeat_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._credentials = credentials
        self._config = config
        self._metrics = metrics
        self._timestamp = timestamp
        self._resync_time = resync_time
        self._recv_window_ms = recv_window_ms
        self._heartbeat_s = heartbeat_s
        self._rng = rng
        # Reports from the socket owner: eventStreamTerminated, serverShutdown, a lost
        # connection. A handful per connection; sent with send_nowait from socket tasks.
        self._events_send, self._events = trio.open_memory_channel[SpotEvent](inbox_size)
        self.stats = KeeperStats()
        self._sync = _CounterSync(metrics, self.stats)
        self.schedule: SpotSubscriptionSchedule | None = None

    @property
    def events(self) -> trio.MemorySendChannel[SpotEvent]:
        return self._events_send

    def signed_subscribe(self, request_id: str) -> WsApiRequest:
        """A freshly signed ``userDataStream.subscribe.signature`` (the secret stays here)."""
        return subscribe_signature_request(
            request_id, self._credentials, self._timestamp(), self._recv_window_ms
        )

    async def drive(self, ctx: ChildContext, sockets: SpotSockets) -> None:
        """Run the schedule until a polite stop has closed every connection."""
        schedule = self.schedule = SpotSubscriptionSchedule(self._config, rng=self._rng)
        self._sync = _CounterSync(self._metrics, self.stats)
        self._drain(None, 0.0)  # reports about a previous incarnation's connections
        interval = self._config.keepalive_interval_s
        next_check: float | None = None
        stopping = False
        while True:
            ctx.progress()
            now = trio.current_time()
            if not stopping and ctx.stop_requested.is_set():
                stopping = True
                schedule.stop(now)
            self._drain(schedule, now)
            primary = schedule.primary
            if not stopping and primary is not None and next_check is not None \
                    and now >= next_check:
                await self._check(schedule, sockets, primary)
                next_check = trio.current_time() + interval
                continue
            action = schedule.next_action(now)
            if isinstance(action, Stopped):
                self.stats.has_credential = False
                return
            if isinstance(action, Connect | OpenRotation):
                result: SpotResult
                try:
                    await sockets.open(action.conn_id)
                    result = Connected(action.conn_id)
                except SocketFailed as exc:
                    log.warning("spot user data: connection %d failed: %s", action.conn_id, exc)
                    self.stats.failures += 1
                    result = ConnectFailed(action.conn_id, exc.reason)
                schedule.on_result(result, trio.current_time())
            elif isinstance(action, Subscribe):
                await self._subscribe(schedule, sockets, action.conn_id)
                if schedule.primary == action.conn_id and not stopping:
                    next_check = trio.current_time() + interval
            elif isinstance(action, CloseOld):
                log.info("spot user data: closing connection %d (%s)", action.conn_id,
                         action.reason)
                sockets.close(action.conn_id, action.reason)
            elif isinstance(action, Wait):
                until = math.inf if action.until is None else action.until
                if next_check is not None and not stopping:
                    until = min(until, next_check)
                await self._wait(ctx, schedule, min(until, now + self._heartbeat_s), stopping)
            self._sync.sync(schedule.keepalives, schedule.renewals)
            self.stats.has_credential = schedule.primary is not None

    async def _subscribe(
        self, schedule: SpotSubscriptionSchedule, sockets: SpotSockets, conn_id: int
    ) -> None:
        result: SpotResult
        try:
            sub = await sockets.subscribe(conn_id, self.signed_subscribe)
            result = Subscribed(conn_id, sub)
        except SocketFailed as exc:
            log.warning("spot user data: subscribe on connection %d failed: %s", conn_id, exc)
            self.stats.failures += 1
            result = SubscribeFailed(conn_id, exc.reason)
            if exc.reason == "timestamp" and self._resync_time is not None:
                with trio.move_on_after(10.0):
                    try:
                        await self._resync_time()
                    except ExchangeError as sync_exc:
                        log.warning("server time resync failed: %s", sync_exc)
        schedule.on_result(result, trio.current_time())
        if isinstance(result, Subscribed) and schedule.primary == conn_id:
            gap = schedule.take_reconcile_due()
            log.info("spot user data: subscribed on connection %d (%s)", conn_id,
                     "after a gap" if gap else "seamless hand-over")
            sockets.announce(conn_id, gap)

    async def _check(
        self, schedule: SpotSubscriptionSchedule, sockets: SpotSockets, primary: int
    ) -> None:
        active = await sockets.status(primary)
        if active is True:
            self.stats.checks += 1
            self._sync.keepalive()
        elif active is False:
            log.warning("spot user data: session.status says the subscription on connection "
                        "%d is gone; resubscribing", primary)
            schedule.on_event(SubscriptionEnded(primary), trio.current_time())
        # None: no answer; the socket owner closed the connection and reports it lost.

    def _drain(self, schedule: SpotSubscriptionSchedule | None, now: float) -> None:
        while True:
            try:
                event = self._events.receive_nowait()
            except trio.WouldBlock:
                return
            if schedule is not None:
                self._handle(schedule, event, now)

    @staticmethod
    def _handle(schedule: SpotSubscriptionSchedule, event: SpotEvent, now: float) -> None:
        if isinstance(event, ConnectionLost):
            log.warning("spot user data: connection %d lost", event.conn_id)
        else:
            log.info("spot user data: %s on connection %d", type(event).__name__, event.conn_id)
        schedule.on_event(event, now)

    async def _wait(
        self, ctx: ChildContext, schedule: SpotSubscriptionSchedule, deadline: float,
        stopping: bool,
    ) -> None:
        """Until ``deadline``, a report from the socket owner, or a stop request."""
        got: list[SpotEvent] = []

        async def report() -> None:
            got.append(await self._events.receive())

        await race([report] if stopping else [report, ctx.wait_stop], deadline)
        for event in got:
            self._handle(schedule, event, trio.current_time())
