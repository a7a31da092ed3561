"""Websocket building blocks shared by the WS-API session and the stream readers.

The one rule that shapes this module: **drain frames at once.** trio-websocket's internal
reader task puts each message into a bounded queue and blocks when it is full, and while it is
blocked it answers no pings; Binance drops a client that has not ponged within a minute. So
the reader here never awaits anything but the next message: each frame is decoded on the spot
and handed over with ``send_nowait`` to our own bounded channel. If that channel is full the
consumer has fallen behind and :class:`FrameBacklogFull` is raised: the connection owner
reconnects and reconciles, rather than dropping frames silently or stalling the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

import attrs
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.exchange.errors import ExchangeError, MalformedFrame

__all__ = ["FrameBacklogFull", "FramePump", "Inbound", "InboundSink", "open_ws"]

log = logging.getLogger("spark.exchange.ws")

E = TypeVar("E")

# Small on purpose: our reader empties it continuously; it only absorbs scheduling jitter.
LIBRARY_QUEUE_SIZE = 16
MAX_MESSAGE_BYTES = 1 << 20


class FrameBacklogFull(ExchangeError):
    """Our own inbound channel is full: the consumer is behind. Reconnect and reconcile."""

    reason = "frame_backlog_full"


@attrs.frozen(slots=True)
class Inbound(Generic[E]):
    """A decoded frame and when it arrived (for ``spark_ingest_lag_seconds``)."""

    event: E
    received_at: float  # trio.current_time()
    received_ms: int  # wall clock, epoch ms; compare with the event's exchange time


def open_ws(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    disconnect_timeout_s: float = 5.0,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Connect to ``url`` (``ws://`` or ``wss://``); closes on exit."""
    return open_websocket_url(
        url,
        extra_headers=extra_headers,
        message_queue_size=LIBRARY_QUEUE_SIZE,
        max_message_size=MAX_MESSAGE_BYTES,
        connect_timeout=connect_timeout_s,
        disconnect_timeout=disconnect_timeout_s,
    )


def _log_malformed(exc: MalformedFrame) -> None:
    log.warning("dropping malformed frame: %s", exc)


class InboundSink(Generic[E]):
    """Stamps decoded events and hands them over with ``send_nowait``; counts frames.

    Malformed frames are counted, reported to ``on_malformed`` (default: a warning log with
    the truncated, credential-free text) and skipped; they are not Binance events, so nothing
    is lost by skipping them.
    """

    def __init__(
        self,
        send: trio.MemorySendChannel[Inbound[E]],
        *,
        clock: WallClock = SYSTEM_CLOCK,
        on_malformed: Callable[[MalformedFrame], None] | None = None,
    ) -> None:
        self._send = send
        self._clock = clock
        self._on_malformed = on_malformed or _log_malformed
        self.frames = 0  # every frame read, malformed ones included
        self.malformed = 0

    def malformed_frame(self, exc: MalformedFrame) -> None:
        self.malformed += 1
        self._on_malformed(exc)

    def deliver(self, event: E) -> None:
        try:
            self._send.send_nowait(Inbound(event, trio.current_time(), self._clock.now_ms()))
        except trio.WouldBlock:
            raise FrameBacklogFull("inbound channel full: consumer is behind") from None


class FramePump(Generic[E]):
    """Reads one stream connection until it closes: decode, stamp, ``send_nowait``."""

    def __init__(
        self,
        decode: Callable[[str | bytes], E],
        send: trio.MemorySendChannel[Inbound[E]],
        *,
        clock: WallClock = SYSTEM_CLOCK,
        on_malformed: Callable[[MalformedFrame], None] | None = None,
    ) -> None:
        self._decode = decode
        self.sink = InboundSink(send, clock=clock, on_malformed=on_malformed)

    def feed(self, raw: str | bytes) -> None:
        """Handle one frame (synchronous: never yields, so the socket keeps being read)."""
        self.sink.frames += 1
        try:
            event = self._decode(raw)
        except MalformedFrame as exc:
            self.sink.malformed_frame(exc)
            return
        self.sink.deliver(event)

    async def run(self, ws: WebSocketConnection) -> None:
        """Pump until the connection closes (``trio_websocket.ConnectionClosed`` propagates)."""
        while True:
            self.feed(await ws.get_message())
