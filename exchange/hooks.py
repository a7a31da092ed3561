"""Observer hooks: how the runtime's metrics see the REST client without the client knowing
Prometheus.

The runtime passes an object with these methods (all optional in spirit: subclass
:class:`NullObserver` and override what you need). Calls happen inline on the request path, so
they must be quick and must not block. An observer that raises is logged and ignored: a metrics
bug must never turn a placed order into an "error".
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullObserver", "RestObserver"]


class RestObserver(Protocol):
    def on_bytes_sent(self, endpoint: str, since_call_s: float, budget_wait_s: float) -> None:
        """The request body has been written to the socket.

        ``since_call_s``: from the client method being called to the last byte written (the
        internal overhead, including ``budget_wait_s`` spent waiting for rate-limit headroom).
        """

    def on_response(self, endpoint: str, status: str, elapsed_s: float) -> None:
        """One finished attempt, for ``spark_exchange_requests_total{endpoint,status}``.

        ``status`` is the HTTP status (``"200"``, ``"429"``) or ``"timeout"``,
        ``"transport_error"``, ``"unknown"`` when no response arrived.
        """

    def on_used_weight(self, used: int) -> None:
        """The IP's used request weight this minute, for ``spark_exchange_used_weight``."""

    def on_rate_limit_state(self, blocked_until: float | None, banned_until: float | None) -> None:
        """Called when a 429 or 418 changes the block/ban state (server epoch seconds)."""


class NullObserver:
    """Does nothing; the default."""

    def on_bytes_sent(self, endpoint: str, since_call_s: float, budget_wait_s: float) -> None:
        pass

    def on_response(self, endpoint: str, status: str, elapsed_s: float) -> None:
        pass

    def on_used_weight(self, used: int) -> None:
        pass

    def on_rate_limit_state(self, blocked_until: float | None, banned_until: float | None) -> None:
        pass
