"""Operator signals (CONTRACT §4), all handled by one ``trio.open_signal_receiver`` task.

- SIGTERM / SIGINT: graceful stop; a second SIGINT (or SIGTERM) forces it.
- SIGUSR1 / SIGUSR2: kill switch on / off.
- SIGHUP: reload the reloadable sections from the config file.

The task only translates signals into calls on a :class:`SignalTarget`; what each means is the
runtime's business.
"""

from __future__ import annotations

import logging
import signal
from typing import Protocol

import trio

log = logging.getLogger("spark.runtime")

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


class SignalTarget(Protocol):
    def request_stop(self, reason: str) -> None: ...

    def force_stop(self, reason: str) -> None: ...

    def set_kill_switch(self, engaged: bool, source: str) -> None: ...

    def reload(self) -> None: ...


async def handle_signals(
    target: SignalTarget, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    stopping = False
    with trio.open_signal_receiver(*HANDLED) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum in (signal.SIGTERM, signal.SIGINT):
                if stopping:
                    log.warning("second %s: forcing the stop", name)
                    target.force_stop(name)
                else:
                    stopping = True
                    log.info("%s: stopping gracefully", name)
                    target.request_stop(name)
            elif signum == signal.SIGUSR1:
                target.set_kill_switch(True, f"signal:{name}")
            elif signum == signal.SIGUSR2:
                target.set_kill_switch(False, f"signal:{name}")
            elif signum == signal.SIGHUP:
                target.reload()
