"""Sans-IO request-weight and order-count budget.

Binance counts per IP in fixed windows aligned to the clock (the minute starts at :00) and
reports the running totals on every response (``X-MBX-USED-WEIGHT-1M``,
``X-MBX-ORDER-COUNT-10S`` …). Waiting for a 429 before slowing down is what gets IPs banned, so
the budget answers one question before each request: *how long must I wait so this request does
not cross the limit?*

Two limits are checked per counter:

* the IP-wide estimate (last reported total in this window + weight of requests still in
  flight, which the report may not include yet) must stay within ``ceiling * limit``;
* this process's own use in the window (counted locally) must stay within ``share * limit``,
  so several runtimes behind one IP can split the budget (each gets ``share = 1/N``).

Both errors are on the safe side: in-flight weight may be counted twice, never zero times.

429 sets a block until ``Retry-After``; 418 sets a ban until ``Retry-After``. Both are exposed
(:meth:`blocked_until`, :meth:`banned_until`) so the runtime can tell the circuit breaker.

Time is passed in as seconds on the *server's* wall clock (epoch), because window boundaries
are the server's; the caller supplies ``local time + server offset``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import attrs

from spark.exchange.models import RateLimitRule

__all__ = ["RateLimitBudget", "Ticket", "interval_seconds"]

_UNIT_SECONDS = {"S": 1, "M": 60, "H": 3600, "D": 86400}
WEIGHT = "weight"
ORDERS = "orders"


def interval_seconds(key: str) -> int:
    """``"1M"`` → 60, ``"10S"`` → 10, ``"1D"`` → 86400 (Binance header suffixes)."""
    key = key.upper()
    num, unit = key[:-1], key[-1:]
    if unit not in _UNIT_SECONDS or not num.isdigit() or int(num) <= 0:
        raise ValueError(f"bad rate-limit interval {key!r}")
    return int(num) * _UNIT_SECONDS[unit]


@attrs.define(slots=True)
class _Counter:
    kind: str
    key: str
    limit: int
    window_s: int
    window: int = -1
    reported: int = 0  # highest total the venue reported in ``window``
    own: int = 0  # weight this process sent in ``window``
    pending: int = 0  # sent, no response yet (any window)

    def roll(self, now: float) -> None:
        w = math.floor(now / self.window_s)
        if w != self.window:
            self.window = w
            self.reported = 0
            self.own = 0

    def window_end(self) -> float:
        return float((self.window + 1) * self.window_s)


@attrs.frozen(slots=True)
class Ticket:
    """What one admitted request took from the budget; hand it back on completion."""

    weight: int
    is_order: bool


class RateLimitBudget:
    """Local estimate of the IP's used weight and order counts; see module docstring."""

    def __init__(
        self,
        *,
        weight_limits: Mapping[str, int] | None = None,
        order_limits: Mapping[str, int] | None = None,
        share: float = 1.0,
        ceiling: float = 0.95,
    ) -> None:
        if not 0 < share <= 1 or not 0 < ceiling <= 1:
            raise ValueError("share and ceiling must be in (0, 1]")
        self.share = share
        self.ceiling = ceiling
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._blocked_until = 0.0
        self._banned_until = 0.0
        self.configure(weight_limits or {"1M": 6000}, order_limits or {"10S": 100})

    # --- configuration --------------------------------------------------------------------

    def configure(self, weight_limits: Mapping[str, int], order_limits: Mapping[str, int]) -> None:
        """(Re)set the limits, keeping what has been counted for intervals that stay."""
        old = self._counters
        self._counters = {}
        for kind, limits in ((WEIGHT, weight_limits), (ORDERS, order_limits)):
            for key, limit in limits.items():
                key = key.upper()
                if limit <= 0:
                    raise ValueError(f"limit for {kind} {key} must be positive")
                c = _Counter(kind, key, limit, interval_seconds(key))
                prev = old.get((kind, key))
                if prev is not None:
                    c.window, c.reported, c.own, c.pending = (
                        prev.window, prev.reported, prev.own, prev.pending)
                self._counters[(kind, key)] = c

    def configure_from_rules(self, rules: Iterable[RateLimitRule]) -> None:
        """Apply exchangeInfo ``rateLimits`` (REQUEST_WEIGHT and ORDERS; others ignored)."""
        weights: dict[str, int] = {}
        orders: dict[str, int] = {}
        for r in rules:
            if r.rate_limit_type == "REQUEST_WEIGHT":
                weights[r.key] = r.limit
            elif r.rate_limit_type == "ORDERS":
                orders[r.key] = r.limit
        if weights or orders:
            self.configure(weights or self.limits(WEIGHT), orders or self.limits(ORDERS))

    def limits(self, kind: str) -> dict[str, int]:
        return {c.key: c.limit for c in self._counters.values() if c.kind == kind}

    # --- before a request -------------------------------------------------------------------

    def wait_time(self, now: float, weight: int, is_order: bool = False) -> float:
        """Seconds to wait before a request of ``weight`` may be sent (0.0: send now)."""
        wait = max(0.0, self._blocked_until - now, self._banned_until - now)
        for c in self._counters.values():
            cost = weight if c.kind == WEIGHT else (1 if is_order else 0)
            if cost == 0:
                continue
            c.roll(now)
            used_ip = c.reported + c.pending
            # A request bigger than the whole allowance still goes at the start of a window,
            # otherwise it would wait forever.
            over_ip = used_ip > 0 and used_ip + cost > self.ceiling * c.limit
            over_own = c.own > 0 and c.own + cost > self.share * c.limit
            if over_ip or over_own:
                wait = max(wait, c.window_end() - now)
        return wait

    def acquire(self, now: float, weight: int, is_order: bool = False) -> Ticket:
        """Count a request as sent (call after :meth:`wait_time` said 0)."""
        for c in self._counters.values():
            cost = weight if c.kind == WEIGHT else (1 if is_order else 0)
            if cost:
                c.roll(now)
                c.own += cost
                c.pending += cost
        return Ticket(weight, is_order)

    # --- after a request --------------------------------------------------------------------

    def on_response(
        self,
        ticket: Ticket | None,
        now: float,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
    ) -> None:
        """Read every ``X-MBX-USED-WEIGHT-*`` / ``X-MBX-ORDER-COUNT-*`` header."""
        if ticket is not None:
            self._settle(ticket, now, counted=False)
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            lname = name.lower()
            if lname.startswith("x-mbx-used-weight-"):
                kind, key = WEIGHT, lname[len("x-mbx-used-weight-") :].upper()
            elif lname.startswith("x-mbx-order-count-"):
                kind, key = ORDERS, lname[len("x-mbx-order-count-") :].upper()
            else:
                continue
            c = self._counters.get((kind, key))
            if c is None or not value.strip().isdigit():
                continue
            c.roll(now)
            c.reported = max(c.reported, int(value))

    def on_no_response(self, ticket: Ticket, now: float, *, may_have_been_sent: bool) -> None:
        """The request failed without a response. If it may have reached the venue, assume it
        was counted there (the safe side)."""
        self._settle(ticket, now, counted=may_have_been_sent)

    def _settle(self, ticket: Ticket, now: float, *, counted: bool) -> None:
        for c in self._counters.values():
            cost = ticket.weight if c.kind == WEIGHT else (1 if ticket.is_order else 0)
            if cost:
                c.pending = max(0, c.pending - cost)
                if counted:
                    c.roll(now)
                    c.reported += cost

    def on_rate_limited(self, now: float, retry_after_s: float | None) -> None:
        """429: stop everything until Retry-After (default: the end of the minute window)."""
        delay = retry_after_s if retry_after_s is not None else 60.0 - (now % 60.0)
        self._blocked_until = max(self._blocked_until, now + max(0.0, delay))

    def on_banned(self, now: float, retry_after_s: float | None) -> float:
        """418: the IP is banned; returns the time the ban lifts. Default 2 minutes, the
        shortest ban Binance hands out."""
        delay = retry_after_s if retry_after_s is not None else 120.0
        self._banned_until = max(self._banned_until, now + max(0.0, delay))
        return self._banned_until

    # --- state for the runtime ---------------------------------------------------------------

    def blocked_until(self, now: float) -> float | None:
        return self._blocked_until if self._blocked_until > now else None

    def banned_until(self, now: float) -> float | None:
        return self._banned_until if self._banned_until > now else None

    def used_weight(self, now: float, key: str = "1M") -> int:
        """The IP-wide estimate for a weight interval (for ``spark_exchange_used_weight``)."""
        c = self._counters.get((WEIGHT, key.upper()))
        if c is None:
            return 0
        c.roll(now)
        return c.reported + c.pending

    def own_usage(self, now: float, kind: str, key: str) -> int:
        c = self._counters.get((kind, key.upper()))
        if c is None:
            return 0
        c.roll(now)
        return c.own
