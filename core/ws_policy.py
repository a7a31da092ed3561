"""When a websocket reader connects, reads, gives up on a connection, and waits: no I/O.

A user-data or market-stream socket fails in three ways the reader must handle differently:

* **It closes or cannot be opened** (drop, refused, TLS error, the 24 h limit): reconnect after a
  jittered exponential backoff, so a venue that is down is not hammered and many readers do not
  reconnect in lock-step. The backoff is the supervisor's own
  (:class:`spark.supervision.policy.Backoff` / ``BackoffState``) and starts again from its first
  step once a connection has stayed up for ``healthy_after_s`` — a connection that lived an hour
  and then dropped is not the fifth failure of a streak.
* **It stalls**: TCP stays up but nothing arrives. Binance pings every 20 s (and market streams
  tick constantly), so *no frame at all* — pings included — for ``stall_timeout_s`` means the
  connection is dead in all but name: close it and reconnect (this is also the only way to notice
  a half-open TCP connection).
* **The server announces ``serverShutdown``**: it is going away; reconnect right after closing,
  without a backoff delay (it is not a failure, and waiting would only lengthen the gap).

The reader drives it like this::

    while True:
        step = policy.next_step(trio.current_time())
        match step:
            case ConnectNow():   connect → policy.on_connected(now) | policy.on_connect_failed(now)
            case ReadUntil(deadline=d):  read frames until d → policy.on_frame(now) per frame;
                                         a close → policy.on_closed(now)
            case CloseNow():     close the socket → policy.on_closed(now)
            case SleepUntil(until=t):    sleep until t

Time is monotonic seconds. ``uptime(now)`` feeds ``spark_ws_connection_uptime_seconds``,
``connected`` feeds ``spark_ws_connected``, ``reconnects`` feeds ``spark_ws_reconnect_total``
(every connection attempt after the first).
"""

from __future__ import annotations

import enum
import random

import attrs

from spark.config.schema import WsConfig
from spark.core.userdata_errors import InvalidWsTransition
from spark.supervision.policy import Backoff, BackoffState

__all__ = [
    "CloseNow",
    "ConnectNow",
    "ReadUntil",
    "ReconnectPolicy",
    "SleepUntil",
    "WsPhase",
    "WsStep",
]


@attrs.frozen
class ConnectNow:
    """Open the connection now; ``attempt`` counts attempts since the last healthy connection."""

    attempt: int


@attrs.frozen
class ReadUntil:
    """Connected: read frames; if none arrives by ``deadline`` ask again (it will say close)."""

    deadline: float


@attrs.frozen
class CloseNow:
    """Close the connection (``reason``: ``stall`` or ``server_shutdown``), then ``on_closed``."""

    reason: str


@attrs.frozen
class SleepUntil:
    """Back off: do not reconnect before ``until``."""

    until: float


WsStep = ConnectNow | ReadUntil | CloseNow | SleepUntil


class WsPhase(enum.Enum):
    IDLE = "idle"  # not connected; connect when the backoff allows
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"  # we decided to close; waiting for on_closed


class ReconnectPolicy:
    """Stall detection, reconnect backoff and uptime for one websocket (see module docstring)."""

    def __init__(
        self,
        *,
        stall_timeout_s: float,
        backoff: Backoff,
        rng: random.Random | None = None,
    ) -> None:
        if not stall_timeout_s > 0:
            raise ValueError(f"stall_timeout_s must be > 0, got {stall_timeout_s!r}")
        self._stall = stall_timeout_s
        self._backoff = BackoffState(backoff)
        self._rng = rng if rng is not None else random.Random()
        self._phase = WsPhase.IDLE
        self._retry_at = 0.0
        self._connected_at: float | None = None
        self._last_frame_at = 0.0
        self._shutdown_notice = False
        self._close_reason: str | None = None
        self._attempts = 0
        self.reconnects = 0
        self.stalls = 0
        self.server_shutdowns = 0
        self.last_delay_s = 0.0

    @classmethod
    def from_config(
        cls,
        config: WsConfig,
        *,
        rng: random.Random | None = None,
        jitter: float = 0.2,
        healthy_after_s: float | None = 60.0,
    ) -> ReconnectPolicy:
        """The policy ``[ws]`` describes; ``healthy_after_s`` None = ``backoff_max_s``."""
        backoff = Backoff(
            initial_s=config.backoff_initial_s,
            multiplier=2.0,
            max_s=max(config.backoff_max_s, config.backoff_initial_s),
            jitter=jitter,
            healthy_after_s=healthy_after_s,
        )
        return cls(stall_timeout_s=config.stall_timeout_s, backoff=backoff, rng=rng)

    # -- queries -------------------------------------------------------------------------------

    @property
    def phase(self) -> WsPhase:
        return self._phase

    @property
    def connected(self) -> bool:
        """Whether a connection is up (``spark_ws_connected``); still True while closing."""
        return self._connected_at is not None

    def uptime(self, now: float) -> float:
        """Seconds the current connection has been up; 0 when there is none."""
        return 0.0 if self._connected_at is None else max(0.0, now - self._connected_at)

    def stall_deadline(self) -> float | None:
        """When the current connection counts as stalled if no frame arrives before."""
        return None if self._connected_at is None else self._last_frame_at + self._stall

    # -- driving -------------------------------------------------------------------------------

    def next_step(self, now: float) -> WsStep:
        match self._phase:
            case WsPhase.IDLE:
                if now < self._retry_at:
                    return SleepUntil(self._retry_at)
                self._phase = WsPhase.CONNECTING
                if self._attempts > 0:
                    self.reconnects += 1
                self._attempts += 1
                return ConnectNow(self._backoff.attempt)
            case WsPhase.CONNECTED:
                if self._shutdown_notice:
                    return self._close("server_shutdown")
                deadline = self._last_frame_at + self._stall
                if now >= deadline:
                    self.stalls += 1
                    return self._close("stall")
                return ReadUntil(deadline)
            case WsPhase.CLOSING:
                assert self._close_reason is not None
                return CloseNow(self._close_reason)
            case WsPhase.CONNECTING:
                raise InvalidWsTransition("next_step while a connect is in flight")

    def _close(self, reason: str) -> CloseNow:
        self._phase = WsPhase.CLOSING
        self._close_reason = reason
        return CloseNow(reason)

    def on_connected(self, now: float) -> None:
        self._require(WsPhase.CONNECTING, "on_connected")
        self._phase = WsPhase.CONNECTED
        self._connected_at = now
        self._last_frame_at = now
        self._shutdown_notice = False

    def on_connect_failed(self, now: float) -> None:
        self._require(WsPhase.CONNECTING, "on_connect_failed")
        self._backoff.note_exit(0.0)
        self._schedule_retry(now, self._backoff.next_delay(self._rng))

    def on_frame(self, now: float) -> None:
        """Any frame arrived (data, ping, pong): the connection is alive."""
        if self._connected_at is None:
            raise InvalidWsTransition("on_frame without a connection")
        self._last_frame_at = max(self._last_frame_at, now)

    def on_server_shutdown(self, now: float) -> None:
        """``serverShutdown`` arrived: close now and reconnect without backoff."""
        if self._connected_at is None:
            return
        self.on_frame(now)
        self.server_shutdowns += 1
        self._shutdown_notice = True

    def on_closed(self, now: float) -> None:
        """The connection ended, because we closed it or not."""
        if self._connected_at is None:
            raise InvalidWsTransition("on_closed without a connection")
        uptime = self.uptime(now)
        self._connected_at = None
        self._close_reason = None
        self._backoff.note_exit(uptime)
        if self._shutdown_notice:
            self._shutdown_notice = False
            self._schedule_retry(now, 0.0)
        else:
            self._schedule_retry(now, self._backoff.next_delay(self._rng))

    # -- internals -----------------------------------------------------------------------------

    def _require(self, phase: WsPhase, what: str) -> None:
        if self._phase is not phase:
            raise InvalidWsTransition(f"{what} in phase {self._phase.value}")

    def _schedule_retry(self, now: float, delay: float) -> None:
        self.last_delay_s = delay
        self._retry_at = now + delay
        self._phase = WsPhase.IDLE
