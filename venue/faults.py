"""Injected faults: the current settings and their own seeded random draws.

Fault draws use a RNG of their own, so turning chaos on or off never changes the price paths or
the fills of a seeded run.  Settings start from ``[venue.chaos]`` and change through
``POST /_sim/faults`` / ``DELETE /_sim/faults``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import attrs

from spark.config.schema import VenueChaosConfig

PROBABILITIES = ("http_5xx", "unknown_status", "ws_duplicate", "ws_reorder")
ONE_SHOT = ("rate_limit_storm_s", "ban_s")
"""Applied once when posted (they start a timed condition), not kept as settings."""


class FaultError(ValueError):
    """A fault request the admin route refuses (bad name or value)."""

    reason = "bad_fault"


@attrs.define
class FaultSettings:
    http_5xx: float = 0.0
    unknown_status: float = 0.0
    ws_duplicate: float = 0.0
    ws_reorder: float = 0.0
    latency_ms: float = 0.0
    clock_skew_ms: int = 0

    @classmethod
    def from_config(cls, chaos: VenueChaosConfig) -> FaultSettings:
        return cls(
            http_5xx=chaos.http_5xx,
            unknown_status=chaos.unknown_status,
            ws_duplicate=chaos.ws_duplicate,
            ws_reorder=chaos.ws_reorder,
            latency_ms=chaos.latency_ms,
            clock_skew_ms=chaos.clock_skew_ms,
        )


class Faults:
    __slots__ = ("_rng", "settings")

    def __init__(self, seed: int, chaos: VenueChaosConfig) -> None:
        self._rng = random.Random(f"{seed}:faults")
        self.settings = FaultSettings.from_config(chaos)

    def draw(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def update(self, changes: Mapping[str, Any]) -> dict[str, float]:
        """Apply a ``POST /_sim/faults`` body; return the one-shot timed faults it asked for."""
        known = set(PROBABILITIES) | {"latency_ms", "clock_skew_ms"} | set(ONE_SHOT)
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultError(f"unknown fault(s): {', '.join(unknown)}")
        one_shot: dict[str, float] = {}
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultError(f"{name} must be a number")
            if name in PROBABILITIES and not 0 <= value <= 1:
                raise FaultError(f"{name} must be a probability between 0 and 1")
            if name in ("latency_ms", *ONE_SHOT) and value < 0:
                raise FaultError(f"{name} must be >= 0")
        for name, value in changes.items():
            if name in ONE_SHOT:
                one_shot[name] = float(value)
            elif name == "clock_skew_ms":
                self.settings.clock_skew_ms = int(value)
            else:
                setattr(self.settings, name, float(value))
        return one_shot

    def clear(self) -> None:
        self.settings = FaultSettings()

    def snapshot(self) -> dict[str, float]:
        return attrs.asdict(self.settings)
