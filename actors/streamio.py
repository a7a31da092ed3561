"""Pieces every websocket reader actor shares: the event buffer, the forwarder, metrics, waits.

The one rule that shapes the readers (see :mod:`spark.exchange.wsconn`): **a socket is drained
at once.** trio-websocket stops reading the TCP stream — and so stops answering the server's
pings — while its own small message queue is full, and Binance drops a client that has not
ponged within a minute. So a reader task does nothing but ``get_message`` → decode → put into an
:class:`EventBuffer`, a plain synchronous step that never waits on the consumer.

Towards the router the opposite rule holds: **user-data events are never dropped.** The
:func:`forward` task takes batches out of the buffer and ``await``s the bounded router channel,
so a slow router applies backpressure to the forwarder, and the buffer absorbs it. Only when
the buffer itself is full does a reader stop reading (:meth:`EventBuffer.wait_space`): that
pushes the backpressure down to TCP (the venue queues for us), bounded in time by the reader
(after ``pause_limit_s`` it gives the connection up; the router then reconciles). Nothing that
was read off a socket is ever discarded.

Batches: the buffer appends each event to the batch at its tail (one batch per connection run,
at most ``batch_max`` events), so whatever accumulated while the router was busy leaves as one
:class:`~spark.actors.messages.UserEvents`. The forwarder also lets a burst finish before it cuts
a batch (it yields while the readers keep adding, and in a sustained burst waits up to
``_BURST_WAIT_S`` for ``_BURST_BATCH`` events): per-batch costs — a channel hand-over, a task
switch into the router — are then paid once per tens of events rather than per event, which is
what keeps ingest close to a bare websocket client (``bench/ingest.py``). ``StreamUp`` /
``StreamDown`` notices travel through the same FIFO, so the router sees them in order with the
events around them.

"Bounded channel" here is :class:`EventBuffer` rather than a ``trio`` memory channel because a
channel cannot batch, cannot be paused against by capacity in events while staying non-blocking
for the writer, and cannot carry order-preserving notices outside its capacity.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
from prometheus_client import Histogram

from spark.actors.messages import StreamDown, StreamUp, UserEvent, UserEvents, UserStreamItem
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import (
    AccountPosition,
    BalanceUpdate,
    ExecutionEvent,
    FuturesAccountUpdate,
)
from spark.runtime.metrics import Metrics

__all__ = [
    "ROUTER_EVENT_TYPES",
    "EventBuffer",
    "LagHistogram",
    "StreamCounters",
    "UserStreamStats",
    "Waiter",
    "forward",
    "race",
]

log = logging.getLogger("spark.actors.streams")

ROUTER_EVENT_TYPES: frozenset[type] = frozenset(
    {ExecutionEvent, AccountPosition, BalanceUpdate, FuturesAccountUpdate}
)
"""Decoded user-data events the router consumes (the others are the keeper's business)."""

Waiter = Callable[[], Awaitable[object]]


class _Batch:
    __slots__ = ("connection", "events", "received_at")

    def __init__(self, connection: str, received_at: float, event: UserEvent) -> None:
        self.connection = connection
        self.received_at = received_at
        self.events: list[UserEvent] = [event]


class EventBuffer:
    """A bounded FIFO of user-data events (batched per connection) and stream notices.

    :meth:`put` never blocks and never drops; it may take the buffer past ``capacity`` by the
    one event a reader has in hand, after which that reader must :meth:`wait_space` before
    reading on. Notices do not count towards the capacity (there are a few per connection).
    """

    def __init__(self, capacity: int, batch_max: int = 512) -> None:
        if capacity < 1 or batch_max < 1:
            raise ValueError("capacity and batch_max must be >= 1")
        self._capacity = capacity
        self._batch_max = batch_max
        self._items: deque[_Batch | StreamUp | StreamDown] = deque()
        self._events = 0
        self._nonempty = trio.Event()
        self._space = trio.Event()
        self._space.set()
        self._empty = trio.Event()
        self._empty.set()
        self._ripe = trio.Event()
        self._ripe_at = math.inf
        self.high_water = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def batch_max(self) -> int:
        return self._batch_max

    @property
    def events(self) -> int:
        """Events held (notices not counted)."""
        return self._events

    def __len__(self) -> int:
        """Items held: batches and notices."""
        return len(self._items)

    @property
    def full(self) -> bool:
        return self._events >= self._capacity

    def put(self, connection: str, event: UserEvent, received_at: float) -> None:
        """Append ``event`` (synchronous: a reader calls this between two socket reads)."""
        items = self._items
        tail = items[-1] if items else None
        if (
            type(tail) is _Batch
            and tail.connection == connection
            and len(tail.events) < self._batch_max
        ):
            events = tail.events
            events.append(event)
            if len(events) >= self._ripe_at:
                self._ripe.set()
        else:
            items.append(_Batch(connection, received_at, event))
        self._events += 1
        if self._events > self.high_water:
            self.high_water = self._events
        self._mark_nonempty()
        if self._events >= self._capacity and self._space.is_set():
            self._space = trio.Event()

    def notice(self, item: StreamUp | StreamDown) -> None:
        """Queue a ``StreamUp`` / ``StreamDown`` behind the events already held."""
        self._items.append(item)
        self._mark_nonempty()

    async def wait_space(self) -> None:
        """Until the buffer is below its capacity again."""
        while self._events >= self._capacity:
            await self._space.wait()

    async def wait_empty(self) -> None:
        """Until everything held has been taken (used for the flush at shutdown)."""
        while self._items:
            await self._empty.wait()

    @property
    def tail_open(self) -> bool:
        """Whether the newest item is a batch that can still grow."""
        tail = self._items[-1] if self._items else None
        return type(tail) is _Batch and len(tail.events) < self._batch_max

    async def wait_ripe(self, size: int, deadline: float) -> None:
        """Until the newest batch holds ``size`` events (or is closed), or ``deadline``."""
        tail = self._items[-1] if self._items else None
        if type(tail) is not _Batch or len(tail.events) >= size:
            return
        self._ripe = trio.Event()
        self._ripe_at = size
        try:
            with trio.move_on_at(deadline):
                await self._ripe.wait()
        finally:
            self._ripe_at = math.inf

    async def wait_nonempty(self) -> None:
        while not self._items:
            waiter = self._nonempty
            if waiter.is_set():
                waiter = self._nonempty = trio.Event()
            await waiter.wait()

    async def take(self) -> UserStreamItem:
        """The next item for the router: a whole batch (as ``UserEvents``) or a notice."""
        while not self._items:
            waiter = self._nonempty
            if waiter.is_set():
                waiter = self._nonempty = trio.Event()
            await waiter.wait()
        return self._pop()

    def take_nowait(self) -> UserStreamItem | None:
        return self._pop() if self._items else None

    def _pop(self) -> UserStreamItem:
        item = self._items.popleft()
        if not self._items:
            self._empty.set()
        if type(item) is not _Batch:
            return item  # type: ignore[return-value]
        batch = item
        self._events -= len(batch.events)
        if self._events < self._capacity:
            self._space.set()
        return UserEvents(tuple(batch.events), batch.received_at, batch.connection)

    def _mark_nonempty(self) -> None:
        if self._empty.is_set():
            self._empty = trio.Event()
        self._nonempty.set()


class LagHistogram:
    """``spark_ingest_lag_seconds`` observed per event, added to Prometheus in bulk.

    prometheus_client has no bulk observe, and ``Histogram.observe`` takes two locks per call
    (about 2 µs, a visible share of the per-event budget). So readers count into local buckets
    with the histogram's own bounds (same ``le`` rule: the first bound >= the value) and
    :meth:`flush` adds the counts — per batch, so the exported series lag by one batch at most.
    If the client library's internals are not what this expects, it falls back to ``observe``
    per value.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        bounds = getattr(histogram, "_upper_bounds", None)
        buckets = getattr(histogram, "_buckets", None)
        total = getattr(histogram, "_sum", None)
        self._bulk = (
            isinstance(bounds, list) and isinstance(buckets, list)
            and len(bounds) == len(buckets) and bool(bounds) and bounds[-1] == math.inf
            and all(hasattr(b, "inc") for b in buckets) and hasattr(total, "inc")
        )
        self._bounds: list[float] = list(bounds) if self._bulk else []  # type: ignore[arg-type]
        self._buckets: list[Any] = list(buckets) if self._bulk else []  # type: ignore[arg-type]
        self._total: Any = total
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._pending = 0
        if not self._bulk:
            log.warning("prometheus_client internals changed; observing lags one by one")

    def observe(self, seconds: float) -> None:
        if self._bulk:
            self._counts[bisect_left(self._bounds, seconds)] += 1
            self._sum += seconds
            self._pending += 1
        else:
            self._histogram.observe(seconds)

    def flush(self) -> None:
        if not self._pending:
            return
        counts, buckets = self._counts, self._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._total.inc(self._sum)
        self._sum = 0.0
        self._pending = 0


class StreamCounters:
    """One stream's ``spark_ws_*`` series (label ``stream``), with cheap hot-path counting.

    Readers bump plain ints per frame (``frames``); :meth:`flush` moves the increase into the
    Prometheus counter, so the per-frame cost is an integer add instead of a locked
    ``Counter.inc``. Flushed by the forwarder after each batch and by the connection loops on
    every wake-up.
    """

    def __init__(self, metrics: Metrics, stream: str, *, lag: bool = False) -> None:
        self.stream = stream
        self.lag: LagHistogram | None = LagHistogram(metrics.ingest_lag_seconds) if lag \
            else None
        self._messages = metrics.ws_messages_total.labels(stream)
        self._malformed = metrics.ws_malformed_total.labels(stream)
        self._reconnects = metrics.ws_reconnect_total.labels(stream)
        self._connected = metrics.ws_connected.labels(stream)
        self._uptime = metrics.ws_connection_uptime_seconds.labels(stream)
        self._connected.set(0)
        self._uptime.set(0)
        self.frames = 0
        self._flushed = 0
        self.malformed = 0
        self.reconnects = 0

    def flush(self) -> None:
        delta = self.frames - self._flushed
        if delta:
            self._flushed = self.frames
            self._messages.inc(delta)
        if self.lag is not None:
            self.lag.flush()

    def malformed_frame(self, exc: MalformedFrame, connection: str) -> None:
        """Count and log a frame that is not Binance's shape; the reader carries on."""
        self.malformed += 1
        self._malformed.inc()
        # exc.raw is already truncated and stripped of listenKeys/signatures.
        log.warning("%s: malformed frame skipped on %s: %s", self.stream, connection, exc)

    def reconnect(self) -> None:
        self.reconnects += 1
        self._reconnects.inc()

    def connected(self, up: bool, uptime_s: float = 0.0) -> None:
        self._connected.set(1 if up else 0)
        self._uptime.set(uptime_s if up else 0.0)


@attrs.define
class UserStreamStats:
    """Health of the user-data stream, for ``/api/public/health`` → ``venue``.

    ``connected``: a subscribed user-data connection is up. ``last_frame_at``: monotonic time
    of the last frame read from any user-data connection (events are rare when idle; frames
    include responses to our own probes, so a healthy idle stream stays fresh).
    """

    connected: bool = False
    connections: int = 0
    last_frame_at: float | None = None
    last_event_at: float | None = None
    events: int = 0
    unknown_events: int = 0
    backlog_pauses: int = 0

    def last_event_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the last user-data *event* (None: none yet)."""
        if self.last_event_at is None:
            return None
        return max(0.0, (trio.current_time() if now is None else now) - self.last_event_at)

    def last_frame_age_s(self, now: float | None = None) -> float | None:
        if self.last_frame_at is None:
            return None
        return max(0.0, (trio.current_time() if now is None else now) - self.last_frame_at)


async def forward(
    buffer: EventBuffer,
    out: trio.MemorySendChannel[UserStreamItem],
    *,
    progress: Callable[[], None],
    counters: StreamCounters,
    heartbeat_s: float,
) -> None:
    """Move items from ``buffer`` to the router, in order, awaiting the bounded channel.

    Calls ``progress`` at least every ``heartbeat_s`` while idle or while the router holds us
    back (being backpressured is waiting, not being stuck; a stuck router has its own stall
    deadline).
    """
    burst_batch = min(_BURST_BATCH, buffer.batch_max)
    while True:
        if not len(buffer):
            progress()
            with trio.move_on_after(heartbeat_s):
                await buffer.wait_nonempty()
            continue
        # Let the readers finish the burst they are in before cutting the batch: yield while
        # they keep adding (a reader adds what the socket already holds, one frame per
        # scheduling round; a round or two without growth means it is waiting for the
        # network). Costs a scheduling round of latency when idle; under load it makes one
        # batch and one hand-over out of many events instead of one per event.
        held, quiet, rounds = -1, 0, 0
        while quiet < _QUIET_ROUNDS and buffer.tail_open:
            if buffer.events == held:
                quiet += 1
            else:
                held, quiet = buffer.events, 0
            rounds += 1
            if rounds > _SPIN_ROUNDS:
                # A sustained burst: stop taking a scheduling round per frame; let the batch
                # fill up to a good size (or a couple of milliseconds pass).
                await buffer.wait_ripe(burst_batch, trio.current_time() + _BURST_WAIT_S)
                break
            await trio.lowlevel.cancel_shielded_checkpoint()
        item = buffer.take_nowait()
        assert item is not None
        try:
            out.send_nowait(item)
        except trio.WouldBlock:
            while True:  # backpressure: the router is behind
                progress()
                with trio.move_on_after(heartbeat_s):
                    await out.send(item)
                    break
        progress()
        counters.flush()


_QUIET_ROUNDS = 2
"""Scheduling rounds without a new event after which a reader is taken to be waiting."""
_SPIN_ROUNDS = 16
"""Rounds spent collecting a burst one frame at a time before waiting for a full batch."""
_BURST_BATCH = 64
_BURST_WAIT_S = 0.002
"""Most a burst's batch is held back for: bounds the latency this batching adds."""


async def race(waiters: Sequence[Waiter], deadline: float = math.inf) -> int | None:
    """Run ``waiters`` concurrently until the first returns; its index, or None at ``deadline``.

    The others are cancelled. For the rare waits of the connection and keeper loops (never per
    frame), where one of several things may need attention.
    """
    winner: list[int] = []

    async def run(index: int, waiter: Waiter, scope: trio.CancelScope) -> None:
        await waiter()
        if not winner:
            winner.append(index)
        scope.cancel()

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for i, w in enumerate(waiters):
                nursery.start_soon(run, i, w, nursery.cancel_scope)
    return winner[0] if winner else None
