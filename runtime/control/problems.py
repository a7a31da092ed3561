"""RFC 9457 problem documents and the JSON rendering shared by every route."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from spark.runtime.control.errors import ControlError

__all__ = [
    "JSON",
    "PROBLEM_JSON",
    "dumps",
    "json_response",
    "problem",
    "problem_from_error",
    "problem_type",
]

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def dumps(data: object) -> bytes:
    """orjson with Decimals as strings (exact), datetimes as RFC 3339."""
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: object, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, headers=headers, media_type=JSON)


def problem_type(reason: str) -> str:
    """The problem ``type`` URI of a reason code."""
    return f"urn:spark:problem:{reason}"


def problem(status: int, reason: str, detail: str, *, title: str | None = None,
            extra: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(reason),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return Response(dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_from_error(error: ControlError) -> Response:
    return problem(error.status, error.reason, error.detail, title=error.title,
                   extra=error.extra())
