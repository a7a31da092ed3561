"""Order-path latency: the runtime's own overhead per order, and place→ACK against a floor
(run by hand; not in CI).

    .venv/bin/python bench/order_path.py                  # 2,000 orders each
    .venv/bin/python bench/order_path.py --orders 200 --profile never
    .venv/bin/python bench/order_path.py --settle-ms 20   # each order alone on an idle runtime
    .venv/bin/python bench/order_path.py --no-intake-write  # record appended by the send worker
    .venv/bin/python bench/order_path.py --writer-delay-ms 5  # fewer database commits per order
    .venv/bin/python bench/order_path.py --attribute      # what the event loop did meanwhile
    .venv/bin/python bench/order_path.py --concurrent-export  # an operator exporting meanwhile
    .venv/bin/python bench/order_path.py --hog --thread-nice 0  # a noisy neighbour on the core

One run starts the simulated venue in its own process (``python -m spark.runtime.cli venue
--port 0``, so it has its own event loop and, load permitting, its own core), builds the real
runtime in this process (``spark.runtime.process.Runtime`` from a config whose ``[exchange]
rest_url`` names that venue, a temporary SQLite database and state folder, ``[risk]`` limits wide
enough for every order), runs it under trio and calls ``runtime.orders_api.place(...)`` directly:
MARKET orders, BUY and SELL alternating (the position stays flat), one in flight.  It measures:

(a) internal overhead per order: from "intent accepted" (the call of ``OrdersApi.place``, which
    builds the intent and hands it to the risk guard) to "request bytes leave the process" (the
    REST client's trace stamps the moment the body is on the socket; its observer reports it as
    ``on_bytes_sent(endpoint, since_call_s, budget_wait_s)``), split into stages:

    - ``guard+router``: accepted → the router's send worker starts waiting for the intent's
      write-ahead record (risk guard decision, router inbox, order creation, dispatch; the
      approval records are written after the send);
    - ``intent log wait``: how long the send worker waits for that record to be durable
      (``actors/intent_log.py``: one JSON line; on the kernel AIO path, ``O_DIRECT`` +
      ``RWF_DSYNC``, its write is submitted at intake — ``IntentLog.begin`` in
      ``OrdersApi.place`` — and runs while the guard and the router work, so the wait is what
      is left of it; otherwise an ``O_DSYNC`` ``pwrite`` in a worker thread, started by the
      wait, whose in-thread part is then shown apart from the thread hand-off;
      ``--intent-log thread`` forces the fallback for comparison);
    - ``router→rest``: append done → ``RestClient._call`` (limiter, breaker, paper shadow,
      ``VenueOrders.place``, the codec building the request);
    - ``rest→socket``: ``RestClient._call`` → body on the socket (rate budget, timestamp,
      signing, ``httpx`` request building, pool, h11, socket write) = ``since_call_s``.

(b) place→ACK as the runtime records it in ``spark_order_place_ack_seconds`` (the router's send
    worker calling the venue client → the venue's answer parsed in that worker), against a
    floor: a bare signed ``httpx`` ``POST /api/v3/order`` (MARKET, ``newOrderRespType=ACK``,
    HMAC with ``sim-key``/``sim-secret``, the same form body the runtime sends) from a trio
    ``httpx.AsyncClient`` to the same venue process, timed from signing to the parsed answer;
    same count, one in flight.  The floor runs after the runtime has stopped (the venue would
    otherwise stream the floor's fills into the runtime), in the same trio loop, then idle.

Timestamps are ``trio.current_time()``.  Production code is not changed: the bench wraps, on the
runtime's own instances only, the REST observer's ``on_bytes_sent``, ``RestClient._call`` (to
know when the call began: ``since_call_s`` counts from there), ``IntentLog.append`` /
``_append_sync``, ``IntentWrite.wait`` (class-wide: this process only) and the ACK histogram's
``observe``.  Garbage-collector pauses are recorded
with ``gc.callbacks``, CPU per thread from /proc, to explain tails.  By default the venue gets a
CPU of its own (``--no-pin`` to let the scheduler place everything).

Back-to-back (the default) places the next order as soon as the previous one is answered, so
it competes with the previous order's aftermath (its user-data events, fills, paper shadow and
database records all run on the same core): a queueing figure.  ``--settle-ms N`` waits until
the previous order is final in the router's book and then ``N`` ms more, so each order meets an
idle runtime: the per-order overhead itself.  The report says which mode ran.

``--attribute`` records every event-loop task step and I/O wait while measuring (a Trio
instrument; flat arrays, so it adds no GC work) and prints, per task, the loop time spent inside
the orders' accepted→bytes-sent windows: all orders against the slowest 1%.  It tells a slow
order that waited behind other tasks from one whose own steps were slow or that waited on the
disk (``[io wait]``).

If the internal overhead misses its target (p99 <= 1 ms), ``--profile auto`` (the default) runs
``--profile-orders`` more orders under cProfile (event-loop thread) and prints the hot spots.
Targets: internal p99 <= 1 ms; place→ACK p50 <= 1.3 x floor p50.
"""

from __future__ import annotations

import argparse
import array
import bisect
import contextlib
import cProfile
import gc
import hashlib
import hmac
import logging
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import httpx
import orjson
import trio

KEY = "sim-key"
SECRET = "sim-secret"
SYMBOL = "BTCUSDT"
QUANTITY = Decimal("0.001")
PLACE_ENDPOINT = "spot.order.place"
RECV_WINDOW_MS = 5000
OVERHEAD_TARGET_P99_S = 0.001
ACK_TARGET_RATIO_P50 = 1.3

VENUE_TOML = """
[venue]
host = "127.0.0.1"
port = 0
weight_limit_1m = 1000000000
order_limit_10s = 1000000000
order_limit_1d = 1000000000
"""

RUNTIME_TOML = """
[runtime]
state_dir = "{state}"
log_level = "WARNING"
shutdown_grace_s = 15.0

[exchange]
mode = "sim"
rest_url = "{venue_url}"

[control]
port = 0

[database]
url = "sqlite:///{state}/spark.db"

[writer]
spool_dir = "{state}/spool"
batch_max_delay_ms = {writer_delay_ms}
thread_nice = {thread_nice}

[risk]
whitelist = ["{symbol}"]
trade_window = "00:00-24:00"
max_notional = 1000000
max_open_orders = 1000000
max_orders_per_minute = 10000000
max_position_notional = 1000000

[live]
policy = "auto"
"""


def note(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


def bench_env() -> dict[str, str]:
    """A small, explicit environment: the sim credentials and nothing that overrides config."""
    env = {"SIM_API_KEY": KEY, "SIM_API_SECRET": SECRET,
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("HOME", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


# -- the venue process ---------------------------------------------------------------------------

@attrs.define
class VenueProcess:
    url: str
    pid: int


def cpu_of(stat_path: str) -> float:
    """User + system CPU seconds from a /proc .../stat file (0 if it is gone)."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, float]:
    """CPU seconds per thread of this process, by native thread id."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            out[int(task.name)] = cpu_of(f"{task}/stat")
    return out


@attrs.define
class CpuSplit:
    """Where CPU went while measuring: this process's event-loop thread, its other threads
    (trio worker threads: the writer's database batches, the intent log), the venue process."""

    loop_s: float = 0.0
    workers_s: float = 0.0
    venue_s: float = 0.0


@contextlib.contextmanager
def cpu_split(venue_pid: int, out: CpuSplit) -> Any:
    main_tid = threading.main_thread().native_id
    before, venue_before = thread_cpu(), cpu_of(f"/proc/{venue_pid}/stat")
    yield out
    after, venue_after = thread_cpu(), cpu_of(f"/proc/{venue_pid}/stat")
    for tid, used in after.items():
        spent = used - before.get(tid, 0.0)
        if tid == main_tid:
            out.loop_s += spent
        else:
            out.workers_s += spent
    out.venue_s += venue_after - venue_before


@contextlib.asynccontextmanager
async def venue_process(folder: Path,
                        cpus: set[int] | None) -> AsyncIterator[VenueProcess]:
    """``python -m spark.runtime.cli venue --port 0``; yields its URL; SIGTERM on the way out."""
    config = folder / "venue.toml"
    config.write_text(VENUE_TOML)
    command = [sys.executable, "-m", "spark.runtime.cli", "venue", "--port", "0",
               "-c", str(config)]
    process = await trio.lowlevel.open_process(command, stdout=-1, cwd=str(folder),
                                               env=bench_env())
    if cpus is not None:
        # Before the interpreter has started any thread: they all inherit it.
        os.sched_setaffinity(process.pid, cpus)
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the venue exited before reporting its URL")
                line += chunk
        found = re.search(r"(http://\S+)", line.decode())
        if found is None:
            raise RuntimeError(f"unexpected venue banner: {line!r}")
        yield VenueProcess(found.group(1), process.pid)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- probes on the runtime's own instances -------------------------------------------------------

@attrs.define
class OrderTimes:
    """One order's timestamps (trio clock, seconds) and durations."""

    accepted: float
    append_start: float | None = None
    append_end: float | None = None
    append_thread_s: float | None = None
    begun_at_intake: bool = False
    begin_s: float = 0.0
    gc_s: float = 0.0  # garbage-collector pause time inside accepted→bytes sent
    call_start: float | None = None
    since_call_s: float | None = None
    budget_wait_s: float | None = None
    ack_s: float | None = None
    answered: float | None = None

    @property
    def complete(self) -> bool:
        # append_thread_s stays None on the kernel AIO path (no worker thread).
        return None not in (self.append_start, self.append_end, self.call_start,
                            self.since_call_s, self.ack_s, self.answered)

    @property
    def bytes_sent(self) -> float:
        assert self.call_start is not None and self.since_call_s is not None
        return self.call_start + self.since_call_s

    def stages(self) -> dict[str, float]:
        assert self.complete
        assert self.append_start is not None and self.append_end is not None
        assert self.call_start is not None
        assert self.since_call_s is not None and self.ack_s is not None
        assert self.answered is not None
        total = self.bytes_sent - self.accepted
        append = self.append_end - self.append_start
        out = {
            "internal overhead": total,
            "  guard+router": self.append_start - self.accepted,
            "    of which intake write (begin)": self.begin_s,
            "  intent log wait": append,
        }
        if self.append_thread_s is not None:
            out["    in thread (write+fdatasync)"] = self.append_thread_s
            out["    thread hand-off"] = append - self.append_thread_s
        return out | {
            "  router→rest": self.call_start - self.append_end,
            "  rest→socket": self.since_call_s,
            "internal minus intent log": total - append,
            "place→ACK (metric)": self.ack_s,
            "place() call→answer": self.answered - self.accepted,
        }


class Probe:
    """Collects :class:`OrderTimes` for the order in flight (the bench keeps one in flight)."""

    def __init__(self) -> None:
        self.current: OrderTimes | None = None
        self.gc_pauses: list[tuple[float, float]] = []
        self._gc_started: float | None = None
        self._restore_wait: Any = lambda: None

    def install(self, runtime: Any) -> None:
        trade = runtime.trade
        rest = trade.rest
        assert rest is not None, "the exchange child is not up"
        probe = self

        # RestClient._call: when the call began (since_call_s counts from its first line).
        original_call = rest._call

        async def timed_call(request: Any) -> Any:
            if request.endpoint.name == PLACE_ENDPOINT and probe.current is not None:
                probe.current.call_start = trio.current_time()
            return await original_call(request)

        rest._call = timed_call

        # The REST observer: the body is on the socket since_call_s after the call began.
        observer = trade.rest_metrics
        original_sent = observer.on_bytes_sent

        def on_bytes_sent(endpoint: str, since_call_s: float, budget_wait_s: float) -> None:
            if endpoint == PLACE_ENDPOINT and probe.current is not None:
                probe.current.since_call_s = since_call_s
                probe.current.budget_wait_s = budget_wait_s
            original_sent(endpoint, since_call_s, budget_wait_s)

        observer.on_bytes_sent = on_bytes_sent

        # The write-ahead intent log: the whole append, and the part in the worker thread.
        intent_log = trade.router._log
        original_append = intent_log.append
        original_append_sync = intent_log._append_sync

        async def timed_append(intent: Any) -> None:
            current = probe.current
            if current is not None and current.append_start is None:
                current.append_start = trio.current_time()
            await original_append(intent)
            if current is not None:
                current.append_end = trio.current_time()

        # The send worker's wait for a record begun at intake (appends if it was not begun).
        from spark.actors.intent_log import IntentWrite

        original_wait = IntentWrite.wait

        async def timed_wait(write: IntentWrite) -> None:
            current = probe.current
            if current is not None:
                current.append_start = trio.current_time()
                current.begun_at_intake = write.begun
            await original_wait(write)
            if current is not None:
                current.append_end = trio.current_time()

        IntentWrite.wait = timed_wait  # type: ignore[method-assign]
        original_begin = intent_log.begin

        def timed_begin(intent: Any) -> IntentWrite:
            started = time.perf_counter()
            write = original_begin(intent)
            if probe.current is not None:
                probe.current.begin_s = time.perf_counter() - started
            return write

        intent_log.begin = timed_begin
        self._restore_wait = lambda: setattr(IntentWrite, "wait", original_wait)

        def timed_append_sync(intent: Any) -> None:
            started = time.perf_counter()
            original_append_sync(intent)
            current = probe.current
            if current is not None:
                current.append_thread_s = time.perf_counter() - started

        intent_log.append = timed_append
        intent_log._append_sync = timed_append_sync

        # spark_order_place_ack_seconds: the value the router records for this order.
        histogram = runtime.metrics.order_place_ack_seconds
        original_observe = histogram.observe

        def observe(value: float, *args: Any, **kwargs: Any) -> None:
            if probe.current is not None:
                probe.current.ack_s = value
            original_observe(value, *args, **kwargs)

        histogram.observe = observe
        gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        self._restore_wait()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started is not None:
            self.gc_pauses.append((self._gc_started, now - self._gc_started))
            self._gc_started = None


class StepRecorder(trio.abc.Instrument):
    """Every task step and every I/O wait of the event loop (``--attribute``), to say what the
    loop was doing while a slow order waited.  ``perf_counter`` based, like the GC pauses.

    Times go into flat ``array('d')`` buffers and names into a list of existing strings: no
    object the cyclic collector tracks is allocated per step, so recording does not add GC
    pauses of its own."""

    def __init__(self) -> None:
        self.step_times = array.array("d")  # start, end, start, end, ...
        self.step_names: list[str] = []
        self.io_times = array.array("d")
        self._step_start = 0.0
        self._io_start = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_start = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.step_times.append(self._step_start)
        self.step_times.append(time.perf_counter())
        self.step_names.append(task.name)

    def before_io_wait(self, timeout: float) -> None:
        self._io_start = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        self.io_times.append(self._io_start)
        self.io_times.append(time.perf_counter())


def perf_counter_offset() -> float:
    """trio's clock minus ``time.perf_counter`` (trio's SystemClock is perf_counter plus a
    fixed offset): turns the orders' trio timestamps into the GC and step recorders' base."""
    return trio.current_time() - time.perf_counter()


def loop_time_by_task(orders: Sequence[OrderTimes], recorder: StepRecorder) -> dict[str, float]:
    """Seconds per task name (plus ``[io wait]`` and ``[loop itself]``) inside the orders'
    accepted→bytes-sent windows, summed over ``orders``."""
    offset = perf_counter_offset()
    windows = sorted((o.accepted - offset, o.bytes_sent - offset) for o in orders)
    ends = [w_end for _, w_end in windows]  # ascending too: one order in flight at a time
    totals: dict[str, float] = {}

    def add(start: float, end: float, name: str) -> None:
        # From the first window that ends after ``start``, not from the first window.
        for w_start, w_end in windows[bisect.bisect_right(ends, start):]:
            if w_start >= end:
                break
            overlap = min(end, w_end) - max(start, w_start)
            if overlap > 0:
                totals[name] = totals.get(name, 0.0) + overlap

    steps = recorder.step_times
    for i, name in enumerate(recorder.step_names):
        add(steps[2 * i], steps[2 * i + 1], name)
    io = recorder.io_times
    for i in range(0, len(io), 2):
        add(io[i], io[i + 1], "[io wait]")
    window_total = sum(end - start for start, end in windows)
    totals["[loop itself]"] = window_total - sum(totals.values())
    return totals


# -- the runtime phase ---------------------------------------------------------------------------

@attrs.define
class RuntimeResult:
    orders: list[OrderTimes]
    gc_pauses: list[tuple[float, float]]
    gc_orders_hit: int
    profile: pstats.Stats | None
    state_fs: str
    cpu: CpuSplit
    recorder: StepRecorder | None = None


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts; longest mount point wins)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


async def wait_until_ready(runtime: Any, timeout_s: float = 60.0) -> None:
    """Tree up, reconciled, ACTIVE, a fresh reference price, the REST client in place."""
    why = "not started"
    with trio.move_on_after(timeout_s):
        while True:
            ready, why = runtime.ready_to_trade()
            quote = runtime.trade.prices.value.quotes.get(SYMBOL)
            fresh = quote is not None and trio.current_time() - quote.received_at < 5.0
            if ready and fresh and runtime.trade.rest is not None:
                return
            why = why if not ready else "no fresh reference price"
            await trio.sleep(0.05)
    raise RuntimeError(f"the runtime was not ready to trade within {timeout_s:g} s: {why}")


async def settle(runtime: Any, client_order_id: str | None, settle_s: float) -> None:
    """Wait until ``client_order_id`` is final in the router's book, then ``settle_s`` more."""
    if settle_s <= 0:
        return
    table = runtime.trade.router.table
    with trio.move_on_after(5):
        while True:
            order = table.get(client_order_id) if client_order_id else None
            if order is None or order.is_final:
                break
            await trio.sleep(0.001)
    await trio.sleep(settle_s)


async def place_orders(runtime: Any, probe: Probe, count: int, start_index: int,
                       record: list[OrderTimes] | None, settle_s: float = 0.0) -> None:
    from spark.runtime.control.backend import OrderRequest

    api = runtime.orders_api
    for i in range(count):
        side = "BUY" if (start_index + i) % 2 == 0 else "SELL"
        request = OrderRequest(symbol=SYMBOL, side=side, type="MARKET", quantity=QUANTITY)
        times = OrderTimes(accepted=trio.current_time())
        probe.current = times
        answer = await api.place(request, "bench")
        times.answered = trio.current_time()
        probe.current = None
        if answer.get("status") not in ("NEW", "FILLED", "PARTIALLY_FILLED"):
            raise RuntimeError(f"order {start_index + i} not acknowledged: {answer}")
        if record is not None:
            if not times.complete:
                raise RuntimeError(f"order {start_index + i}: a probe did not fire: {times}")
            record.append(times)
        await settle(runtime, answer.get("clientOrderId"), settle_s)


@contextlib.contextmanager
def cpu_hog(enabled: bool) -> Iterator[None]:
    """``--hog``: a busy process at normal priority on this process's CPUs (a noisy
    neighbour on the runtime's core), for as long as the block runs."""
    if not enabled:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, os.sched_getaffinity(0))
        yield
    finally:
        hog.kill()
        hog.wait()


async def export_forever(runtime: Any) -> None:
    """``--concurrent-export``: an operator exporting trades over and over while orders flow,
    through the runtime's own export path (the control port's ``GET`` export route)."""
    while True:
        async for _ in runtime._export_trades(None, None):
            pass


async def runtime_phase(venue: VenueProcess, folder: Path,
                        args: argparse.Namespace) -> RuntimeResult:
    from spark.config import load
    from spark.runtime.process import Runtime, prepare_database

    state = folder / "state"
    state.mkdir()
    config = folder / "spark.toml"
    config.write_text(RUNTIME_TOML.format(state=state, venue_url=venue.url, symbol=SYMBOL,
                                           writer_delay_ms=args.writer_delay_ms,
                                           thread_nice=args.thread_nice))
    settings = load(config, bench_env())
    problem = await trio.to_thread.run_sync(prepare_database, settings.config.database.url)
    if problem is not None:
        raise RuntimeError(f"database: {problem}")
    runtime = Runtime(settings, env=bench_env())
    intent_log = runtime.trade.router._log
    if args.intent_log == "thread":
        intent_log._backend = "thread"  # before the log is first opened
    if not args.intake_write:
        # As before intake writes existed: the send worker appends (same AIO path).
        from spark.actors.intent_log import IntentWrite

        intent_log.begin = lambda intent: IntentWrite(intent_log, intent, None)
    probe = Probe()
    cpu = CpuSplit()
    orders: list[OrderTimes] = []
    profile: pstats.Stats | None = None
    exit_code: list[int] = []

    async def run_runtime() -> None:
        exit_code.append(await runtime.main())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_runtime)
        try:
            note("runtime: waiting until ready to trade")
            await wait_until_ready(runtime)
            probe.install(runtime)
            note(f"runtime: {args.warmup} warm-up orders")
            await place_orders(runtime, probe, args.warmup, 0, None, args.settle_ms / 1000)
            note(f"runtime: {args.orders} measured orders")
            gc.collect()
            probe.gc_pauses.clear()
            recorder = StepRecorder() if args.attribute else None
            if recorder is not None:
                trio.lowlevel.add_instrument(recorder)
            with cpu_split(venue.pid, cpu), cpu_hog(args.hog):
                async with trio.open_nursery() as background:
                    if args.concurrent_export:
                        background.start_soon(export_forever, runtime)
                    await place_orders(runtime, probe, args.orders, args.warmup, orders,
                                       args.settle_ms / 1000)
                    background.cancel_scope.cancel()
            if recorder is not None:
                trio.lowlevel.remove_instrument(recorder)
            gc_pauses = list(probe.gc_pauses)
            missed = overhead_p99(orders) > OVERHEAD_TARGET_P99_S
            if args.profile == "always" or (args.profile == "auto" and missed):
                note(f"runtime: {args.profile_orders} more orders under cProfile")
                profiler = cProfile.Profile()
                profiler.enable()
                try:
                    await place_orders(runtime, probe, args.profile_orders,
                                       args.warmup + args.orders, None, args.settle_ms / 1000)
                finally:
                    profiler.disable()
                profile = pstats.Stats(profiler)
                if args.profile_out is not None:
                    profile.dump_stats(args.profile_out)
        finally:
            probe.uninstall()
            runtime.request_stop("bench done")
    if exit_code != [0]:
        raise RuntimeError(f"the runtime stopped with exit code {exit_code}")
    hit = orders_hit_by_gc(orders, gc_pauses)
    how = "kernel AIO" if runtime.trade.router._log.uses_aio else "a worker thread"
    return RuntimeResult(orders, gc_pauses, hit, profile,
                         f"{filesystem_of(state.resolve())} via {how}", cpu, recorder)


def orders_hit_by_gc(orders: Sequence[OrderTimes], pauses: Sequence[tuple[float, float]]) -> int:
    """Orders whose accepted→bytes-sent window overlaps a GC pause (same perf_counter base)."""
    offset = perf_counter_offset()
    hit = 0
    for times in orders:
        start, end = times.accepted - offset, times.bytes_sent - offset
        times.gc_s = sum(min(end, p_start + length) - max(start, p_start)
                         for p_start, length in pauses
                         if p_start < end and p_start + length > start)
        hit += times.gc_s > 0
    return hit


def overhead_p99(orders: Sequence[OrderTimes]) -> float:
    return percentile([o.bytes_sent - o.accepted for o in orders], 99)


# -- the floor -----------------------------------------------------------------------------------

def signed_order_body(index: int) -> bytes:
    params = [("symbol", SYMBOL), ("side", "BUY" if index % 2 == 0 else "SELL"),
              ("type", "MARKET"), ("quantity", str(QUANTITY)),
              ("newClientOrderId", f"floor-{os.getpid()}-{index}"),
              ("newOrderRespType", "ACK"), ("recvWindow", str(RECV_WINDOW_MS)),
              ("timestamp", str(time.time_ns() // 1_000_000))]
    query = urlencode(params)
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}".encode()


async def floor_phase(venue: VenueProcess, args: argparse.Namespace,
                      cpu: CpuSplit) -> list[float]:
    headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
    limits = httpx.Limits(max_connections=12, max_keepalive_connections=12)
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=venue.url, limits=limits, timeout=10,
                                 trust_env=False) as http:

        async def one(index: int) -> float:
            started = trio.current_time()
            response = await http.post("/api/v3/order", content=signed_order_body(index),
                                       headers=headers)
            body = orjson.loads(response.content)
            elapsed = trio.current_time() - started
            if response.status_code != 200 or "orderId" not in body:
                raise RuntimeError(f"floor order: {response.status_code} {body}")
            return elapsed

        note(f"floor: {args.warmup} warm-up + {args.orders} measured orders")
        settle_s = args.settle_ms / 1000
        for i in range(args.warmup):
            await one(i)
            await trio.sleep(settle_s)
        with cpu_split(venue.pid, cpu):
            for i in range(args.orders):
                samples.append(await one(args.warmup + i))
                await trio.sleep(settle_s)
    return samples


# -- the run -------------------------------------------------------------------------------------

def split_cpus(pin: bool) -> tuple[set[int], set[int]] | None:
    """(this process, the venue) CPU sets: the venue gets the last allowed CPU to itself."""
    allowed = sorted(os.sched_getaffinity(0))
    if not pin or len(allowed) < 2:
        return None
    return set(allowed[:-1]), {allowed[-1]}


async def run(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    pinned = split_cpus(args.pin)
    if pinned is not None:
        os.sched_setaffinity(0, pinned[0])
        note(f"pinned: runtime/bench on CPUs {sorted(pinned[0])}, venue on {sorted(pinned[1])}")
    with tempfile.TemporaryDirectory(prefix="spark-order-path-") as tmp:
        folder = Path(tmp)
        async with venue_process(folder, None if pinned is None else pinned[1]) as venue:
            note(f"venue at {venue.url} (pid {venue.pid})")
            result = await runtime_phase(venue, folder, args)
            floor_cpu = CpuSplit()
            floor = await floor_phase(venue, args, floor_cpu)
    report(args, result, floor, floor_cpu, load_before, os.getloadavg(), pinned)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(value: float) -> str:
    return f"{value * 1000:.3f}"


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def report(args: argparse.Namespace, result: RuntimeResult, floor: list[float],
           floor_cpu: CpuSplit, load_before: tuple[float, float, float],
           load_after: tuple[float, float, float],
           pinned: tuple[set[int], set[int]] | None) -> None:
    orders = result.orders
    stages: dict[str, list[float]] = {}
    for times in orders:
        for name, value in times.stages().items():
            stages.setdefault(name, []).append(value)
    print(f"\nhost: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after; {len(orders)} orders each (after {args.warmup} warm-up), "
          f"MARKET {QUANTITY} {SYMBOL} BUY/SELL alternating, 1 in flight; intent log on "
          f"{result.state_fs}; "
          + ("not pinned" if pinned is None else
             f"bench+runtime on CPUs {sorted(pinned[0])}, venue on {sorted(pinned[1])}"))
    if args.concurrent_export:
        print("load: the trades table exported over and over while measuring")
    if args.hog:
        print("load: a busy process of normal priority on the runtime's CPU while measuring")
    if args.thread_nice != 10:
        print(f"[writer] thread_nice = {args.thread_nice}")
    print("mode: " + ("back-to-back (next order as soon as the previous is answered)"
                      if not args.settle_ms else
                      f"settled (previous order final, then {args.settle_ms:g} ms idle)"))

    begun = sum(1 for times in orders if times.begun_at_intake)
    print(f"intent records begun at intake (write overlapping guard and router): {begun} of "
          f"{len(orders)}")
    rows: list[tuple[str, ...]] = [("measure (ms)", "p50", "p90", "p99", "max", "mean")]
    for name, values in stages.items():
        rows.append((name, ms(percentile(values, 50)), ms(percentile(values, 90)),
                     ms(percentile(values, 99)), ms(max(values)), ms(statistics.fmean(values))))
    rows.append(("floor: bare signed POST→ACK", ms(percentile(floor, 50)),
                 ms(percentile(floor, 90)), ms(percentile(floor, 99)), ms(max(floor)),
                 ms(statistics.fmean(floor))))
    table(rows)

    total = stages["internal overhead"]
    append = stages["  intent log wait"]
    ack = stages["place→ACK (metric)"]
    share = [a / t for a, t in zip(append, total, strict=True) if t > 0]
    p99 = percentile(total, 99)
    ack_ratio_50 = percentile(ack, 50) / percentile(floor, 50)
    ack_ratio_99 = percentile(ack, 99) / percentile(floor, 99)
    rows = [("check", "value", "target", "verdict")]
    rows.append(("internal overhead p99", f"{ms(p99)} ms",
                 f"<= {ms(OVERHEAD_TARGET_P99_S)} ms",
                 "ok" if p99 <= OVERHEAD_TARGET_P99_S else "MISSED"))
    rows.append(("internal overhead p99 without intent log",
                 f"{ms(percentile(stages['internal minus intent log'], 99))} ms", "(info)", ""))
    rows.append(("place→ACK / floor at p50", f"{ack_ratio_50:.2f}x", f"<= {ACK_TARGET_RATIO_P50}x",
                 "ok" if ack_ratio_50 <= ACK_TARGET_RATIO_P50 else "MISSED"))
    rows.append(("place→ACK / floor at p99", f"{ack_ratio_99:.2f}x", "(info)", ""))
    rows.append(("intent log share of overhead (median / p50-ratio)",
                 f"{statistics.median(share):.0%} / "
                 f"{percentile(append, 50) / percentile(total, 50):.0%}", "(info)", ""))
    rows.append(("intent log share of overhead (sum)", f"{sum(append) / sum(total):.0%}",
                 "(info)", ""))
    waited = [o.budget_wait_s or 0.0 for o in orders]
    rows.append(("rate-budget waits", f"{sum(1 for w in waited if w > 0)} orders", "0", ""))
    pauses = [length for _, length in result.gc_pauses]
    rows.append(("GC pauses while measuring",
                 f"{len(pauses)} (max {ms(max(pauses, default=0.0))} ms, sum "
                 f"{ms(sum(pauses))} ms); {result.gc_orders_hit} orders overlapped",
                 "(info)", ""))
    n = len(orders)
    rows.append(("CPU per order: runtime loop / workers / venue",
                 f"{ms(result.cpu.loop_s / n)} / {ms(result.cpu.workers_s / n)} / "
                 f"{ms(result.cpu.venue_s / n)} ms", "(info)", ""))
    rows.append(("CPU per order: floor client / venue",
                 f"{ms(floor_cpu.loop_s / len(floor))} / {ms(floor_cpu.venue_s / len(floor))} ms",
                 "(info)", ""))
    table(rows)

    slowest = sorted(orders, key=lambda o: o.bytes_sent - o.accepted)[-max(1, len(orders) // 100):]
    print("\nslowest 1% of orders, mean per stage (ms): " + ", ".join(
        f"{name.strip()} {ms(statistics.fmean(o.stages()[name] for o in slowest))}"
        for name in ("  guard+router", "  intent log wait", "  router→rest", "  rest→socket"))
        + f"; {sum(1 for o in slowest if o.gc_s > 0)} of {len(slowest)} overlapped a GC pause "
        f"(mean {ms(statistics.fmean(o.gc_s for o in slowest))} ms of GC each)")

    if args.list_slowest:
        print_slowest(orders, args.list_slowest)
    if result.recorder is not None:
        print_attribution(orders, slowest, result.recorder)
    if result.profile is not None:
        print_profile(result.profile)


def print_slowest(orders: Sequence[OrderTimes], count: int) -> None:
    """The ``count`` slowest orders one by one: is the tail a few disk stalls or many orders
    whose own steps ran slow?"""
    names = ("  guard+router", "  intent log wait", "  router→rest", "  rest→socket")
    rows: list[tuple[str, ...]] = [("slowest orders (ms)", "overhead",
                                    *(name.strip() for name in names), "GC")]
    ranked = sorted(orders, key=lambda o: o.bytes_sent - o.accepted, reverse=True)
    for rank, times in enumerate(ranked[:count], 1):
        stages = times.stages()
        rows.append((f"#{rank}", ms(stages["internal overhead"]),
                     *(ms(stages[name]) for name in names), ms(times.gc_s)))
    table(rows)


def print_attribution(orders: Sequence[OrderTimes], slowest: Sequence[OrderTimes],
                      recorder: StepRecorder) -> None:
    """What the event loop did inside the order windows: all orders vs. the slowest 1%."""
    every = loop_time_by_task(orders, recorder)
    slow = loop_time_by_task(slowest, recorder)
    names = sorted(set(every) | set(slow), key=lambda n: -slow.get(n, 0.0))
    rows: list[tuple[str, ...]] = [("loop time inside the order window, ms per order",
                                    "all orders", "slowest 1%")]
    for name in names[:14]:
        rows.append((name[-60:], ms(every.get(name, 0.0) / len(orders)),
                     ms(slow.get(name, 0.0) / len(slowest))))
    table(rows)


def print_profile(stats: pstats.Stats) -> None:
    print("\ncProfile of the profiled orders (event-loop thread only: the intent log's fdatasync "
          "runs in a worker thread and shows up here only as the wait for it)")
    stats.strip_dirs()
    stream_stats(stats, "tottime", 30)
    stream_stats(stats, "cumulative", 40)


def stream_stats(stats: pstats.Stats, key: str, limit: int) -> None:
    stats.sort_stats(key)
    print(f"\n-- top {limit} by {key} --")
    stats.print_stats(limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="measured orders per side")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured orders first")
    parser.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                        help="cProfile extra orders: when the overhead target is missed (auto)")
    parser.add_argument("--profile-orders", type=int, default=500)
    parser.add_argument("--profile-out", type=Path, default=None,
                        help="also dump the raw cProfile stats here (for pstats)")
    parser.add_argument("--intent-log", choices=["auto", "thread"], default="auto",
                        help="the intent log's append path: kernel AIO where it works "
                             "(auto, as the runtime does) or the worker-thread fallback")
    parser.add_argument("--intake-write", action=argparse.BooleanOptionalAction, default=True,
                        help="start the intent's record at intake (default, as the runtime "
                             "does); --no-intake-write appends it in the send worker instead")
    parser.add_argument("--writer-delay-ms", type=float, default=0.0,
                        help="[writer] batch_max_delay_ms for the runtime (default 0, the "
                             "shipped default): how long a record waits for company")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="give the venue process a CPU of its own (default: on)")
    parser.add_argument("--thread-nice", type=int, default=10,
                        help="[writer] thread_nice for the runtime (default 10, the shipped "
                             "default; 0 runs the database thread at the loop's priority)")
    parser.add_argument("--hog", action="store_true",
                        help="run a busy process of normal priority on the runtime's CPU "
                             "while measuring (a noisy neighbour)")
    parser.add_argument("--concurrent-export", action="store_true",
                        help="export the trades table over and over while measuring (the "
                             "runtime's export path, as the control port's route uses it)")
    parser.add_argument("--list-slowest", type=int, default=0, metavar="N",
                        help="also list the N slowest orders stage by stage")
    parser.add_argument("--attribute", action="store_true",
                        help="record every event-loop task step while measuring and report "
                             "which tasks ran inside the orders' windows (adds ~2 µs a step)")
    parser.add_argument("--settle-ms", type=float, default=0.0,
                        help="before each order, wait until the previous one is final and "
                        "then this long (0: back-to-back)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.warmup < 0:
        parser.error("--orders must be >= 1 and --warmup >= 0")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
