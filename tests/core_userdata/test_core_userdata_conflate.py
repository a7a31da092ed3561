"""Reference-price conflation: latest wins, mid as Decimal, stale = no price (fail closed)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.core.conflate import ReferencePrices
from spark.exchange.market import BookTicker

D = Decimal


def ticker(uid: int, bid: str, ask: str, *, symbol: str = "BTCUSDT",
           event_time: int | None = None) -> BookTicker:
    return BookTicker(symbol, uid, D(bid), D("1"), D(ask), D("1"), event_time)


def test_mid_latest_wins_and_event_time_kept() -> None:
    p = ReferencePrices(stale_after_s=5)
    assert p.price("BTCUSDT", 0.0) is None
    assert p.update(ticker(1, "100.00", "100.02", event_time=1_000), 10.0)
    assert p.price("BTCUSDT", 10.0) == D("100.01")
    assert p.update(ticker(2, "101", "101.5", event_time=1_100), 10.1)
    q = p.quote("BTCUSDT", 10.2)
    assert q is not None and q.mid == D("101.25") and q.event_time_ms == 1_100
    assert isinstance(q.mid, Decimal)


def test_out_of_order_and_duplicate_updates_are_dropped() -> None:
    p = ReferencePrices(stale_after_s=5)
    p.update(ticker(5, "100", "102"), 1.0)
    assert not p.update(ticker(4, "50", "52"), 1.1)  # reordered
    assert not p.update(ticker(5, "100", "102"), 1.2)  # the other connection's copy
    assert p.price("BTCUSDT", 1.3) == D(101) and p.dropped == 2
    # ids reset (venue restart) are accepted once the slot is stale anyway
    assert p.update(ticker(1, "90", "92"), 7.0)
    assert p.price("BTCUSDT", 7.0) == D(91)


def test_stale_price_counts_as_no_price() -> None:
    p = ReferencePrices(stale_after_s=5)
    p.update(ticker(1, "100", "102"), 10.0)
    assert p.price("BTCUSDT", 15.0) == D(101)  # exactly 5 s old: still fresh
    assert p.price("BTCUSDT", 15.001) is None
    assert p.latest("BTCUSDT") is not None and p.age("BTCUSDT", 15.0) == 5.0
    # exchange event time (futures) relayed late is stale too, given venue time
    p.update(ticker(2, "100", "102", event_time=1_000_000), 20.0)
    assert p.price("BTCUSDT", 20.0, now_ms=1_004_000) == D(101)
    assert p.price("BTCUSDT", 20.0, now_ms=1_006_000) is None
    assert p.prices(20.0, ["BTCUSDT", "ETHUSDT"]) == {"BTCUSDT": D(101), "ETHUSDT": None}


def test_unusable_quote_replaces_the_slot() -> None:
    p = ReferencePrices(stale_after_s=5)
    p.update(ticker(1, "100", "102"), 1.0)
    assert p.update(ticker(2, "0", "102"), 1.1)  # empty bid side
    assert p.price("BTCUSDT", 1.2) is None and p.invalid == 1
    p.update(ticker(3, "103", "102"), 1.3)  # crossed
    assert p.price("BTCUSDT", 1.4) is None
    p.update(ticker(4, "102", "102"), 1.5)  # locked is fine
    assert p.price("BTCUSDT", 1.6) == D(102)
    with pytest.raises(ValueError):
        ReferencePrices(stale_after_s=0)


def test_drain_changed_hands_over_each_symbol_once() -> None:
    p = ReferencePrices()
    for uid in range(1, 50):
        p.update(ticker(uid, str(100 + uid), str(101 + uid)), float(uid))
    p.update(ticker(1, "10", "11", symbol="ETHUSDT"), 50.0)
    changed = p.drain_changed()
    assert [(q.symbol, q.update_id) for q in changed] == [("BTCUSDT", 49), ("ETHUSDT", 1)]
    assert p.drain_changed() == ()


@settings(max_examples=100, deadline=None)
@given(
    updates=st.lists(
        st.tuples(st.integers(1, 40), st.integers(1, 10_000), st.integers(0, 50),
                  st.floats(0.0, 3.0)),
        min_size=1, max_size=60,
    ),
    probe=st.floats(0.0, 10.0),
)
def test_price_is_the_freshest_highest_id_or_none(
    updates: list[tuple[int, int, int, float]], probe: float
) -> None:
    """Whatever the arrival order, a reported price is the mid of the highest update id seen
    within the staleness rule, and it is never older than stale_after_s."""
    p = ReferencePrices(stale_after_s=2.0)
    t = 0.0
    for uid, bid, spread, dt in updates:
        t += dt
        p.update(ticker(uid, str(bid), str(bid + spread)), t)
    now = t + probe
    price = p.price("BTCUSDT", now)
    latest = p.latest("BTCUSDT")
    assert latest is not None
    if now - latest.received_at > 2.0:
        assert price is None
    else:
        assert price == (latest.bid + latest.ask) / 2
