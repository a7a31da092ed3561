"""Dropping duplicate execution reports before anything is counted, in bounded memory.

Why duplicates happen: user-data events have no sequence number and arrive more than once —
during a spot connection rotation both connections deliver the same events for a while, a
reconnect can replay, the venue itself may repeat (``ws_duplicate`` chaos), and reconciliation
(:mod:`spark.core.reconcile`) feeds synthetic fills for trades that may also arrive over the
socket. A fill counted twice corrupts positions, PnL and the drift gate, so fills must be exact.

Two keys, because fills and status changes need different guarantees:

* **Fills** (events with a trade id: spot ``TRADE``, futures ``TRADE`` / trade-bearing
  ``CALCULATED``, and reconciliation's synthetic fills from ``myTrades``) are keyed by
  ``(product, symbol, trade id)``. Binance trade ids increase per symbol, so a websocket fill and
  the ``myTrades`` row of the same trade share the key even though only the former has an
  execution id.
* **Everything else** (NEW, CANCELED, EXPIRED, ...) is keyed by
  ``(product, symbol, execution id)`` in one LRU set of ``recent_ids`` entries. Forgetting an old
  one is harmless: re-applying a status the order already has is a no-op for the order state
  machine (transitions only move forward), so only recent repeats need catching.

**Why a high-water mark alone is wrong:** trade ids increase, but *delivery* can be reordered
(``ws_reorder``, two connections racing, synthetic fills arriving after live ones), so "id <= the
highest id seen" would drop a late fill that was never seen. Instead, per ``(product, symbol)``
we keep the exact set of the ``trade_window`` **largest** trade ids seen, and a ``floor``: the
largest id ever evicted from that set (or a seeded lower bound). For a trade id ``t``:

* ``t`` in the set → :attr:`Verdict.DUPLICATE` (always right: we did see it);
* ``t`` above the floor and not in the set → :attr:`Verdict.NEW` (always right: every seen id above
  the floor is in the set);
* ``t`` at or below the floor and not in the set → :attr:`Verdict.STALE`: memory cannot tell. This
  happens only when at least ``trade_window`` larger trade ids of the same symbol have been seen
  since (or ``t`` is below what the store was seeded with). The caller must ask the database (whose
  unique key on the trade is the final guard) rather than guess; with the default window of 10,000
  of *our own* fills per symbol, a delivery reordered that far does not occur in practice.

So NEW and DUPLICATE are never wrong, whatever the order of arrival; that is the property the
tests check. Memory: at most ``trade_window`` ids per (product, symbol) — symbols are bounded by
the risk whitelist — plus ``recent_ids`` execution ids in total.

Seeding at startup from the database: :meth:`Deduplicator.seed_trade_ids` with the last N trade
ids stored per symbol (anything older then reads STALE → "check the store"), or
:meth:`Deduplicator.seed_high_water` with just the largest stored id;
:meth:`Deduplicator.seed_execution_ids` with the last execution ids.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Iterable

from spark.core.userdata_errors import DedupSeedError
from spark.exchange.events import ExecutionEvent

__all__ = ["Deduplicator", "Verdict"]

_Key = tuple[str, str]  # (product, symbol)


class Verdict(enum.Enum):
    NEW = "new"  # first sighting: apply and count it
    DUPLICATE = "duplicate"  # seen before: drop it
    STALE = "stale"  # older than the exact window: consult the store


class _TradeWindow:
    """The exact set of the largest ``capacity`` trade ids seen, plus the floor below them."""

    __slots__ = ("capacity", "floor", "heap", "seen")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seen: set[int] = set()
        self.heap: list[int] = []  # min-heap over `seen`: the next id to evict
        self.floor = -1  # every id <= floor not in `seen` is unknown

    def classify(self, trade_id: int) -> Verdict:
        if trade_id in self.seen:
            return Verdict.DUPLICATE
        if trade_id <= self.floor:
            return Verdict.STALE
        return Verdict.NEW

    def add(self, trade_id: int) -> None:
        self.seen.add(trade_id)
        heap = self.heap
        if len(heap) < self.capacity:
            heapq.heappush(heap, trade_id)
            return
        # Full: push the new id and evict the smallest in one step.
        evicted = heapq.heappushpop(heap, trade_id)
        self.seen.discard(evicted)
        if evicted > self.floor:
            self.floor = evicted


class Deduplicator:
    """Exact-within-a-window duplicate filter for execution events (see module docstring)."""

    def __init__(self, *, trade_window: int = 10_000, recent_ids: int = 100_000) -> None:
        if trade_window < 1 or recent_ids < 1:
            raise DedupSeedError("trade_window and recent_ids must be >= 1")
        self._window = trade_window
        self._recent_cap = recent_ids
        self._trades: dict[_Key, _TradeWindow] = {}
        self._recent: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self.duplicates = 0
        self.stale = 0

    # -- admission -----------------------------------------------------------------------------

    def admit(self, event: ExecutionEvent) -> Verdict:
        """Classify ``event`` and remember it if NEW.

        Fills go by trade id, everything else by execution id (see module docstring).
        """
        if event.trade_id is not None:
            return self.admit_trade(event.product, event.symbol, event.trade_id)
        return self.admit_execution_id(event.product, event.symbol, event.execution_id)

    def admit_trade(self, product: str, symbol: str, trade_id: int) -> Verdict:
        """Classify a fill by trade id (also for ``myTrades`` rows) and remember it if NEW."""
        window = self._window_for(product, symbol)
        verdict = window.classify(trade_id)
        if verdict is Verdict.NEW:
            window.add(trade_id)
        else:
            self._count(verdict)
        return verdict

    def admit_execution_id(self, product: str, symbol: str, execution_id: str) -> Verdict:
        """Classify a non-fill event by execution id and remember it (LRU) if NEW."""
        key = (product, symbol, execution_id)
        if key in self._recent:
            self._recent.move_to_end(key)
            self.duplicates += 1
            return Verdict.DUPLICATE
        self._remember(key)
        return Verdict.NEW

    def peek(self, event: ExecutionEvent) -> Verdict:
        """Classify without remembering."""
        if event.trade_id is not None:
            window = self._trades.get((event.product, event.symbol))
            return Verdict.NEW if window is None else window.classify(event.trade_id)
        key = (event.product, event.symbol, event.execution_id)
        return Verdict.DUPLICATE if key in self._recent else Verdict.NEW

    # -- seeding -------------------------------------------------------------------------------

    def seed_trade_ids(self, product: str, symbol: str, trade_ids: Iterable[int]) -> None:
        """Seed with the most recent trade ids the store holds for ``symbol``.

        Ids below the smallest seeded one become STALE (the store may have them), ids above
        NEW unless seeded. Seeding more than ``trade_window`` ids keeps the largest.
        """
        ids = sorted(set(trade_ids))
        if not ids:
            return
        if ids[0] < 0:
            raise DedupSeedError("trade ids are >= 0")
        window = self._window_for(product, symbol)
        window.floor = max(window.floor, ids[0] - 1)
        for tid in ids:
            if tid not in window.seen and tid > window.floor:
                window.add(tid)

    def seed_high_water(self, product: str, symbol: str, max_trade_id: int) -> None:
        """Seed with only the largest stored trade id: every id up to it reads STALE."""
        if max_trade_id < 0:
            raise DedupSeedError("trade ids are >= 0")
        window = self._window_for(product, symbol)
        window.floor = max(window.floor, max_trade_id)
        for tid in [t for t in window.seen if t <= window.floor]:
            window.seen.discard(tid)
        window.heap = list(window.seen)
        heapq.heapify(window.heap)

    def seed_execution_ids(self, product: str, symbol: str, execution_ids: Iterable[str]) -> None:
        """Seed the LRU with recent non-fill execution ids (oldest first)."""
        for eid in execution_ids:
            self._remember((product, symbol, eid))

    # -- introspection -------------------------------------------------------------------------

    def floor(self, product: str, symbol: str) -> int:
        """Trade ids at or below this are STALE unless remembered (-1: none)."""
        window = self._trades.get((product, symbol))
        return -1 if window is None else window.floor

    @property
    def size(self) -> int:
        """Ids held in memory (bounded: see module docstring)."""
        return sum(len(w.seen) for w in self._trades.values()) + len(self._recent)

    # -- internals -----------------------------------------------------------------------------

    def _window_for(self, product: str, symbol: str) -> _TradeWindow:
        key = (product, symbol)
        window = self._trades.get(key)
        if window is None:
            window = self._trades[key] = _TradeWindow(self._window)
        return window

    def _remember(self, key: tuple[str, str, str]) -> None:
        self._recent[key] = None
        self._recent.move_to_end(key)
        while len(self._recent) > self._recent_cap:
            self._recent.popitem(last=False)

    def _count(self, verdict: Verdict) -> None:
        if verdict is Verdict.DUPLICATE:
            self.duplicates += 1
        else:
            self.stale += 1
