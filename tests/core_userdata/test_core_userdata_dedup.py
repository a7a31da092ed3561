"""Dedup: exact within its window whatever the arrival order, bounded memory, seeding."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.core.dedup import Deduplicator, Verdict
from spark.core.userdata_errors import DedupSeedError
from spark.exchange.events import ExecutionEvent


def execution(
    *, trade_id: int | None, execution_id: str, symbol: str = "BTCUSDT", x: str = "TRADE"
) -> ExecutionEvent:
    qty = Decimal("0.1") if trade_id is not None else Decimal(0)
    return ExecutionEvent(
        "spot", symbol, "spk-1", 1, "BUY", "LIMIT", "GTC", Decimal(1), Decimal(100), Decimal(0),
        x, "PARTIALLY_FILLED", "NONE", qty, qty, Decimal(100), Decimal(0), None, trade_id,
        execution_id, False, 1, 1,
    )


def test_fills_dedup_by_trade_id_across_socket_and_my_trades() -> None:
    d = Deduplicator()
    ws_fill = execution(trade_id=501, execution_id="9001")
    assert d.admit(ws_fill) is Verdict.NEW
    assert d.admit(ws_fill) is Verdict.DUPLICATE
    # the same trade from myTrades (reconciliation) has no execution id but the same trade id
    assert d.admit_trade("spot", "BTCUSDT", 501) is Verdict.DUPLICATE
    assert d.admit_trade("spot", "ETHUSDT", 501) is Verdict.NEW  # per symbol
    assert d.admit_trade("futures", "BTCUSDT", 501) is Verdict.NEW  # per product
    assert d.duplicates == 2


def test_late_fill_below_the_high_water_mark_is_new() -> None:
    """The reason a high-water mark alone is wrong."""
    d = Deduplicator()
    for tid in (10, 12, 13):
        assert d.admit_trade("spot", "BTCUSDT", tid) is Verdict.NEW
    assert d.admit_trade("spot", "BTCUSDT", 11) is Verdict.NEW  # reordered, never seen
    assert d.admit_trade("spot", "BTCUSDT", 11) is Verdict.DUPLICATE


def test_status_events_dedup_by_execution_id_in_a_bounded_lru() -> None:
    d = Deduplicator(recent_ids=3)
    for eid in ("1", "2", "3"):
        assert d.admit(execution(trade_id=None, execution_id=eid, x="NEW")) is Verdict.NEW
    assert d.admit(execution(trade_id=None, execution_id="1", x="NEW")) is Verdict.DUPLICATE
    assert d.admit(execution(trade_id=None, execution_id="4", x="NEW")) is Verdict.NEW
    # "2" was least recently used and is forgotten: harmless for idempotent status events
    assert d.peek(execution(trade_id=None, execution_id="2", x="NEW")) is Verdict.NEW
    assert d.peek(execution(trade_id=None, execution_id="1", x="NEW")) is Verdict.DUPLICATE
    assert d.size == 3


def test_window_eviction_makes_old_ids_stale_not_new() -> None:
    d = Deduplicator(trade_window=3)
    for tid in (1, 2, 3, 4, 5):
        d.admit_trade("spot", "X", tid)
    assert d.floor("spot", "X") == 2
    assert d.admit_trade("spot", "X", 1) is Verdict.STALE  # seen, but forgotten: ask the store
    assert d.admit_trade("spot", "X", 0) is Verdict.STALE  # never seen, cannot tell either
    assert d.admit_trade("spot", "X", 4) is Verdict.DUPLICATE
    assert d.stale == 2
    assert d.size == 3


def test_seeding_from_the_store() -> None:
    d = Deduplicator()
    d.seed_trade_ids("spot", "BTCUSDT", [100, 98, 99])
    assert d.admit_trade("spot", "BTCUSDT", 99) is Verdict.DUPLICATE
    assert d.admit_trade("spot", "BTCUSDT", 101) is Verdict.NEW
    assert d.admit_trade("spot", "BTCUSDT", 50) is Verdict.STALE  # older than the seed
    d.seed_high_water("spot", "ETHUSDT", 7000)
    assert d.admit_trade("spot", "ETHUSDT", 7000) is Verdict.STALE
    assert d.admit_trade("spot", "ETHUSDT", 7001) is Verdict.NEW
    d.seed_high_water("spot", "BTCUSDT", 100)  # tightening drops remembered ids below it
    assert d.admit_trade("spot", "BTCUSDT", 99) is Verdict.STALE
    assert d.admit_trade("spot", "BTCUSDT", 101) is Verdict.DUPLICATE
    d.seed_execution_ids("spot", "BTCUSDT", ["a", "b"])
    assert d.admit_execution_id("spot", "BTCUSDT", "a") is Verdict.DUPLICATE
    with pytest.raises(DedupSeedError):
        d.seed_high_water("spot", "X", -1)
    with pytest.raises(DedupSeedError):
        Deduplicator(trade_window=0)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    window=st.integers(1, 64),
    max_shift=st.integers(0, 50),
    dup_rate=st.floats(0.0, 0.8),
)
def test_new_and_duplicate_are_never_wrong_and_stale_only_beyond_the_window(
    seed: int, n: int, window: int, max_shift: int, dup_rate: float
) -> None:
    """Deliveries of increasing trade ids, locally reordered and repeated: every verdict checked
    against an exact reference. NEW and DUPLICATE are always right; STALE appears only when at
    least ``window`` larger ids were admitted before."""
    rng = random.Random(seed)
    ids = sorted(rng.sample(range(10 * n + 10), n))
    deliveries = list(ids)
    for _ in range(int(n * dup_rate)):
        deliveries.append(rng.choice(ids))
    keyed = sorted(
        ((i + rng.uniform(0, max_shift), tid) for i, tid in enumerate(deliveries)),
        key=lambda p: p[0],
    )
    d = Deduplicator(trade_window=window)
    seen: set[int] = set()
    admitted: list[int] = []
    for _, tid in keyed:
        verdict = d.admit_trade("spot", "BTCUSDT", tid)
        larger_before = sum(1 for a in admitted if a > tid)
        if verdict is Verdict.NEW:
            assert tid not in seen
            seen.add(tid)
            admitted.append(tid)
        elif verdict is Verdict.DUPLICATE:
            assert tid in seen
        else:
            assert larger_before >= window
        assert d.size <= window
    if window >= n:  # everything fits: exact, nothing stale, every fill counted once
        assert d.stale == 0
        assert seen == set(ids)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["spot", "futures"]), st.sampled_from(["A", "B"]),
                          st.one_of(st.none(), st.integers(0, 40)), st.integers(0, 40)),
                max_size=120),
       st.integers(1, 8), st.integers(1, 8))
def test_admit_is_admit_trade_or_admit_execution_id(
    ops: list[tuple[str, str, int | None, int]], window: int, recent: int
) -> None:
    """``admit`` (inlined for speed) decides exactly as the two explicit entry points do, with
    the same counters, for any mix of fills and status events."""
    fast = Deduplicator(trade_window=window, recent_ids=recent)
    plain = Deduplicator(trade_window=window, recent_ids=recent)
    for product, symbol, trade_id, exec_id in ops:
        ev = execution(trade_id=trade_id, execution_id=str(exec_id), symbol=symbol)._replace(
            product=product)
        want = (plain.admit_trade(product, symbol, trade_id) if trade_id is not None
                else plain.admit_execution_id(product, symbol, str(exec_id)))
        assert fast.admit(ev) is want
        assert (fast.duplicates, fast.stale, fast.size) == (plain.duplicates, plain.stale,
                                                            plain.size)
        assert fast.floor(product, symbol) == plain.floor(product, symbol)
