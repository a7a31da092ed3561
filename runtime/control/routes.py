"""The route table of CONTRACT §5, as data.

One :class:`RouteSpec` per method and path: the app (:mod:`~spark.runtime.control.app`) binds a
handler to each by ``name``, and the OpenAPI document (:mod:`~spark.runtime.control.openapi`)
is generated from the same table, so the two cannot drift apart.
"""

from __future__ import annotations

import attrs

from spark.runtime.control.auth import Permission

__all__ = ["ROUTES", "Query", "RouteSpec", "Success"]


@attrs.frozen
class Query:
    name: str
    description: str
    format: str | None = None  # OpenAPI string format, e.g. "date-time"


@attrs.frozen
class Success:
    status: int = 200
    media_type: str = "application/json"
    schema: str = "Object"  # a name under components/schemas
    description: str = "OK"


@attrs.frozen
class RouteSpec:
    method: str
    path: str  # Starlette template == OpenAPI template (same parameter names)
    name: str  # operationId and handler name
    summary: str
    permission: Permission | None  # None: public, no token
    body: str | None = None  # request body schema name
    query: tuple[Query, ...] = ()
    success: Success = Success()
    errors: tuple[int, ...] = ()  # besides the ones every private route can answer

    @property
    def private(self) -> bool:
        return self.permission is not None

    @property
    def admin(self) -> bool:
        """Admin routes have their own, lower rate limit."""
        return self.permission is Permission.ADMIN

    @property
    def action(self) -> str:
        """The audit name of the route: ``METHOD /path/{template}``."""
        return f"{self.method} {self.path}"


_SINCE = Query("since", "Only records at or after this instant (ISO 8601; UTC if no offset).",
               "date-time")
_UNTIL = Query("until", "Only records before this instant (ISO 8601; UTC if no offset).",
               "date-time")
_METRICS = Success(media_type="text/plain; version=0.0.4; charset=utf-8", schema="Text",
                   description="Prometheus text exposition")

ROUTES: tuple[RouteSpec, ...] = (
    # -- public -------------------------------------------------------------------------
    RouteSpec("GET", "/api/public/health", "health", "Runtime health", None,
              success=Success(schema="Health", description="ok or degraded"), errors=(503,)),
    RouteSpec("GET", "/api/public/metrics/prom", "metrics_prom", "Prometheus metrics", None,
              success=_METRICS),
    RouteSpec("GET", "/metrics", "metrics", "Prometheus metrics", None, success=_METRICS),
    RouteSpec("GET", "/healthz", "healthz", "Liveness", None,
              success=Success(schema="Live"), errors=(503,)),
    RouteSpec("GET", "/readyz", "readyz", "Readiness to trade", None,
              success=Success(schema="Ready"), errors=(503,)),
    RouteSpec("GET", "/api/openapi.json", "openapi", "This document", None,
              success=Success(description="OpenAPI 3.1 document")),
    # -- orders -------------------------------------------------------------------------
    RouteSpec("POST", "/api/private/orders", "place_order", "Place an order",
              Permission.EXECUTE, body="OrderRequest", errors=(400, 409, 413, 422)),
    RouteSpec("GET", "/api/private/orders", "list_orders", "List orders", Permission.READ,
              query=(Query("status", "Filter by status, e.g. open."),),
              success=Success(schema="ObjectList"), errors=(400,)),
    RouteSpec("GET", "/api/private/orders/{clientOrderId}", "get_order", "One order",
              Permission.READ, errors=(400, 404)),
    RouteSpec("DELETE", "/api/private/orders/{clientOrderId}", "cancel_order",
              "Cancel an order", Permission.EXECUTE, errors=(400, 404, 409, 422)),
    RouteSpec("POST", "/api/private/orders/{clientOrderId}/confirm", "confirm_order",
              "Confirm an order waiting for confirmation", Permission.CONFIRM,
              errors=(400, 404, 409, 422)),
    # -- safety -------------------------------------------------------------------------
    RouteSpec("POST", "/api/private/kill-switch", "set_kill_switch",
              "Engage or release the kill switch", Permission.ADMIN, body="KillSwitch",
              errors=(400, 413)),
    RouteSpec("GET", "/api/private/circuit-breaker", "get_breaker", "Circuit breaker state",
              Permission.READ),
    RouteSpec("POST", "/api/private/circuit-breaker/open", "open_breaker",
              "Force the circuit breaker open", Permission.ADMIN, errors=(409,)),
    RouteSpec("POST", "/api/private/circuit-breaker/close", "close_breaker",
              "Force the circuit breaker closed", Permission.ADMIN, errors=(409,)),
    RouteSpec("GET", "/api/private/drift-gate", "get_drift_gate", "Drift gate state",
              Permission.READ),
    RouteSpec("POST", "/api/private/drift-gate/open", "open_drift_gate",
              "Open the drift gate now (and release an operator's latch)", Permission.ADMIN),
    RouteSpec("POST", "/api/private/drift-gate/close", "close_drift_gate",
              "Close the drift gate now, latched until an operator opens it",
              Permission.ADMIN),
    # -- data ---------------------------------------------------------------------------
    RouteSpec("GET", "/api/private/export/trades.csv", "export_trades",
              "Trades as CSV (streamed)", Permission.EXPORT, query=(_SINCE, _UNTIL),
              success=Success(media_type="text/csv; charset=utf-8", schema="Text",
                              description="CSV, header first"),
              errors=(400,)),
    RouteSpec("GET", "/api/private/audit", "audit", "Audit log", Permission.ADMIN,
              query=(_SINCE,), success=Success(schema="ObjectList"), errors=(400,)),
    RouteSpec("GET", "/api/private/reconciliation", "reconciliation",
              "Reconciliation items", Permission.READ, success=Success(schema="ObjectList")),
    RouteSpec("POST", "/api/private/reconciliation/{id}/ack", "ack_reconciliation",
              "Acknowledge a reconciliation item", Permission.ADMIN, errors=(400, 404, 409)),
)
