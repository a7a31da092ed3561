"""Reference prices from ``bookTicker``: one latest-wins slot per symbol, and a staleness rule.

Why conflate: a market stream delivers many best-bid/ask updates per second; the risk guard and
the drift gate only ever want the *current* one. Queueing every update towards them would let a
slow consumer fall behind and act on old prices (or force dropping from a bounded queue). A slot
per symbol that each update overwrites keeps memory constant, never blocks the reader, and the
consumer reads the newest price whenever it looks. :meth:`ReferencePrices.drain_changed` hands
over only the slots that changed since the last drain, for a consumer that wants pushes.

The reference price is the **mid**, ``(bid + ask) / 2`` as ``Decimal``. A quote with an empty
side (price 0) or a crossed book (bid > ask) has *no* mid: it still replaces the slot (latest
wins — the newest information is "no usable price"), so an older valid price is not used in its
place.

**Stale = no price (fail closed).** A slot older than ``stale_after_s`` — measured on the
monotonic clock from when it was *received*, since spot ``bookTicker`` carries no event time and
host and venue clocks differ — reads as no price, and the risk guard then rejects orders that need
one (``no_reference_price``). When the venue sends an event time (futures) and the caller passes
``now_ms`` in venue time, an event older than the same limit is stale too (it was relayed late).

**Ordering.** ``bookTicker`` update ids increase per symbol; an update with an id not above the
slot's is a duplicate (two connections during a rotation) or reordered, and is dropped — unless
the slot is already stale, in which case the newer arrival wins (a venue restart can reset the
ids, and a stale slot is worth nothing anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import attrs

from spark.exchange.market import BookTicker

__all__ = ["Quote", "ReferencePrices"]

_TWO: Final = Decimal(2)


@attrs.frozen
class Quote:
    """The latest best bid/ask of one symbol as received."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal | None  # None: empty side or crossed book
    update_id: int
    event_time_ms: int | None  # the exchange's E (futures); spot sends none
    received_at: float  # monotonic seconds

    @property
    def valid(self) -> bool:
        return self.mid is not None


def _mid(bid: Decimal, ask: Decimal) -> Decimal | None:
    if not (bid.is_finite() and ask.is_finite()) or bid <= 0 or ask <= 0 or bid > ask:
        return None
    return (bid + ask) / _TWO


class ReferencePrices:
    """Per-symbol latest-wins slots with a staleness rule (see module docstring)."""

    def __init__(self, stale_after_s: float = 10.0) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        self._stale_after = stale_after_s
        self._slots: dict[str, Quote] = {}
        self._changed: dict[str, Quote] = {}
        self.updates = 0
        self.dropped = 0
        self.invalid = 0

    @property
    def stale_after_s(self) -> float:
        return self._stale_after

    def update(self, ticker: BookTicker, received_at: float) -> bool:
        """Offer a ``bookTicker``; True when it replaced the slot."""
        current = self._slots.get(ticker.symbol)
        if (
            current is not None
            and ticker.update_id <= current.update_id
            and not self._is_stale(current, received_at, None)
        ):
            self.dropped += 1
            return False
        mid = _mid(ticker.bid_price, ticker.ask_price)
        if mid is None:
            self.invalid += 1
        quote = Quote(ticker.symbol, ticker.bid_price, ticker.ask_price, mid, ticker.update_id,
                      ticker.event_time, received_at)
        self._slots[ticker.symbol] = quote
        self._changed[ticker.symbol] = quote
        self.updates += 1
        return True

    def latest(self, symbol: str) -> Quote | None:
        """The slot as it is, fresh or not (for diagnostics)."""
        return self._slots.get(symbol)

    def quote(self, symbol: str, now: float, *, now_ms: int | None = None) -> Quote | None:
        """The slot if it is valid and fresh at ``now`` (monotonic s; ``now_ms`` venue epoch ms)."""
        q = self._slots.get(symbol)
        if q is None or q.mid is None or self._is_stale(q, now, now_ms):
            return None
        return q

    def price(self, symbol: str, now: float, *, now_ms: int | None = None) -> Decimal | None:
        """The reference price (mid), or None: no quote, unusable quote, or stale."""
        q = self.quote(symbol, now, now_ms=now_ms)
        return None if q is None else q.mid

    def prices(
        self, now: float, symbols: Iterable[str] | None = None, *, now_ms: int | None = None
    ) -> dict[str, Decimal | None]:
        """Fresh prices for ``symbols`` (default: every symbol seen), None where there is none —
        the shape of the risk guard's ``reference_prices``."""
        names = self._slots.keys() if symbols is None else symbols
        return {s: self.price(s, now, now_ms=now_ms) for s in names}

    def age(self, symbol: str, now: float) -> float | None:
        q = self._slots.get(symbol)
        return None if q is None else max(0.0, now - q.received_at)

    def drain_changed(self) -> tuple[Quote, ...]:
        """Slots replaced since the last drain (each symbol once, its newest quote)."""
        changed = tuple(self._changed.values())
        self._changed.clear()
        return changed

    def _is_stale(self, q: Quote, now: float, now_ms: int | None) -> bool:
        if now - q.received_at > self._stale_after:
            return True
        return (
            now_ms is not None
            and q.event_time_ms is not None
            and now_ms - q.event_time_ms > self._stale_after * 1000
        )
