"""A small in-memory ControlBackend standing in for the runtime (which is not part of the
control package), plus tokens, a settable clock and request helpers for the control tests.

It keeps real state (orders, kill switch, breaker, reconciliation items, audit records) so the
tests exercise the HTTP layer against behaviour, not canned answers.  Metrics come from the
real :class:`spark.runtime.metrics.Metrics`.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import attrs
import httpx
import trio
from starlette.applications import Starlette

from spark.config.secrets import ControlToken
from spark.core.secret import Secret
from spark.runtime.control import (
    ActorHealth,
    Conflict,
    DatabaseHealth,
    Health,
    InvalidInput,
    NotBuilt,
    NotFound,
    OrderRequest,
    Rejected,
    Unavailable,
    VenueHealth,
)
from spark.runtime.metrics import Metrics

ADMIN_TOKEN = "adm-Zq8TnX1v0cLr7WkE3yPa"
TRADER_TOKEN = "trd-Hn4bR2sKx9QmV6uJ1tLo"
VIEWER_TOKEN = "vwr-Gp7cY5wDz3NfB8eA0iSr"
TOKENS = (
    ControlToken("admin", Secret(ADMIN_TOKEN)),
    ControlToken("trader", Secret(TRADER_TOKEN)),
    ControlToken("viewer", Secret(VIEWER_TOKEN)),
)
ALL_TOKENS = (ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN)
PROBLEM = "application/problem+json"
OPEN_STATUSES = ("PENDING_CONFIRM", "NEW")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class SettableClock:
    """The rate limiter's clock, moved by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class AuditRecord:
    actor: str
    action: str
    target: str
    result: str
    detail: dict[str, Any]


class BackendDouble:
    def __init__(self) -> None:
        self.metrics = Metrics(process=False)
        self.status = "ok"
        self.is_live = True
        self.readiness: tuple[bool, str] = (True, "ok")
        self.kill_switch = False
        self.breaker_state = "closed"
        self.gate_state = "open"
        self.confirm_required = True
        self.orders: dict[str, dict[str, Any]] = {}
        self.reconciliation_items: dict[str, dict[str, Any]] = {
            "rec-1": {"id": "rec-1", "clientOrderId": "x1", "issue": "missing_fill",
                      "acked": False},
        }
        self.records: list[AuditRecord] = []
        self.export_rows = 3
        self.export_gate: trio.Event | None = None  # export waits here after its first chunk
        self.export_closed = False
        self.place_delay_s = 0.0
        self.failure: Exception | None = None  # raised by the snapshot methods when set
        self._ids = itertools.count(1)

    # -- public -------------------------------------------------------------------------
    def health(self) -> Health:
        self._maybe_fail()
        return Health(
            status=self.status,
            actors={"router": ActorHealth("running", 0), "writer": ActorHealth("running", 2)},
            circuit_breaker=self.breaker_state,
            kill_switch=self.kill_switch,
            trading_state="HALTED" if self.kill_switch else "ACTIVE",
            drift_gate="open",
            venue=VenueHealth("http://127.0.0.1:9400", True, 0.25),
            database=DatabaseHealth(True, 0),
        )

    def live(self) -> bool:
        return self.is_live

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    def metrics_text(self) -> bytes:
        self.metrics.kill_switch_engaged.set(1 if self.kill_switch else 0)
        return self.metrics.exposition()

    # -- orders -------------------------------------------------------------------------
    async def place_order(self, req: OrderRequest, actor: str) -> dict[str, Any]:
        if self.place_delay_s:
            await trio.sleep(self.place_delay_s)
        if self.kill_switch:
            raise Rejected("kill_switch", "the kill switch is engaged")
        coid = req.client_order_id or f"spark-{next(self._ids)}"
        if coid in self.orders:
            raise Conflict(f"order {coid} exists")
        order = {
            "clientOrderId": coid, "symbol": req.symbol, "side": req.side, "type": req.type,
            "quantity": req.quantity, "price": req.price, "timeInForce": req.time_in_force,
            "status": "PENDING_CONFIRM" if self.confirm_required else "NEW", "by": actor,
        }
        self.orders[coid] = order
        return order

    async def confirm_order(self, client_order_id: str, actor: str) -> dict[str, Any]:
        order = self._order(client_order_id)
        if order["status"] != "PENDING_CONFIRM":
            raise Conflict(f"order {client_order_id} is {order['status']}")
        order["status"] = "NEW"
        return order

    async def cancel_order(self, client_order_id: str, actor: str) -> dict[str, Any]:
        order = self._order(client_order_id)
        if order["status"] not in OPEN_STATUSES:
            raise Conflict(f"order {client_order_id} is {order['status']}")
        order["status"] = "CANCELED"
        return order

    def list_orders(self, status: str | None) -> list[dict[str, Any]]:
        self._maybe_fail()
        if status is None or status == "all":
            return list(self.orders.values())
        if status == "open":
            return [o for o in self.orders.values() if o["status"] in OPEN_STATUSES]
        raise InvalidInput("status", "must be open or all")

    def get_order(self, client_order_id: str) -> dict[str, Any]:
        return self._order(client_order_id)

    def _order(self, client_order_id: str) -> dict[str, Any]:
        try:
            return self.orders[client_order_id]
        except KeyError:
            raise NotFound(f"no order {client_order_id}") from None

    # -- safety -------------------------------------------------------------------------
    async def set_kill_switch(self, engaged: bool, actor: str) -> dict[str, Any]:
        self.kill_switch = engaged
        return {"engaged": engaged}

    def breaker(self) -> dict[str, Any]:
        return {"state": self.breaker_state}

    async def force_breaker(self, state: Literal["open", "close"], actor: str) -> dict[str, Any]:
        target = "open" if state == "open" else "closed"
        if self.breaker_state == target:
            raise Conflict(f"the circuit breaker is already {target}")
        self.breaker_state = target
        return {"state": target}

    def drift_gate(self) -> dict[str, Any]:
        return {"state": self.gate_state}

    async def force_drift_gate(self, state: Literal["open", "close"],
                               actor: str) -> dict[str, Any]:
        self.gate_state = "open" if state == "open" else "closed"
        return {"state": self.gate_state}

    # -- data ---------------------------------------------------------------------------
    def export_trades(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> AsyncIterator[bytes]:
        return ExportStream(self, since)

    def audit(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        return [attrs.asdict(r) for r in self.records]

    def reconciliation(self) -> list[dict[str, Any]]:
        self._maybe_fail()
        return list(self.reconciliation_items.values())

    async def ack_reconciliation(self, id: str, actor: str) -> dict[str, Any]:
        try:
            item = self.reconciliation_items[id]
        except KeyError:
            raise NotFound(f"no reconciliation item {id}") from None
        if item["acked"]:
            raise Conflict(f"{id} is already acknowledged")
        item["acked"] = True
        return item

    def record_audit(self, actor: str, action: str, target: str, result: str,
                     detail: dict[str, Any]) -> None:
        self.records.append(AuditRecord(actor, action, target, result, dict(detail)))

    # -- helpers ------------------------------------------------------------------------
    def _maybe_fail(self) -> None:
        if self.failure is not None:
            raise self.failure


class ExportStream:
    """The export's CSV, chunk by chunk.  A plain async iterator rather than an async
    generator, so nothing but an explicit ``aclose()`` marks it closed (no garbage-collector
    finalization can stand in for the HTTP layer closing it)."""

    def __init__(self, backend: BackendDouble, since: dt.datetime | None) -> None:
        self._backend = backend
        self._since = since
        self._next = -1  # -1: the header

    def __aiter__(self) -> ExportStream:
        return self

    async def __anext__(self) -> bytes:
        backend = self._backend
        if backend.failure is not None:
            raise backend.failure
        if self._next == -1:
            self._next = 0
            return b"trade_id,symbol,price,qty,since\r\n"
        if self._next == 0 and backend.export_gate is not None:
            await backend.export_gate.wait()
        if self._next >= backend.export_rows:
            raise StopAsyncIteration
        n, self._next = self._next, self._next + 1
        await trio.sleep(0)
        since = self._since.isoformat() if self._since else ""
        return f"{n},BTCUSDT,45000.5,0.001,{since}\r\n".encode()

    async def aclose(self) -> None:
        self._backend.export_closed = True


@attrs.define
class Harness:
    backend: BackendDouble
    client: httpx.AsyncClient
    app: Starlette
    address: tuple[str, int]


# The `control` fixture's type: ``await control(backend=…, tokens=…, config=…, clock=…)``.
Start = Callable[..., Awaitable[Harness]]

__all__ = [
    "ADMIN_TOKEN",
    "ALL_TOKENS",
    "PROBLEM",
    "TOKENS",
    "TRADER_TOKEN",
    "VIEWER_TOKEN",
    "AuditRecord",
    "BackendDouble",
    "Harness",
    "NotBuilt",
    "SettableClock",
    "Start",
    "Unavailable",
    "bearer",
]
