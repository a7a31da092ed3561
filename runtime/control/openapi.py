"""The OpenAPI 3.1 document of the control port, generated from the route table."""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from spark.runtime.control.auth import ROLE_PERMISSIONS
from spark.runtime.control.backend import HEALTH_STATUSES, TRADING_STATES
from spark.runtime.control.problems import PROBLEM_JSON
from spark.runtime.control.routes import ROUTES, RouteSpec
from spark.runtime.control.validation import ORDER_TYPES, SIDES, TIME_IN_FORCE

__all__ = ["PRIVATE_ERRORS", "openapi_document"]

# Every private route can answer these, whatever it does.
PRIVATE_ERRORS = (401, 403, 429, 500, 501, 503)

_DECIMAL = {
    "type": ["string", "number"],
    "description": "A positive decimal; send a string to keep it exact.",
    "examples": ["0.00012"],
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "reason": {"type": "string", "description": "Stable machine-readable code."},
            "field": {"type": "string", "description": "The offending field (400)."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "actors", "circuit_breaker", "kill_switch", "trading_state",
                     "drift_gate", "venue", "database"],
        "properties": {
            "status": {"enum": list(HEALTH_STATUSES)},
            "actors": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["state", "restarts"],
                    "properties": {"state": {"type": "string"},
                                   "restarts": {"type": "integer"}},
                },
            },
            "circuit_breaker": {"type": "object", "required": ["state"],
                                "properties": {"state": {"type": "string"}}},
            "kill_switch": {"type": "boolean"},
            "trading_state": {"enum": list(TRADING_STATES)},
            "drift_gate": {"type": "object", "required": ["state"],
                           "properties": {"state": {"type": "string"}}},
            "venue": {
                "type": "object",
                "required": ["url", "connected", "last_event_age_s"],
                "properties": {"url": {"type": "string"}, "connected": {"type": "boolean"},
                               "last_event_age_s": {"type": ["number", "null"]}},
            },
            "database": {
                "type": "object",
                "required": ["ok", "spooled_events"],
                "properties": {"ok": {"type": "boolean"},
                               "spooled_events": {"type": "integer"}},
            },
        },
    },
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"},
                                               "reason": {"type": "string"}}},
    "OrderRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["symbol", "side", "type", "quantity"],
        "properties": {
            "symbol": {"type": "string", "pattern": "^[A-Za-z0-9]{2,20}$",
                       "examples": ["BTCUSDT"]},
            "side": {"enum": list(SIDES)},
            "type": {"enum": list(ORDER_TYPES)},
            "quantity": _DECIMAL,
            "price": {**_DECIMAL, "description": "Required for LIMIT, refused for MARKET."},
            "timeInForce": {"enum": list(TIME_IN_FORCE), "description": "LIMIT orders only."},
            "clientOrderId": {"type": "string", "pattern": "^[.A-Z:/a-z0-9_-]{1,36}$"},
        },
    },
    "KillSwitch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["engaged"],
        "properties": {"engaged": {"type": "boolean"}},
    },
    "Object": {"type": "object"},
    "ObjectList": {"type": "array", "items": {"type": "object"}},
    "Text": {"type": "string"},
}

_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")


def _problem(status: int, spec: RouteSpec) -> dict[str, Any]:
    description = HTTPStatus(status).phrase
    if status == 401:
        description = "Missing, malformed or unknown bearer token"
    elif status == 403:
        description = f"The token's role lacks the '{spec.permission}' permission"
    elif status == 422:
        description = "Rejected by the runtime; 'reason' says why (e.g. kill_switch)"
    elif status == 501:
        description = "The feature behind this route is not in this build"
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {
            "description": "Seconds to wait (at least 1).",
            "schema": {"type": "integer", "minimum": 1},
        }}
    return response


def _operation(spec: RouteSpec, private_limit: int, admin_limit: int) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": ["private" if spec.private else "public"],
    }
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(spec.path)
    ]
    for query in spec.query:
        schema: dict[str, Any] = {"type": "string"}
        if query.format:
            schema["format"] = query.format
        params.append({"name": query.name, "in": "query", "required": False,
                       "description": query.description, "schema": schema})
    if params:
        op["parameters"] = params
    if spec.body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{spec.body}"}}},
        }
    success = spec.success
    responses: dict[str, Any] = {
        str(success.status): {
            "description": success.description,
            "content": {success.media_type: {
                "schema": {"$ref": f"#/components/schemas/{success.schema}"}}},
        }
    }
    errors = set(spec.errors)
    if spec.private:
        errors |= set(PRIVATE_ERRORS)
        op["security"] = [{"bearer": []}]
        op["x-permission"] = str(spec.permission)
        limit = admin_limit if spec.admin else private_limit
        op["x-rate-limit-per-min"] = limit
        op["description"] = (
            f"Needs the '{spec.permission}' permission "
            f"(roles: {', '.join(_roles_with(spec))}). Rate limited to {limit} calls per "
            "minute per token. Audited."
        )
    else:
        op["security"] = []
        errors.add(500)
    for status in sorted(errors):
        if spec.name == "health" and status == 503:
            responses["503"] = {
                "description": "down",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Health"}}},
            }
        else:
            responses[str(status)] = _problem(status, spec)
    op["responses"] = responses
    return op


def _roles_with(spec: RouteSpec) -> Iterable[str]:
    return [role for role, perms in ROLE_PERMISSIONS.items() if spec.permission in perms]


def openapi_document(*, private_limit: int = 60, admin_limit: int = 10,
                     routes: Iterable[RouteSpec] = ROUTES) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(
            spec, private_limit, admin_limit)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Spark control port",
            "version": "1",
            "description": (
                "Operate a running Spark runtime (CONTRACT §5). Private routes take "
                "'Authorization: Bearer TOKEN'; errors are application/problem+json "
                "(RFC 9457) with a stable 'reason'; every private call is audited."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
