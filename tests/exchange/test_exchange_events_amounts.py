"""Amounts in execution reports: exact, finite, and the Decimal cache is probed, never filled,
by the amounts that change with every fill. Field positions used by the hot paths."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.exchange import events as ev_module
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import ExecutionEvent, decode_user_frame
from spark.exchange.numbers import DECIMALS

FRESH = ("l", "z", "L", "Z", "Y")  # last/cumulative qty, last price, quote amounts
FIELDS = {"l": "last_qty", "z": "cum_qty", "L": "last_price", "Z": "cum_quote_qty",
          "Y": "last_quote_qty"}


def report(**amounts: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "spk-amounts",
        "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410",
        "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": "TRADE",
        "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.40000000",
        "z": "0.40000000", "L": "0.10264400", "n": "0.00001000", "N": "BNB",
        "T": 1499405658657, "t": 77, "I": 8641984, "w": True, "m": True, "M": False,
        "O": 1499405658600, "Z": "0.04105760", "Y": "0.04105760", "Q": "0.00000000",
        "W": 1499405658601,
    }
    base.update(amounts)
    return base


def frame(event: dict[str, Any]) -> bytes:
    return json.dumps({"subscriptionId": 1, "event": event}).encode()


amount_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=0,
                max_value=10**9).map(str),
    st.sampled_from(["0", "0.00000000", "1E+2", "1.0", "0.10264410", "1.00000000", "-0.5"]),
)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({key: amount_text for key in FRESH}))
def test_fresh_amounts_are_exact_and_never_cached(amounts: dict[str, str]) -> None:
    before = dict(DECIMALS)
    ev = decode_user_frame(frame(report(**amounts)))
    assert isinstance(ev, ExecutionEvent)
    for key, text in amounts.items():
        value = getattr(ev, FIELDS[key])
        assert isinstance(value, Decimal) and str(value) == str(Decimal(text))  # exponent kept
    # Probing the cache found what was there; nothing fresh was added to it.
    added = set(DECIMALS) - set(before)
    assert not added & (set(amounts.values()) - {"1.00000000", "0.10264410", "0.00000000",
                                                  "0.00001000"})


def test_a_fresh_amount_equal_to_a_cached_one_is_the_cached_value() -> None:
    ev = decode_user_frame(frame(report(z="1.00000000", L="0.10264410", l="0.00000000")))
    assert isinstance(ev, ExecutionEvent)
    assert ev.cum_qty is ev.quantity  # the order quantity: one Decimal, shared (immutable)
    assert ev.last_price is ev.price
    assert str(ev.last_qty) == "0E-8"


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-inf", "sNaN", "1e", "", "0x10"])
@pytest.mark.parametrize("key", FRESH)
def test_non_finite_or_broken_fresh_amounts_are_malformed(key: str, bad: str) -> None:
    with pytest.raises(MalformedFrame):
        decode_user_frame(frame(report(**{key: bad})))
    assert bad not in DECIMALS


@pytest.mark.parametrize("key", FRESH)
@pytest.mark.parametrize("value", [1, 0.5, None, [], {}])
def test_fresh_amounts_must_be_strings(key: str, value: Any) -> None:
    with pytest.raises(MalformedFrame):
        decode_user_frame(frame(report(**{key: value})))


def test_field_positions_match_the_named_tuple() -> None:
    names = [n for n in dir(ev_module) if n.startswith("EV_")]
    assert len(names) >= 20
    sample = decode_user_frame(frame(report()))
    assert isinstance(sample, ExecutionEvent)
    for name in names:
        index = getattr(ev_module, name)
        field = name[3:].lower()
        assert ExecutionEvent._fields[index] == field
        assert sample[index] == getattr(sample, field)
