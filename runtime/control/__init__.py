"""The HTTP control port (CONTRACT §5).

* :func:`build_app` — the Starlette app around a :class:`ControlBackend` (the runtime);
* :func:`serve` — hypercorn's trio worker, reporting the bound ``(host, port)``;
* :mod:`.errors` — what backends raise, each mapped to an ``application/problem+json`` status.

The HTTP layer only translates; every decision lives in the backend.
"""

from spark.runtime.control.app import METRICS_CONTENT_TYPE, ControlInfo, build_app
from spark.runtime.control.auth import ROLE_PERMISSIONS, Identity, Permission, fingerprint
from spark.runtime.control.backend import (
    ActorHealth,
    ControlBackend,
    DatabaseHealth,
    Health,
    OrderRequest,
    VenueHealth,
)
from spark.runtime.control.errors import (
    BodyTooLarge,
    Conflict,
    ControlError,
    ControlPortRefused,
    InvalidInput,
    NotBuilt,
    NotFound,
    Rejected,
    Unavailable,
)
from spark.runtime.control.exposure import is_loopback
from spark.runtime.control.openapi import openapi_document
from spark.runtime.control.ratelimit import Decision, SlidingWindowLimiter
from spark.runtime.control.routes import ROUTES, RouteSpec
from spark.runtime.control.server import serve

__all__ = [
    "METRICS_CONTENT_TYPE",
    "ROLE_PERMISSIONS",
    "ROUTES",
    "ActorHealth",
    "BodyTooLarge",
    "Conflict",
    "ControlBackend",
    "ControlError",
    "ControlInfo",
    "ControlPortRefused",
    "DatabaseHealth",
    "Decision",
    "Health",
    "Identity",
    "InvalidInput",
    "NotBuilt",
    "NotFound",
    "OrderRequest",
    "Permission",
    "Rejected",
    "RouteSpec",
    "SlidingWindowLimiter",
    "Unavailable",
    "VenueHealth",
    "build_app",
    "fingerprint",
    "is_loopback",
    "openapi_document",
    "serve",
]
