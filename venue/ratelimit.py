"""Binance's limits: request weight per IP per minute, orders per account per 10 s and per day,
and the IP ban (418) earned by collecting 429s.

Windows are aligned to the wall clock as Binance's are (a 1-minute window starts at :00), and
all arithmetic is on the venue's wall-clock ms passed in, so tests pin time with a FixedClock.
"""

from __future__ import annotations

from collections import deque

import attrs

from spark.venue.errors import IpBanned, TooManyOrders, TooManyRequests

MINUTE_MS = 60_000
TEN_S_MS = 10_000
DAY_MS = 86_400_000


@attrs.define
class _Window:
    start: int = -1
    count: int = 0

    def add(self, now: int, size: int, amount: int) -> int:
        start = now - now % size
        if start != self.start:
            self.start, self.count = start, 0
        self.count += amount
        return self.count

    def current(self, now: int, size: int) -> int:
        return self.count if self.start == now - now % size else 0


class RateLimiter:
    """Weights per IP, order counts per account, 429 -> 418 escalation."""

    def __init__(
        self, *, weight_limit: int, order_limit_10s: int, order_limit_1d: int,
        ban_after_429s: int, ban_ms: int,
    ) -> None:
        self.weight_limit = weight_limit
        self.order_limit_10s = order_limit_10s
        self.order_limit_1d = order_limit_1d
        self.ban_after_429s = ban_after_429s
        self.ban_ms = ban_ms
        self._weights: dict[str, _Window] = {}
        self._orders_10s: dict[str, _Window] = {}
        self._orders_1d: dict[str, _Window] = {}
        self._recent_429s: dict[str, deque[int]] = {}
        self._bans: dict[str, int] = {}
        self.storm_until = 0
        self.global_ban_until = 0

    # -- request weight ---------------------------------------------------------------------
    def used(self, key: str, now: int) -> int:
        window = self._weights.get(key)
        return window.current(now, MINUTE_MS) if window else 0

    def admit(self, key: str, weight: int, now: int) -> int:
        """Count ``weight`` for ``key`` (an IP); refuse with 418 or 429 when over the limit."""
        banned_until = max(self._bans.get(key, 0), self.global_ban_until)
        if now < banned_until:
            raise IpBanned(
                f"Way too much request weight used; IP banned until {banned_until}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                banned_until - now,
            )
        used = self._weights.setdefault(key, _Window()).add(now, MINUTE_MS, weight)
        if now < self.storm_until:
            self._note_429(key, now)
            raise TooManyRequests(self._weight_message(), self.storm_until - now)
        if used > self.weight_limit:
            self._note_429(key, now)
            raise TooManyRequests(self._weight_message(), MINUTE_MS - now % MINUTE_MS)
        return used

    def _weight_message(self) -> str:
        return (
            f"Too much request weight used; current limit is {self.weight_limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _note_429(self, key: str, now: int) -> None:
        recent = self._recent_429s.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - MINUTE_MS:
            recent.popleft()
        if len(recent) >= self.ban_after_429s:
            self._bans[key] = now + self.ban_ms
            recent.clear()

    # -- orders -----------------------------------------------------------------------------
    def order_counts(self, account: str, now: int) -> tuple[int, int]:
        w10 = self._orders_10s.get(account)
        w1d = self._orders_1d.get(account)
        return (w10.current(now, TEN_S_MS) if w10 else 0,
                w1d.current(now, DAY_MS) if w1d else 0)

    def admit_order(self, account: str, now: int) -> tuple[int, int]:
        """Count one new order; refuse with 429 ``-1015`` when a window is full."""
        count_10s, count_1d = self.order_counts(account, now)
        if count_10s >= self.order_limit_10s:
            raise TooManyOrders(
                f"Too many new orders; current limit is {self.order_limit_10s} orders per "
                "10 SECOND.", TEN_S_MS - now % TEN_S_MS)
        if count_1d >= self.order_limit_1d:
            raise TooManyOrders(
                f"Too many new orders; current limit is {self.order_limit_1d} orders per 1 DAY.",
                DAY_MS - now % DAY_MS)
        return (self._orders_10s.setdefault(account, _Window()).add(now, TEN_S_MS, 1),
                self._orders_1d.setdefault(account, _Window()).add(now, DAY_MS, 1))

    # -- faults -----------------------------------------------------------------------------
    def storm(self, seconds: float, now: int) -> None:
        self.storm_until = now + int(seconds * 1000)

    def ban_all(self, seconds: float, now: int) -> None:
        self.global_ban_until = now + int(seconds * 1000)

    def clear_faults(self) -> None:
        """End storms and bans (the admin ``DELETE /_sim/faults``); counters keep counting."""
        self.storm_until = 0
        self.global_ban_until = 0
        self._bans.clear()
        self._recent_429s.clear()
