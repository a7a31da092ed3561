"""Sans-IO server-time offset: ``timestamp = local_ms + offset_ms``.

Binance rejects a SIGNED request with -1021 when its timestamp is more than 1 s ahead of the
server's clock or older than ``recvWindow``. The offset is measured against ``GET /time``
assuming the server read its clock halfway through the round trip (the NTP assumption), and is
re-measured after a -1021. Among samples the one with the shortest round trip wins until the
offset is marked stale, because a short round trip bounds the midpoint error best.
"""

from __future__ import annotations

__all__ = ["ServerTimeOffset"]


class ServerTimeOffset:
    """The estimated ``server_ms - local_ms``; zero until first measured."""

    __slots__ = ("_best_rtt_ms", "_offset_ms", "_stale", "samples")

    def __init__(self) -> None:
        self._offset_ms = 0
        self._best_rtt_ms: int | None = None
        self._stale = True
        self.samples = 0

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    @property
    def rtt_ms(self) -> int | None:
        """Round trip of the sample the current offset comes from."""
        return self._best_rtt_ms

    @property
    def needs_sync(self) -> bool:
        """True before the first measurement and after :meth:`mark_stale`."""
        return self._stale

    def record(self, sent_local_ms: int, server_ms: int, received_local_ms: int) -> int:
        """Take one sample; returns the offset now in use."""
        if received_local_ms < sent_local_ms:
            raise ValueError("received before sent")
        rtt = received_local_ms - sent_local_ms
        midpoint = sent_local_ms + rtt // 2
        if self._stale or self._best_rtt_ms is None or rtt <= self._best_rtt_ms:
            self._offset_ms = server_ms - midpoint
            self._best_rtt_ms = rtt
        self._stale = False
        self.samples += 1
        return self._offset_ms

    def mark_stale(self) -> None:
        """After -1021: the next sample replaces the offset whatever its round trip."""
        self._stale = True

    def timestamp(self, local_ms: int) -> int:
        """The ``timestamp`` parameter for a request signed at ``local_ms``."""
        return local_ms + self._offset_ms

    def server_seconds(self, local_ms: int) -> float:
        """Server wall-clock seconds: the time base of :class:`RateLimitBudget`."""
        return (local_ms + self._offset_ms) / 1000.0
