"""Control-port errors: named exceptions with a stable ``reason`` and an HTTP status.

The runtime's :class:`~spark.runtime.control.backend.ControlBackend` raises these; the HTTP
layer turns each into an ``application/problem+json`` response (RFC 9457) whose ``status`` is
the class's and whose ``reason`` member is the stable code.  Exception texts must not carry
secrets (they become the problem's ``detail``).
"""

from __future__ import annotations

__all__ = [
    "BodyTooLarge",
    "Conflict",
    "ControlError",
    "ControlPortRefused",
    "InvalidInput",
    "NotBuilt",
    "NotFound",
    "Rejected",
    "Unavailable",
]


class ControlError(Exception):
    """Base of every error the control port turns into a problem response."""

    status: int = 500
    reason: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extra(self) -> dict[str, object]:
        """Extension members for the problem document (beyond type/title/status/detail)."""
        return {}


class InvalidInput(ControlError):
    """400: a request field is missing, of the wrong type or out of range."""

    status = 400
    reason = "invalid_input"
    title = "Invalid input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field

    def extra(self) -> dict[str, object]:
        return {"field": self.field}


class NotFound(ControlError):
    """404: the named order, reconciliation item, … does not exist."""

    status = 404
    reason = "not_found"
    title = "Not found"


class Conflict(ControlError):
    """409: the target exists but is in a state that does not allow the action."""

    status = 409
    reason = "conflict"
    title = "Conflict"


class Rejected(ControlError):
    """422: the runtime refused the action for a stable business reason (``kill_switch``,
    ``risk_max_notional``, …); ``reason`` is that code."""

    status = 422
    title = "Rejected"

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason_code


class NotBuilt(ControlError):
    """501: the route exists but its feature lands in a later issue."""

    status = 501
    reason = "not_built"
    title = "Not implemented yet"

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} is not available in this build")
        self.feature = feature

    def extra(self) -> dict[str, object]:
        return {"feature": self.feature}


class Unavailable(ControlError):
    """503: the runtime cannot serve the request right now (starting, stopping, a dependency
    is down)."""

    status = 503
    reason = "unavailable"
    title = "Service unavailable"


class BodyTooLarge(ControlError):
    """413: the request body is larger than ``[control] max_body_bytes``.  Raised by the HTTP
    layer while it reads the body, not by backends."""

    status = 413
    reason = "body_too_large"
    title = "Content too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit

    def extra(self) -> dict[str, object]:
        return {"max_body_bytes": self.limit}


class ControlPortRefused(Exception):
    """The control port would be reachable from the network without authentication.

    Raised by :func:`~spark.runtime.control.build_app` and :func:`~spark.runtime.control.serve`;
    the runtime turns it into exit code 2 (a configuration error).
    """

    reason = "control_port_refused"
