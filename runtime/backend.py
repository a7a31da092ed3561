"""The runtime's side of the control port: :class:`RuntimeBackend` implements
:class:`~spark.runtime.control.backend.ControlBackend` over the runtime's components.

Routes whose feature is not wired into this runtime answer 501 (``NotBuilt``), never made-up data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from spark.runtime.control.backend import (
    ActorHealth,
    DatabaseHealth,
    Health,
    OrderRequest,
    VenueHealth,
)
from spark.runtime.control.errors import NotBuilt

if TYPE_CHECKING:
    from spark.runtime.process import Runtime


class OrdersApi(Protocol):
    """What the order path offers the control port (see ``spark.actors.router``)."""

    async def place(self, req: OrderRequest, actor: str) -> dict[str, Any]: ...

    async def confirm(self, client_order_id: str, actor: str) -> dict[str, Any]: ...

    async def cancel(self, client_order_id: str, actor: str) -> dict[str, Any]: ...

    def list(self, status: str | None) -> list[dict[str, Any]]: ...

    def get(self, client_order_id: str) -> dict[str, Any]: ...


class GateApi(Protocol):
    """What the control port needs of the drift gate actor."""

    def snapshot_json(self) -> dict[str, Any]: ...

    async def force(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]: ...


class BreakerApi(Protocol):
    def state_name(self) -> str: ...

    def snapshot_json(self) -> dict[str, Any]: ...

    async def force(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]: ...


class ReconciliationApi(Protocol):
    def entries(self) -> list[dict[str, Any]]: ...

    async def ack(self, id: str, actor: str) -> dict[str, Any]: ...


ExportApi = Callable[[dt.datetime | None, dt.datetime | None], AsyncIterator[bytes]]


class RuntimeBackend:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- public ----------------------------------------------------------------------------

    def health(self) -> Health:
        rt = self._rt
        actors = {path: ActorHealth(state=a["state"], restarts=a["restarts"])
                  for path, a in rt.actors().items()}
        return Health(
            status=rt.status(),
            actors=actors,
            circuit_breaker=rt.breaker_state_name(),
            kill_switch=rt.kill_switch.engaged,
            trading_state=rt.trading_state_name(),
            drift_gate=rt.drift_gate_state_name(),
            venue=VenueHealth(url=rt.venue_url or "", connected=rt.venue_connected(),
                              last_event_age_s=rt.venue_last_event_age_s()),
            database=DatabaseHealth(ok=rt.database_ok(), spooled_events=rt.spooled_events()),
        )

    def live(self) -> bool:
        return self._rt.root.running

    def ready(self) -> tuple[bool, str]:
        return self._rt.ready_to_trade()

    def metrics_text(self) -> bytes:
        return self._rt.metrics_text()

    # -- orders ----------------------------------------------------------------------------

    async def place_order(self, req: OrderRequest, actor: str) -> dict[str, Any]:
        return await self._orders("orders").place(req, actor)

    async def confirm_order(self, client_order_id: str, actor: str) -> dict[str, Any]:
        return await self._orders("confirm").confirm(client_order_id, actor)

    async def cancel_order(self, client_order_id: str, actor: str) -> dict[str, Any]:
        return await self._orders("cancel").cancel(client_order_id, actor)

    def list_orders(self, status: str | None) -> list[dict[str, Any]]:
        return self._orders("orders").list(status)

    def get_order(self, client_order_id: str) -> dict[str, Any]:
        return self._orders("orders").get(client_order_id)

    def _orders(self, feature: str) -> OrdersApi:
        if self._rt.orders_api is None:
            raise NotBuilt(feature)
        return self._rt.orders_api

    # -- safety ----------------------------------------------------------------------------

    async def set_kill_switch(self, engaged: bool, actor: str) -> dict[str, Any]:
        changed = self._rt.kill_switch.set(engaged, actor=actor, source="control_port")
        return {"engaged": self._rt.kill_switch.engaged, "changed": changed}

    def breaker(self) -> dict[str, Any]:
        if self._rt.breaker_api is None:
            raise NotBuilt("circuit_breaker")
        return self._rt.breaker_api.snapshot_json()

    async def force_breaker(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]:
        if self._rt.breaker_api is None:
            raise NotBuilt("circuit_breaker")
        return await self._rt.breaker_api.force(state, actor)

    def drift_gate(self) -> dict[str, Any]:
        if self._rt.gate_api is None:
            raise NotBuilt("drift_gate")
        return self._rt.gate_api.snapshot_json()

    async def force_drift_gate(self, state: Literal["open", "close"],
                               actor: str) -> dict[str, Any]:
        if self._rt.gate_api is None:
            raise NotBuilt("drift_gate")
        return await self._rt.gate_api.force(state, actor)

    # -- data ------------------------------------------------------------------------------

    def export_trades(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> AsyncIterator[bytes]:
        if self._rt.export_api is None:
            raise NotBuilt("export")
        return self._rt.export_api(since, until)

    def audit(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        since_ms = int(since.timestamp() * 1000) if since is not None else 0
        return [event.as_json() for event in self._rt.audit.since(since_ms)]

    def reconciliation(self) -> list[dict[str, Any]]:
        if self._rt.reconciliation_api is None:
            raise NotBuilt("reconciliation")
        return self._rt.reconciliation_api.entries()

    async def ack_reconciliation(self, id: str, actor: str) -> dict[str, Any]:
        if self._rt.reconciliation_api is None:
            raise NotBuilt("reconciliation")
        return await self._rt.reconciliation_api.ack(id, actor)

    # -- audit -----------------------------------------------------------------------------

    def record_audit(
        self, actor: str, action: str, target: str, result: str, detail: dict[str, Any]
    ) -> None:
        self._rt.audit.record(actor, action, target, result, detail)
