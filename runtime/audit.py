"""The audit trail: who did what through the control port or a signal, and with what result.

Entries go to a sink: the database writer once it runs (see ``storage``), and always to a bounded
in-memory ring that ``GET /api/private/audit`` and evidence packages read.  Entries never carry a
token or secret: the actor is a role plus a token fingerprint, or ``signal:SIGUSR1``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from spark.core.clock import SYSTEM_CLOCK, WallClock

log = logging.getLogger("spark.audit")


@attrs.frozen
class AuditEvent:
    time_ms: int
    actor: str
    action: str
    target: str
    result: str
    detail: Mapping[str, Any] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "time_ms": self.time_ms,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "detail": dict(self.detail),
        }


Sink = Callable[[AuditEvent], None]


class AuditTrail:
    """Records audit events into a bounded ring and forwards them to the attached sinks."""

    def __init__(self, clock: WallClock = SYSTEM_CLOCK, capacity: int = 10_000) -> None:
        self._clock = clock
        self._ring: collections.deque[AuditEvent] = collections.deque(maxlen=capacity)
        self._sinks: list[Sink] = []

    def attach(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        result: str,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        event = AuditEvent(self._clock.now_ms(), actor, action, target, result, dict(detail or {}))
        self._ring.append(event)
        log.info("audit %s %s %s -> %s", actor, action, target, result)
        for sink in self._sinks:
            sink(event)
        return event

    def since(self, time_ms: int = 0) -> list[AuditEvent]:
        return [e for e in self._ring if e.time_ms >= time_ms]
