"""What the control port needs from the runtime: :class:`ControlBackend`, and its value types.

The HTTP layer (:mod:`spark.runtime.control.app`) only translates: it authenticates, checks
permissions, rate-limits, validates input into the types below, calls one backend method and
renders the result (or the :mod:`~spark.runtime.control.errors` exception) as JSON.  Everything
with a decision in it lives behind this protocol, in the runtime.

Conventions for implementers:

* Snapshot methods (``health``, ``live``, ``ready``, ``metrics_text``, ``list_orders``,
  ``get_order``, ``breaker``, ``audit``, ``reconciliation``) are synchronous and run on the
  event loop: keep them cheap (read in-memory state; no database round trips).
* Action methods are async.  ``actor`` is the audit identity of the caller
  (``"<role>:<fingerprint>"``, see :mod:`~spark.runtime.control.auth`), never a token.
* Raise the named errors of :mod:`spark.runtime.control.errors` (``NotFound``, ``Conflict``,
  ``Rejected``, ``Unavailable``, ``NotBuilt``, ``InvalidInput``); anything else becomes a
  generic 500 whose detail says nothing.
* Returned dicts are rendered with orjson; ``Decimal`` values are rendered as strings.
* ``record_audit`` is called once for every private call (401/403/429 included, and unknown
  paths under ``/api/private/``), after the outcome is known, with ``result`` the HTTP status
  as text (``"200"``, ``"401"`` …) and ``actor`` ``"anonymous"`` when there was no valid
  token.  It runs on the event loop: hand the record to the writer, do not block.  If it
  raises, the error is logged and the response still goes out (the action has happened).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol

import attrs

__all__ = [
    "HEALTH_STATUSES",
    "TRADING_STATES",
    "ActorHealth",
    "ControlBackend",
    "DatabaseHealth",
    "Health",
    "OrderRequest",
    "VenueHealth",
]

HEALTH_STATUSES = ("ok", "degraded", "down")
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")


@attrs.frozen
class ActorHealth:
    state: str
    restarts: int = 0


@attrs.frozen
class VenueHealth:
    url: str
    connected: bool
    last_event_age_s: float | None = None


@attrs.frozen
class DatabaseHealth:
    ok: bool
    spooled_events: int = 0


@attrs.frozen
class Health:
    """The public health document (CONTRACT §5); ``status`` "down" answers 503."""

    status: str = attrs.field(validator=attrs.validators.in_(HEALTH_STATUSES))
    actors: Mapping[str, ActorHealth]
    circuit_breaker: str
    kill_switch: bool
    trading_state: str = attrs.field(validator=attrs.validators.in_(TRADING_STATES))
    drift_gate: str
    venue: VenueHealth
    database: DatabaseHealth

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "actors": {
                name: {"state": actor.state, "restarts": actor.restarts}
                for name, actor in sorted(self.actors.items())
            },
            "circuit_breaker": {"state": self.circuit_breaker},
            "kill_switch": self.kill_switch,
            "trading_state": self.trading_state,
            "drift_gate": {"state": self.drift_gate},
            "venue": {
                "url": self.venue.url,
                "connected": self.venue.connected,
                "last_event_age_s": self.venue.last_event_age_s,
            },
            "database": {
                "ok": self.database.ok,
                "spooled_events": self.database.spooled_events,
            },
        }


@attrs.frozen
class OrderRequest:
    """A validated ``POST /api/private/orders`` body.

    ``side`` is ``BUY``/``SELL``, ``type`` ``MARKET``/``LIMIT``; ``price`` is set exactly for
    LIMIT orders; ``time_in_force`` (``GTC``/``IOC``/``FOK``) only for LIMIT orders and left
    ``None`` when the caller did not choose (the runtime picks its default).
    """

    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None


class ControlBackend(Protocol):
    """Implemented by the runtime; called by the HTTP control port."""

    # -- public -------------------------------------------------------------------------
    def health(self) -> Health: ...

    def live(self) -> bool: ...

    def ready(self) -> tuple[bool, str]:
        """``(ready_to_trade, reason)``; the reason is a short stable code (``ok``,
        ``venue_disconnected``, ``kill_switch`` …)."""
        ...

    def metrics_text(self) -> bytes: ...

    # -- orders -------------------------------------------------------------------------
    async def place_order(self, req: OrderRequest, actor: str) -> dict[str, Any]: ...

    async def confirm_order(self, client_order_id: str, actor: str) -> dict[str, Any]: ...

    async def cancel_order(self, client_order_id: str, actor: str) -> dict[str, Any]: ...

    def list_orders(self, status: str | None) -> list[dict[str, Any]]: ...

    def get_order(self, client_order_id: str) -> dict[str, Any]: ...

    # -- safety -------------------------------------------------------------------------
    async def set_kill_switch(self, engaged: bool, actor: str) -> dict[str, Any]: ...

    def breaker(self) -> dict[str, Any]: ...

    async def force_breaker(
        self, state: Literal["open", "close"], actor: str
    ) -> dict[str, Any]: ...

    def drift_gate(self) -> dict[str, Any]: ...

    async def force_drift_gate(
        self, state: Literal["open", "close"], actor: str
    ) -> dict[str, Any]: ...

    # -- data ---------------------------------------------------------------------------
    def export_trades(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> AsyncIterator[bytes]:
        """CSV bytes (header first), streamed; typically an async generator."""
        ...

    def audit(self, since: dt.datetime | None) -> list[dict[str, Any]]: ...

    def reconciliation(self) -> list[dict[str, Any]]: ...

    async def ack_reconciliation(self, id: str, actor: str) -> dict[str, Any]: ...

    # -- audit --------------------------------------------------------------------------
    def record_audit(
        self, actor: str, action: str, target: str, result: str, detail: dict[str, Any]
    ) -> None: ...
