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
a batch: it waits until the process is idle — no task runnable and no I/O ready, i.e. the
readers have drained what their sockets hold — or the batch holds ``_BURST_BATCH`` events, or
``_BURST_WAIT_S`` has passed (:meth:`EventBuffer.wait_ripe`). An isolated event therefore leaves
within a scheduling round or two, and a sustained burst in batches of tens of events, without
the forwarder being scheduled per event (it used to yield once per scheduling round to watch the
batch grow: a task switch per frame, a tenth of a bare client's cost per frame). Per-batch costs
— a channel hand-over, a task switch into the router — are paid once per tens of events rather
than per event, which is what keeps ingest close to a bare websocket client
(``bench/ingest.py``). ``StreamUp`` / ``StreamDown`` notices travel through the same FIFO, so the
router sees them in order with the events around them.

"Bounded channel" here is :class:`EventBuffer` rather than a ``trio`` memory channel because a
channel cannot batch, cannot be paused against by capacity in events while staying non-blocking
for the writer, and cannot carry order-preserving notices outside its capacity.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
from prometheus_client import Histogram
from trio.testing import wait_all_tasks_blocked

from spark.actors.messages import StreamDown, StreamUp, UserEvent, UserEvents, UserStreamItem
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import (
    AccountPosition,
    BalanceUpdate,
    ExecutionEvent,
    FuturesAccountUpdate,
)
from spark.runtime.metrics import Metrics, histogram_parts

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
        self._ripe_scope: trio.CancelScope | None = None  # wait_ripe's, while it waits
        self._ripe_at = math.inf
        self._tail: _Batch | None = None  # the newest item if it is a batch that can grow
        self._high_water = 0  # as of the last take; see high_water

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

    @property
    def high_water(self) -> int:
        """The most events held at once. Events only leave by a take, so the peak since the
        last take is the count right now: tracked per take, not per put."""
        return max(self._high_water, self._events)

    def put(self, connection: str, event: UserEvent, received_at: float) -> bool:
        """Append ``event`` (synchronous: a reader calls this between two socket reads).

        Returns whether the buffer is now full: the reader must :meth:`wait_space` before it
        reads on. Appending to the open batch (the common case under load) touches no
        ``trio.Event``: the buffer was already marked non-empty when the batch was opened.
        """
        tail = self._tail
        if tail is not None and tail.connection == connection:
            events = tail.events
            events.append(event)
            size = len(events)
            if size >= self._ripe_at:
                self._ripen()
            if size >= self._batch_max:
                self._tail = None  # closed: the next event opens a new batch
        else:
            self._open_batch(connection, event, received_at)
        count = self._events = self._events + 1
        if count >= self._capacity:
            if self._space.is_set():
                self._space = trio.Event()
            return True
        return False

    def _open_batch(self, connection: str, event: UserEvent, received_at: float) -> None:
        if self._tail is not None:
            self._ripen()  # the batch the forwarder may be waiting for is closed
        batch = _Batch(connection, received_at, event)
        self._items.append(batch)
        self._tail = batch if self._batch_max > 1 else None
        self._mark_nonempty()

    def notice(self, item: StreamUp | StreamDown) -> None:
        """Queue a ``StreamUp`` / ``StreamDown`` behind the events already held."""
        if self._tail is not None:
            self._tail = None
            self._ripen()
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
        return self._tail is not None

    async def wait_ripe(self, size: int, deadline: float) -> None:
        """Until the newest batch holds ``size`` events (or is closed), the process is idle, or
        ``deadline``.

        Idle is trio's ``wait_all_tasks_blocked``: no task is runnable and an I/O poll finds
        nothing ready. For the readers that means they have taken everything their sockets hold,
        so the burst is over; it costs nothing per event (the run loop wakes the waiter), where
        watching the batch grow costs a task switch per scheduling round. When other tasks keep
        the process busy, the batch leaves at ``size`` events or at ``deadline``.
        """
        tail = self._tail
        if tail is None or len(tail.events) >= size:
            return
        with trio.CancelScope(deadline=deadline) as scope:
            self._ripe_scope = scope
            self._ripe_at = size
            try:
                await wait_all_tasks_blocked()
            finally:
                self._ripe_scope = None
                self._ripe_at = math.inf

    def _ripen(self) -> None:
        """End a pending :meth:`wait_ripe` (the batch is big enough, or closed)."""
        scope = self._ripe_scope
        if scope is not None:
            scope.cancel()

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
        if item is self._tail:
            self._tail = None
        if not self._items:
            self._empty.set()
        if type(item) is not _Batch:
            return item  # type: ignore[return-value]
        batch = item
        if self._events > self._high_water:
            self._high_water = self._events
        self._events -= len(batch.events)
        if self._events < self._capacity:
            self._space.set()
        return UserEvents(tuple(batch.events), batch.received_at, batch.connection)

    def _mark_nonempty(self) -> None:
        if self._empty.is_set():
            self._empty = trio.Event()
        self._nonempty.set()


def _max_ms_within(bound: float) -> float:
    """The largest whole number of milliseconds ``v`` with ``v / 1000.0 <= bound``."""
    if math.isinf(bound):
        return math.inf
    v = math.floor(bound * 1000.0)
    while (v + 1) / 1000.0 <= bound:
        v += 1
    while v / 1000.0 > bound:
        v -= 1
    return v


class LagHistogram:
    """``spark_ingest_lag_seconds`` observed per event, added to Prometheus in bulk.

    prometheus_client has no bulk observe, and ``Histogram.observe`` takes two locks per call
    (about 2 µs, a visible share of the per-event budget). So readers count into local buckets
    with the histogram's own bounds (same ``le`` rule: the first bound >= the value) and
    :meth:`flush` adds the counts — per burst, so the exported series lag by a few batches at
    most.
    If the client library's internals are not what this expects, it falls back to ``observe``
    per value.

    The hot path is cheaper still: a reader appends each event's lag in integer milliseconds to
    :attr:`pending_ms` (one list append; the lag itself is taken at receipt) and :meth:`flush`
    bins them in one loop. The list is bounded by the events read between two flushes: the
    forwarder flushes after every batch it hands over, and a reader stops reading when the
    event buffer is full.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        parts = histogram_parts(histogram)
        self._bulk = parts is not None
        self._bounds: list[float] = parts.bounds if parts is not None else []
        self._buckets: list[Any] = parts.buckets if parts is not None else []
        self._total: Any = parts.total if parts is not None else None
        # For lags in whole ms: the largest lag that falls in each bucket (``le`` is inclusive,
        # and lag_ms / 1000.0 is compared exactly as observe() would compare it).
        self._limits_ms: list[float] = [_max_ms_within(b) for b in self._bounds]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._pending = 0
        self.pending_ms: list[int] = []
        """Lags (receipt wall clock minus event time, ms; negative = clock offset, counted as 0)
        not binned yet."""
        if not self._bulk:
            log.warning("prometheus_client internals changed; observing lags one by one")

    def observe(self, seconds: float) -> None:
        if self._bulk:
            self._counts[bisect_left(self._bounds, seconds)] += 1
            self._sum += seconds
            self._pending += 1
        else:
            self._histogram.observe(seconds)

    def _bin_pending(self) -> None:
        pending = self.pending_ms
        if not self._bulk:
            for lag_ms in pending:
                self._histogram.observe(lag_ms / 1000.0 if lag_ms > 0 else 0.0)
            pending.clear()
            return
        # Sorted (in C), each bucket's share is one bisection: the cost is per flush and per
        # bucket, not per event. Lags <= 0 (clock offset to the venue) count as 0.
        pending.sort()
        counts, limits, n = self._counts, self._limits_ms, len(pending)
        top = bisect_left(limits, pending[-1])  # the largest lag's bucket
        if top == 0 or pending[0] > limits[top - 1]:
            counts[top] += n  # all in one bucket (the usual case: lags move slowly)
        else:
            lo = 0
            for i in range(top + 1):
                hi = bisect_right(pending, limits[i], lo)
                counts[i] += hi - lo
                lo = hi
        if pending[0] > 0:
            self._sum += sum(pending) / 1000.0
        else:
            self._sum += sum(pending[bisect_right(pending, 0):]) / 1000.0
        self._pending += n
        pending.clear()

    def flush(self) -> None:
        if self.pending_ms:
            self._bin_pending()
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
    ``Counter.inc``. Flushed by the forwarder when a burst has been handed over (and every
    ``_FLUSH_BATCHES`` batches during a long one) and by the connection loops on every wake-up.
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

    Calls ``progress`` after every hand-over, and at least every ``heartbeat_s`` while idle or
    while the router holds us back (being backpressured is waiting, not being stuck; a stuck
    router has its own stall deadline). The heartbeat comes from a small task of its own, so
    the per-batch waits need no timeout of their own (a trio cancel scope with a deadline costs
    about as much as handling a few events).
    """
    burst_batch = min(_BURST_BATCH, buffer.batch_max)
    waiting = [False]  # parked in a wait that counts as progress (idle, or held back)

    async def heartbeat() -> None:
        while True:
            await trio.sleep(heartbeat_s)
            if waiting[0]:
                progress()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        batches = 0
        while True:
            if not len(buffer):
                progress()
                waiting[0] = True
                await buffer.wait_nonempty()
                waiting[0] = False
            # Let the readers finish the burst they are in before cutting the batch: wait until
            # they have drained their sockets (the process goes idle), or the batch is big, or
            # a few milliseconds have passed. Costs a scheduling round or two of latency for an
            # isolated event; under load it makes one batch and one hand-over of many events.
            if buffer.tail_open:
                await buffer.wait_ripe(burst_batch, trio.current_time() + _BURST_WAIT_S)
            item = buffer.take_nowait()
            assert item is not None
            try:
                out.send_nowait(item)
            except trio.WouldBlock:
                waiting[0] = True  # backpressure: the router is behind
                await out.send(item)
                waiting[0] = False
            progress()
            # Metrics: when the burst is over, and every few batches during a long one (the
            # exported series then lag by a few batches at most).
            batches += 1
            if batches >= _FLUSH_BATCHES or not len(buffer):
                batches = 0
                counters.flush()


_BURST_BATCH = 128
_BURST_WAIT_S = 0.005
"""Most a burst's batch is held back for (only while the process stays busy): bounds the
latency this batching adds."""
_FLUSH_BATCHES = 16


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
