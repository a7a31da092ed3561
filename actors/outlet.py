"""The way records reach the writer from actors.

Async callers ``await outlet.send(record)`` and feel the writer's back-pressure.  Synchronous
callers (a breaker transition decided inside a method call, an audit row from a signal handler)
``outlet.post(record)``: it tries the channel without blocking and, if the writer's inbox is full
at that instant, parks the record in an overflow queue that :meth:`RecordOutlet.run` feeds into
the channel in order.  Nothing is dropped; the overflow only ever holds control-rate records
(audit, breaker, gate, kill-switch, risk decisions), never the event stream, whose producers
await.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import trio

log = logging.getLogger("spark.actors.outlet")

OVERFLOW_WARN = 10_000


class RecordOutlet:
    def __init__(self, channel: trio.MemorySendChannel[Any]) -> None:
        self._channel = channel
        self._overflow: collections.deque[Any] = collections.deque()
        self._wake = trio.Event()
        self._warned = False

    async def send(self, record: Any) -> None:
        if self._overflow:
            # Keep order: earlier posted records go first.
            self.post(record)
            return
        await self._channel.send(record)

    def post(self, record: Any) -> None:
        if not self._overflow:
            try:
                self._channel.send_nowait(record)
                return
            except trio.WouldBlock:
                pass
        self._overflow.append(record)
        self._wake.set()
        if len(self._overflow) >= OVERFLOW_WARN and not self._warned:
            self._warned = True
            log.warning("writer inbox full: %d control records waiting", len(self._overflow))

    @property
    def backlog(self) -> int:
        return len(self._overflow)

    async def run(self) -> None:
        """Feed the overflow into the writer's channel; runs for the outlet's whole life."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._overflow:
                await self._channel.send(self._overflow[0])
                self._overflow.popleft()
            self._warned = False

    async def drain(self) -> None:
        """Push what is parked (shutdown)."""
        while self._overflow:
            await self._channel.send(self._overflow.popleft())
