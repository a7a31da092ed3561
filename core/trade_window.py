"""Trade windows such as ``"07:00-23:30"``: parsing and membership, with no clock of their own.

A window may cross midnight (``"22:00-06:00"``); ``"00:00-24:00"`` means always.  The start is
inclusive and the end exclusive, in the configured timezone.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

import attrs

_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class TradeWindowError(ValueError):
    """The text is not a ``HH:MM-HH:MM`` window."""


@attrs.frozen
class TradeWindow:
    """Minutes after local midnight: ``start`` inclusive, ``end`` exclusive (1440 = midnight)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> TradeWindow:
        match = _WINDOW.match(text.strip())
        if match is None:
            raise TradeWindowError(f"{text!r} is not HH:MM-HH:MM (e.g. 07:00-23:30)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hours, minutes in ((h1, m1), (h2, m2)):
            if minutes > 59 or hours > 24 or (hours == 24 and minutes != 0):
                raise TradeWindowError(f"{text!r} has an impossible time of day")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == 1440:
            raise TradeWindowError(f"{text!r} cannot start at 24:00")
        if start == end:
            raise TradeWindowError(f"{text!r} is empty; use 00:00-24:00 for always")
        return cls(start, end)

    @property
    def always(self) -> bool:
        return self.start == 0 and self.end == 1440

    def contains_minute(self, minute_of_day: int) -> bool:
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end

    def contains(self, now_ms: int, tz: ZoneInfo) -> bool:
        """Whether the wall-clock instant ``now_ms`` (epoch ms) falls inside, in ``tz``."""
        if self.always:
            return True
        local = datetime.fromtimestamp(now_ms / 1000, tz=tz).time()
        return self.contains_minute(_minute(local))

    def __str__(self) -> str:
        def hhmm(minutes: int) -> str:
            return f"{minutes // 60:02d}:{minutes % 60:02d}"

        return f"{hhmm(self.start)}-{hhmm(self.end)}"


def _minute(t: time) -> int:
    return t.hour * 60 + t.minute
