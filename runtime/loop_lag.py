"""Loop lag: how late the event loop wakes a task that asked to wake at a given moment.

A ticker sleeps for a fixed interval and measures the gap between when it asked to wake and when
it ran; under load that gap is the scheduling delay every other task suffers too.  It also feeds
systemd's watchdog: the ping is sent only while the loop is healthy (lag under a bound), so a
wedged loop gets the process restarted.
"""

from __future__ import annotations

import trio

from spark.runtime.metrics import Metrics
from spark.runtime.sdnotify import SdNotifier
from spark.supervision import ChildContext

UNHEALTHY_LAG_S = 5.0


class LoopLagMonitor:
    def __init__(self, metrics: Metrics, interval_s: float, notifier: SdNotifier) -> None:
        self._metrics = metrics
        self._interval = interval_s
        self._notifier = notifier
        self.last_lag_s = 0.0

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        watchdog_every = self._notifier.watchdog_interval_s
        last_ping = trio.current_time()
        while not ctx.stop_requested.is_set():
            deadline = trio.current_time() + self._interval
            with trio.move_on_at(deadline):
                await ctx.stop_requested.wait()
                return
            lag = max(0.0, trio.current_time() - deadline)
            self.last_lag_s = lag
            self._metrics.loop_lag_seconds.set(lag)
            self._metrics.loop_lag_max_seconds.observe(lag)
            ctx.progress()
            now = trio.current_time()
            if watchdog_every is not None and lag < UNHEALTHY_LAG_S and now - last_ping >= (
                watchdog_every
            ):
                self._notifier.watchdog()
                last_ping = now
