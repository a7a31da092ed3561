"""A sans-IO sliding-window rate limiter (time is passed in).

Each key may make at most ``limit`` calls in any window of ``window_s`` seconds: a call at
time ``t`` counts until ``t + window_s`` (exclusive).  The limiter keeps, per key, the times of
the calls still inside the window (at most ``limit`` of them) and at most ``max_keys`` keys, so
its memory is bounded whatever the callers do.  When full, keys whose windows have emptied go
first, then the least recently used.

The control port keys it by token fingerprint, so only authenticated callers (a handful of
configured tokens) ever create keys.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

import attrs

__all__ = ["Decision", "SlidingWindowLimiter"]


@attrs.frozen
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class SlidingWindowLimiter:
    def __init__(self, limit: int, window_s: float = 60.0, *, max_keys: int = 1024) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._now = -math.inf

    def __len__(self) -> int:
        """Keys currently tracked."""
        return len(self._hits)

    def hits(self, key: str) -> int:
        """Calls of ``key`` currently counted (as of the last :meth:`check`)."""
        return len(self._hits.get(key, ()))

    def check(self, key: str, now: float) -> Decision:
        """Count a call of ``key`` at ``now`` if it is within the limit; say when to retry if
        not.  A refused call is not counted."""
        now = self._now = max(now, self._now)  # never let time run backwards
        hits = self._hits.get(key)
        if hits is None:
            self._make_room(now)
            hits = self._hits[key] = deque()
        else:
            self._hits.move_to_end(key)
        self._expire(hits, now)
        if len(hits) < self.limit:
            hits.append(now)
            return Decision(True, self.limit - len(hits))
        return Decision(False, 0, hits[0] + self.window_s - now)

    def _expire(self, hits: deque[float], now: float) -> None:
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()

    def _make_room(self, now: float) -> None:
        if len(self._hits) < self.max_keys:
            return
        for key in [k for k, hits in self._hits.items() if not hits or
                    hits[-1] <= now - self.window_s]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:
            self._hits.popitem(last=False)
