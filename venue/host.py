"""What the endpoints and admin routes need from the running venue.

A Protocol rather than the :class:`spark.venue.server.Venue` class itself, so the endpoints do
not import the module that imports them.
"""

from __future__ import annotations

from typing import Protocol

from spark.venue.core import VenueCore
from spark.venue.hub import Hub
from spark.venue.rest import RestApi


class VenueHost(Protocol):
    core: VenueCore
    rest: RestApi
    hub: Hub
    queue_size: int
    max_connection_s: float
    streams: frozenset[str]
    url: str | None

    def now_ms(self) -> int:
        """The host's wall clock in ms (the core adds injected skew)."""
        ...

    def flush(self) -> None:
        """Deliver the core's outbox to the websockets."""
        ...

    def stall(self, duration_s: float | None) -> None:
        """Hold user-data frames until resumed or for ``duration_s``."""
        ...
