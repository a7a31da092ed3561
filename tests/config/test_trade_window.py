from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.core.trade_window import TradeWindow


def ms(text: str, tz: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_daytime_window_edges() -> None:
    w = TradeWindow.parse("07:00-23:30")
    utc = ZoneInfo("UTC")
    assert not w.contains(ms("2026-11-20T06:59:59", "UTC"), utc)
    assert w.contains(ms("2026-11-20T07:00:00", "UTC"), utc)
    assert w.contains(ms("2026-11-20T23:29:59", "UTC"), utc)
    assert not w.contains(ms("2026-11-20T23:30:00", "UTC"), utc)


def test_window_crossing_midnight_in_a_timezone() -> None:
    w = TradeWindow.parse("22:00-06:00")
    berlin = ZoneInfo("Europe/Berlin")
    assert w.contains(ms("2026-11-20T23:00:00", "Europe/Berlin"), berlin)
    assert w.contains(ms("2026-11-21T05:59:00", "Europe/Berlin"), berlin)
    assert not w.contains(ms("2026-11-21T06:00:00", "Europe/Berlin"), berlin)
    # 21:30 UTC is 22:30 in Berlin (CET): inside, though outside in UTC terms.
    assert w.contains(ms("2026-11-20T21:30:00", "UTC"), berlin)


def test_always() -> None:
    w = TradeWindow.parse("00:00-24:00")
    assert w.always
    assert str(w) == "00:00-24:00"


@given(st.integers(0, 1439), st.integers(1, 1440), st.integers(0, 1439))
def test_membership_matches_a_naive_model(start: int, end: int, minute: int) -> None:
    if start == end:
        return
    w = TradeWindow(start, end)
    inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
    assert w.contains_minute(minute) is inside


@pytest.mark.parametrize("text", ["07:00-23:30", "22:00-06:00", "00:00-24:00"])
def test_round_trip(text: str) -> None:
    assert str(TradeWindow.parse(text)) == text
