"""The trading state: one answer to "what may be sent right now?", derived from its inputs.

Why one state: the kill switch, the circuit breaker, the drift gate and reconciliation each have
an opinion about trading. Rather than every actor combining them its own way, one owner derives a
single :class:`TradingState` (``spark_trading_state``, ``/api/public/health``) with the reasons
behind it, and publishes it as a snapshot.

* ``ACTIVE`` - new orders allowed (subject to the risk guard's limits).
* ``REDUCING`` - only orders that shrink an existing position without flipping it, and cancels.
* ``HALTED`` - cancels only.

Cancels are allowed in every state: cancelling never adds risk. What each input contributes
(the most restrictive wins; every contributing reason is listed):

======================================  ===========  =============================
input                                   state        reason
======================================  ===========  =============================
kill switch engaged                     HALTED       ``kill_switch``
breaker OPEN (not dry-run), FORCED_OPEN HALTED       ``circuit_breaker_open``
drift gate closed                       REDUCING     ``drift_gate``
reconciliation pending, mode reducing   REDUCING     ``reconciliation_pending``
reconciliation pending, mode halted     HALTED       ``reconciliation_pending``
======================================  ===========  =============================

A breaker in ``HALF_OPEN`` leaves the state ``ACTIVE``: its probe calls are rationed by
:meth:`spark.core.breaker.Breaker.allows_call` at the router. An unknown reconciliation mode is
treated as ``halted`` (fail closed).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

import attrs

from spark.core.breaker import BreakerState, blocks_orders

__all__ = [
    "REASON_CIRCUIT_BREAKER_OPEN",
    "REASON_DRIFT_GATE",
    "REASON_KILL_SWITCH",
    "REASON_RECONCILIATION_PENDING",
    "ReconciliationMode",
    "TradingState",
    "TradingStatus",
    "derive",
]

REASON_KILL_SWITCH: Final = "kill_switch"
REASON_CIRCUIT_BREAKER_OPEN: Final = "circuit_breaker_open"
REASON_DRIFT_GATE: Final = "drift_gate"
REASON_RECONCILIATION_PENDING: Final = "reconciliation_pending"

ReconciliationMode = Literal["reducing", "halted"]


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    @property
    def metric_value(self) -> int:
        """``spark_trading_state``: 0 active, 1 reducing, 2 halted."""
        return _RANK[self]

    @property
    def allows_new_orders(self) -> bool:
        return self is TradingState.ACTIVE

    @property
    def allows_reducing_orders(self) -> bool:
        return self is not TradingState.HALTED

    @property
    def allows_cancels(self) -> bool:
        return True


_RANK: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@attrs.frozen
class TradingStatus:
    """The derived state and every reason that contributed (empty when ``ACTIVE``)."""

    state: TradingState
    reasons: tuple[str, ...] = ()

    @property
    def metric_value(self) -> int:
        return self.state.metric_value


def derive(
    kill_switch: bool,
    breaker: BreakerState,
    gate_open: bool,
    reconciliation_pending: bool,
    reconciliation_mode: ReconciliationMode | str = "halted",
    *,
    breaker_dry_run: bool = False,
) -> TradingStatus:
    """Combine the inputs into one :class:`TradingStatus` (see the module table).

    ``breaker_dry_run`` says the breaker only records trips: its ``OPEN`` then does not halt.
    """
    contributions: list[tuple[TradingState, str]] = []
    if kill_switch:
        contributions.append((TradingState.HALTED, REASON_KILL_SWITCH))
    if blocks_orders(breaker, breaker_dry_run):
        contributions.append((TradingState.HALTED, REASON_CIRCUIT_BREAKER_OPEN))
    if not gate_open:
        contributions.append((TradingState.REDUCING, REASON_DRIFT_GATE))
    if reconciliation_pending:
        mode_state = (
            TradingState.REDUCING if reconciliation_mode == "reducing" else TradingState.HALTED
        )
        contributions.append((mode_state, REASON_RECONCILIATION_PENDING))
    if not contributions:
        return TradingStatus(TradingState.ACTIVE)
    state = max((s for s, _ in contributions), key=lambda s: _RANK[s])
    return TradingStatus(state, tuple(reason for _, reason in contributions))
