"""Messages that cross between trading actors, and the snapshots actors publish.

Every message is a frozen attrs class; channels carry them in batches where the rate is high
(user-data events), one by one elsewhere.  Times named ``*_at`` are ``trio.current_time()``
(monotonic, for latency metrics); times named ``*_ms`` are wall-clock epoch milliseconds.

Who sends what (see docs/ARCHITECTURE.md, "The trading tree"):

- user-data reader → router: :class:`UserEvents` batches, :class:`StreamUp` / :class:`StreamDown`
  (the router reconciles with the venue on every ``StreamUp`` with ``gap=True``);
- market reader → anyone: ``Published[PriceBoard]`` (latest reference price per symbol);
- router → breaker: a synchronous ``allows_call`` before and ``record`` after every order
  call (see ``spark.actors.breaker``);
- breaker → anyone: ``Published[BreakerView]``;
- router → drift gate: :class:`ShadowOrder` when a live order is sent, :class:`LiveFill` per fill;
- drift gate → anyone: ``Published[GateView]``;
- everything persistent → writer: ``spark.storage.records`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TypeAlias

import attrs

from spark.core.conflate import Quote
from spark.exchange.events import (
    AccountPosition,
    BalanceUpdate,
    ExecutionEvent,
    FuturesAccountUpdate,
)

UserEvent: TypeAlias = ExecutionEvent | AccountPosition | BalanceUpdate | FuturesAccountUpdate


@attrs.frozen
class UserEvents:
    """User-data events in arrival order, as decoded from one connection's frames.

    ``received_at`` is when the first frame of the batch was read off the socket; it is the
    ingress time the writer measures ``spark_event_to_db_seconds`` from.
    """

    events: tuple[UserEvent, ...]
    received_at: float
    connection: str


@attrs.frozen
class StreamUp:
    """A user-data subscription is live.  ``gap`` is False only for a gap-free rotation (the old
    connection was still subscribed), when no reconciliation is needed."""

    connection: str
    gap: bool
    at: float


@attrs.frozen
class StreamDown:
    connection: str
    reason: str
    at: float


@attrs.frozen
class PriceBoard:
    """Latest quote per symbol (``spark.core.conflate``: latest wins).  Readers apply the
    staleness rule against ``received_at``; a stale, invalid or missing quote means *no reference
    price* (fail closed)."""

    quotes: Mapping[str, Quote] = attrs.field(factory=dict)
    connected: bool = False


@attrs.frozen
class ShadowOrder:
    """A live order was sent: the drift gate books its paper twin at the reference price."""

    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    reference_price: Decimal
    at_ms: int


@attrs.frozen
class LiveFill:
    client_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    at_ms: int
    received_at: float
    done: bool = False  # the order reached a final state with this fill


# --- additions for the user-data path (venue link, drift gate) ---------------------------------

UserStreamItem: TypeAlias = UserEvents | StreamUp | StreamDown
"""What the user-data readers send to the router, in order, on one bounded channel."""


@attrs.frozen
class ShadowDone:
    """The order ended without a further fill (canceled, expired, rejected): the drift gate
    forgets its paper shadow.  Optional — shadows are also bounded by an LRU."""

    client_order_id: str


@attrs.frozen
class ForceGate:
    """Operator: force the drift gate open (``open=True``, also unlatches) or closed (latched:
    healthy fills do not reopen it).  Audited with ``operator`` and ``reason``."""

    open: bool
    operator: str
    reason: str = ""


DriftInput: TypeAlias = ShadowOrder | LiveFill | ShadowDone | ForceGate
"""What the drift gate's inbox carries."""


@attrs.frozen
class GateView:
    """The drift gate's published state (``Published[GateView]``).

    ``state`` is ``"open"`` or ``"closed"``; ``forced`` is True while an operator's close is
    latched (only an operator reopens it).  ``last_drift_bps`` is the last observation's drift
    (positive = worse than paper), ``pnl_delta`` the paper - live PnL since start (positive =
    live did worse), ``window_pnl_delta`` the same since the last transition.
    """

    state: str = "open"
    forced: bool = False
    last_drift_bps: Decimal | None = None
    pnl_delta: Decimal = Decimal(0)
    window_pnl_delta: Decimal = Decimal(0)
    close_total: int = 0
    cause: str | None = None
    changed_at_ms: int | None = None
    enabled: bool = True

    @property
    def is_open(self) -> bool:
        return self.state == "open"
