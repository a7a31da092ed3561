"""The drift gate: does live execution still look like the paper model? Without I/O or a clock.

Why: a strategy is judged on paper (simulated) fills; if live fills drift away from what the
paper model assumed — slippage, a stale reference price, a venue in trouble, a bug in order
sizing — live trading is no longer the thing that was validated. The gate notices and closes;
a closed gate puts trading into ``REDUCING`` (:mod:`spark.core.trading_state`).

How:

* **Paper shadow.** When a live order is sent, :meth:`DriftGate.on_order_sent` fixes its paper
  fill: the reference price at send time moved against us by ``paper_slippage_bps`` (a taker pays
  up: BUY at ``ref x (1 + bps/1e4)``, SELL at ``ref x (1 - bps/1e4)``).
* **Observation per live fill.** :meth:`DriftGate.on_fill` measures

  - ``drift_bps`` = (live average fill price of the order - paper price) / paper price x 1e4,
    times +1 for BUY and -1 for SELL: **positive = worse than paper** (paid more, received less);
  - the fill's **PnL delta** = paper PnL - live PnL of that fill, in quote currency:
    ``(live - paper) x qty`` for BUY, ``(paper - live) x qty`` for SELL — i.e. the issue's
    ``sum (paper - live) x qty x side_sign`` with ``side_sign`` the cash-flow sign (-1 BUY,
    +1 SELL). Positive = live did worse. Summed since start for
    ``spark_paper_live_pnl_delta``, and per *window* (since the gate's last transition) for the
    threshold.

* **Thresholds.** An observation is *healthy* when ``drift_bps <= max_drift_bps`` and the window's
  PnL delta ``<= max_pnl_delta``. An unhealthy observation closes an open gate at once (cause
  ``drift`` or ``pnl_delta``). Being *better* than paper does not close it (it costs nothing);
  ``two_sided=True`` makes both limits apply to the absolute value.
* **Hysteresis.** A closed gate reopens only after ``recovery_observations`` *consecutive* healthy
  observations after the close (live fills still arrive while closed: orders in flight and the
  reducing orders ``REDUCING`` allows), or by an operator. The window PnL restarts at every
  transition so one bad episode does not keep the gate shut forever.
* **Operator.** :meth:`DriftGate.force_close` closes and *latches* the gate: healthy fills do not
  reopen what an operator closed. :meth:`DriftGate.force_open` opens and unlatches. Both always
  return a transition record (even when the state does not change) so the audit trail has them.
* ``enabled = false`` (``[drift_gate]``): no observations; the gate stays open unless an operator
  closes it.

All amounts are ``Decimal``; threshold comparisons are multiplied out (no division) in a
100-digit context, so a value exactly at a limit is judged exactly. Each transition is returned
as a :class:`GateTransition` for the audit trail; :meth:`DriftGate.metrics` gives the numbers for
``spark_drift_price_bps``, ``spark_paper_live_pnl_delta``, ``spark_drift_gate_open`` and
``spark_drift_gate_close_total``. ``[drift_gate]`` is reloadable: :meth:`DriftGate.reconfigure`.
"""

from __future__ import annotations

import decimal
import enum
from collections import OrderedDict
from decimal import Decimal
from typing import Final

import attrs

from spark.config.schema import DriftGateConfig
from spark.core.userdata_errors import DriftInputError
from spark.exchange.events import ExecutionEvent

__all__ = [
    "DriftGate",
    "DriftMetrics",
    "GateCause",
    "GateState",
    "GateTransition",
    "GateUpdate",
    "Observation",
    "PaperFill",
    "paper_price",
]

_BPS: Final = Decimal(10_000)
_ZERO: Final = Decimal(0)
_CTX: Final = decimal.Context(prec=100)


class GateState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class GateCause(enum.StrEnum):
    DRIFT = "drift"
    PNL_DELTA = "pnl_delta"
    RECOVERED = "recovered"
    OPERATOR_OPEN = "operator_open"
    OPERATOR_CLOSE = "operator_close"
    DISABLED = "disabled"


@attrs.frozen
class PaperFill:
    """The paper shadow of one live order, fixed when it was sent."""

    client_order_id: str
    symbol: str
    side: str
    reference_price: Decimal
    paper_price: Decimal
    sent_at_ms: int
    quantity: Decimal | None = None


@attrs.frozen
class Observation:
    """One live fill compared with its order's paper shadow."""

    client_order_id: str
    symbol: str
    side: str
    fill_price: Decimal
    fill_qty: Decimal
    live_avg_price: Decimal
    paper_price: Decimal
    drift_bps: Decimal
    pnl_delta: Decimal  # this fill's paper - live PnL (positive: live worse)
    window_pnl_delta: Decimal  # since the gate's last transition, this fill included
    healthy: bool
    at_ms: int


@attrs.frozen
class GateTransition:
    """A gate decision for the audit trail (``previous == state`` for a no-op operator action)."""

    at_ms: int
    previous: GateState
    state: GateState
    cause: GateCause
    detail: str
    observation: Observation | None = None
    operator: str | None = None


@attrs.frozen
class GateUpdate:
    """What one live fill did: its observation (None when not measured) and any transition."""

    observation: Observation | None = None
    transition: GateTransition | None = None


@attrs.frozen
class DriftMetrics:
    price_bps: Decimal | None  # spark_drift_price_bps (the last observation)
    pnl_delta: Decimal  # spark_paper_live_pnl_delta (since start)
    gate_open: int  # spark_drift_gate_open
    close_total: int  # spark_drift_gate_close_total


def _side_sign(side: str) -> int:
    if side == "BUY":
        return 1
    if side == "SELL":
        return -1
    raise DriftInputError(f"side must be BUY or SELL, got {side!r}")


def _positive(value: Decimal, what: str) -> None:
    if not (value.is_finite() and value > 0):
        raise DriftInputError(f"{what} must be a finite Decimal > 0, got {value!r}")


def paper_price(side: str, reference_price: Decimal, slippage_bps: Decimal) -> Decimal:
    """The paper fill price: the reference moved ``slippage_bps`` against the taker."""
    _positive(reference_price, "reference price")
    sign = _side_sign(side)
    with decimal.localcontext(_CTX):
        price = reference_price * (_BPS + sign * slippage_bps) / _BPS
    _positive(price, "paper price")
    return price


@attrs.define
class _Shadow:
    paper: PaperFill
    live_qty: Decimal = _ZERO
    live_notional: Decimal = _ZERO


class DriftGate:
    """Paper shadows, drift observations and the gate with hysteresis (see module docstring)."""

    def __init__(
        self,
        config: DriftGateConfig | None = None,
        *,
        two_sided: bool = False,
        max_shadows: int = 10_000,
    ) -> None:
        if max_shadows < 1:
            raise ValueError("max_shadows must be >= 1")
        self._config = config if config is not None else DriftGateConfig()
        self._two_sided = two_sided
        self._max_shadows = max_shadows
        self._shadows: OrderedDict[str, _Shadow] = OrderedDict()
        self._state = GateState.OPEN
        self._latched = False
        self._streak = 0
        self._window_pnl = _ZERO
        self._total_pnl = _ZERO
        self._last_bps: Decimal | None = None
        self.close_total = 0
        self.unshadowed_fills = 0

    # -- queries -------------------------------------------------------------------------------

    @property
    def state(self) -> GateState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is GateState.OPEN

    @property
    def latched(self) -> bool:
        """Closed by an operator: only an operator reopens it."""
        return self._latched

    @property
    def healthy_streak(self) -> int:
        """Consecutive healthy observations since the last transition or unhealthy one."""
        return self._streak

    @property
    def pnl_delta(self) -> Decimal:
        return self._total_pnl

    @property
    def window_pnl_delta(self) -> Decimal:
        return self._window_pnl

    @property
    def last_drift_bps(self) -> Decimal | None:
        return self._last_bps

    def shadow(self, client_order_id: str) -> PaperFill | None:
        s = self._shadows.get(client_order_id)
        return None if s is None else s.paper

    def metrics(self) -> DriftMetrics:
        return DriftMetrics(self._last_bps, self._total_pnl, int(self.is_open), self.close_total)

    # -- inputs --------------------------------------------------------------------------------

    def reconfigure(self, config: DriftGateConfig, at_ms: int) -> GateTransition | None:
        """Apply a reloaded ``[drift_gate]``; new limits judge the next observation. Disabling
        opens a gate the thresholds closed (nothing could reopen it otherwise)."""
        self._config = config
        if not config.enabled and self._state is GateState.CLOSED and not self._latched:
            return self._transition(GateState.OPEN, GateCause.DISABLED, at_ms,
                                    "drift gate disabled by configuration")
        return None

    def on_order_sent(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        reference_price: Decimal,
        at_ms: int,
        quantity: Decimal | None = None,
    ) -> PaperFill:
        """Fix the paper shadow of a live order at send time. Sending the same client id again
        (a resend after "absent at venue") replaces the shadow only if no fill arrived yet."""
        price = paper_price(side, reference_price, self._config.paper_slippage_bps)
        paper = PaperFill(client_order_id, symbol, side, reference_price, price, at_ms, quantity)
        existing = self._shadows.get(client_order_id)
        if existing is not None and existing.live_qty > 0:
            return existing.paper
        self._shadows[client_order_id] = _Shadow(paper)
        self._shadows.move_to_end(client_order_id)
        while len(self._shadows) > self._max_shadows:
            self._shadows.popitem(last=False)
        return paper

    def on_order_done(self, client_order_id: str) -> None:
        """The order is final: forget its shadow (memory stays bounded by open orders)."""
        self._shadows.pop(client_order_id, None)

    def on_execution(self, event: ExecutionEvent) -> GateUpdate:
        """Convenience for the router: a fill event (others are ignored) at its trade time."""
        if not event.is_trade:
            return GateUpdate()
        return self.on_fill(event.client_order_id, event.last_price, event.last_qty,
                            event.transaction_time)

    def on_fill(self, client_order_id: str, price: Decimal, qty: Decimal, at_ms: int) -> GateUpdate:
        """Observe one (deduplicated) live fill; close or reopen the gate as the rules say."""
        _positive(price, "fill price")
        _positive(qty, "fill quantity")
        if not self._config.enabled:
            return GateUpdate()
        shadow = self._shadows.get(client_order_id)
        if shadow is None:
            self.unshadowed_fills += 1  # sent before a restart, or not sent by us
            return GateUpdate()
        paper = shadow.paper
        sign = _side_sign(paper.side)
        cfg = self._config
        with decimal.localcontext(_CTX):
            shadow.live_qty += qty
            shadow.live_notional += price * qty
            avg = shadow.live_notional / shadow.live_qty
            # drift_bps <= max  <=>  sign*(notional - paper*qty)*1e4 <= max*paper*qty
            excess = sign * (shadow.live_notional - paper.paper_price * shadow.live_qty) * _BPS
            limit = cfg.max_drift_bps * paper.paper_price * shadow.live_qty
            drift_bps = excess / (paper.paper_price * shadow.live_qty)
            fill_delta = sign * (price - paper.paper_price) * qty
            self._total_pnl += fill_delta
            self._window_pnl += fill_delta
            if self._two_sided:
                drift_ok = abs(excess) <= limit
                pnl_ok = abs(self._window_pnl) <= cfg.max_pnl_delta
            else:
                drift_ok = excess <= limit
                pnl_ok = self._window_pnl <= cfg.max_pnl_delta
        healthy = drift_ok and pnl_ok
        self._last_bps = drift_bps
        obs = Observation(client_order_id, paper.symbol, paper.side, price, qty, avg,
                          paper.paper_price, drift_bps, fill_delta, self._window_pnl, healthy,
                          at_ms)
        if paper.quantity is not None and shadow.live_qty >= paper.quantity:
            self._shadows.pop(client_order_id, None)
        if not healthy:
            self._streak = 0
            if self._state is GateState.OPEN:
                cause = GateCause.DRIFT if not drift_ok else GateCause.PNL_DELTA
                detail = (f"drift {drift_bps:.4f} bps > {cfg.max_drift_bps}" if not drift_ok
                          else f"PnL delta {obs.window_pnl_delta} > {cfg.max_pnl_delta}")
                return GateUpdate(obs, self._transition(GateState.CLOSED, cause, at_ms, detail,
                                                        obs))
            return GateUpdate(obs)
        self._streak += 1
        if (self._state is GateState.CLOSED and not self._latched
                and self._streak >= cfg.recovery_observations):
            return GateUpdate(obs, self._transition(
                GateState.OPEN, GateCause.RECOVERED, at_ms,
                f"{self._streak} consecutive healthy observations", obs))
        return GateUpdate(obs)

    def force_open(self, at_ms: int, operator: str, reason: str = "") -> GateTransition:
        """Operator: open now (and unlatch), whatever the observations say."""
        self._latched = False
        return self._transition(GateState.OPEN, GateCause.OPERATOR_OPEN, at_ms,
                                reason or "opened by operator", operator=operator)

    def force_close(self, at_ms: int, operator: str, reason: str = "") -> GateTransition:
        """Operator: close now and latch: only :meth:`force_open` reopens."""
        self._latched = True
        return self._transition(GateState.CLOSED, GateCause.OPERATOR_CLOSE, at_ms,
                                reason or "closed by operator", operator=operator)

    # -- internals -----------------------------------------------------------------------------

    def _transition(
        self,
        state: GateState,
        cause: GateCause,
        at_ms: int,
        detail: str,
        observation: Observation | None = None,
        operator: str | None = None,
    ) -> GateTransition:
        previous = self._state
        if previous is GateState.OPEN and state is GateState.CLOSED:
            self.close_total += 1
        self._state = state
        self._streak = 0
        self._window_pnl = _ZERO
        return GateTransition(at_ms, previous, state, cause, detail, observation, operator)
