"""Client order ids, intents and the live gate."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import Any

import pytest
from core_orders_helpers import T0_MS, intent
from hypothesis import given
from hypothesis import strategies as st

from spark.core.client_ids import (
    ClientIdError,
    ClientIdGenerator,
    is_ours,
    validate_client_id,
)
from spark.core.intents import (
    InvalidIntent,
    OrderType,
    Side,
    TimeInForce,
    build_intent,
    intent_problems,
)
from spark.core.live_gate import describe_missing, live_gate

BINANCE_ID = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")


# -- client ids -------------------------------------------------------------------------------


def test_generated_ids_fit_binance_and_are_ours() -> None:
    gen = ClientIdGenerator("spk", T0_MS, random.Random(1))
    ids = [gen.next() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(BINANCE_ID.match(i) for i in ids)
    assert all(is_ours(i, "spk") and gen.is_ours(i) for i in ids)
    assert ids == sorted(ids), "ids sort by creation order"


@given(
    prefix=st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True),
    start=st.integers(0, 4_000_000_000_000),
    steps=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_ids_valid_unique_ordered_for_any_prefix_and_time(
    prefix: str, start: int, steps: list[int]
) -> None:
    gen = ClientIdGenerator(prefix, start, random.Random(0))
    now, ids = start, []
    for step in steps:
        now += step
        ids.append(gen.next(now))
    assert all(BINANCE_ID.match(i) and len(i) <= 36 for i in ids)
    assert len(set(ids)) == len(ids)
    counters = [i[len(prefix) + 1:-4] for i in ids]
    assert counters == sorted(counters)
    assert all(is_ours(i, prefix) for i in ids)


def test_restart_later_does_not_collide_with_earlier_run() -> None:
    first = ClientIdGenerator("spk", T0_MS, random.Random(5))
    earlier = {first.next() for _ in range(500)}
    second = ClientIdGenerator("spk", T0_MS + 1, random.Random(5))
    assert not earlier & {second.next() for _ in range(500)}


def test_counter_follows_wall_time() -> None:
    gen = ClientIdGenerator("a", T0_MS, random.Random(2))
    early = gen.next(T0_MS)
    late = gen.next(T0_MS + 60_000)
    assert late[2:13] > early[2:13]


@pytest.mark.parametrize("bad", ["", "toolongprefix", "sp-k", "spk!", "ü"])
def test_bad_prefix_refused(bad: str) -> None:
    with pytest.raises(ClientIdError):
        ClientIdGenerator(bad, T0_MS)


def test_is_ours_needs_the_separator() -> None:
    assert is_ours("spk-abc", "spk")
    assert not is_ours("spk2-abc", "spk")
    assert not is_ours("spkabc", "spk")
    assert not is_ours("spk-", "spk")
    assert not is_ours("web_123", "spk")
    assert not is_ours("spk-" + "x" * 40, "spk")


@pytest.mark.parametrize(
    ("cid", "ok"),
    [("a", True), ("x" * 36, True), ("A_b-9", True), ("", False), ("x" * 37, False),
     ("has space", False), ("semi;colon", False), ("ünï", False)],
)
def test_validate_client_id(cid: str, ok: bool) -> None:
    assert (validate_client_id(cid) is None) is ok


# -- intents ----------------------------------------------------------------------------------


def test_build_intent_parses_strings() -> None:
    i = build_intent(client_order_id="spk-1", symbol="BTCUSDT", side="SELL", type="LIMIT",
                     quantity="0.5", price="45000.10", time_in_force="IOC", source="ctl",
                     created_ms=T0_MS)
    assert i.side is Side.SELL and i.type is OrderType.LIMIT
    assert i.quantity == Decimal("0.5") and i.price == Decimal("45000.10")
    assert i.time_in_force is TimeInForce.IOC
    assert i.signed_quantity == Decimal("-0.5")


def test_build_intent_reports_every_problem() -> None:
    with pytest.raises(InvalidIntent) as info:
        build_intent(client_order_id="x", symbol="BTCUSDT", side="HOLD", type="STOP",
                     quantity="lots")
    fields = {f for f, _ in info.value.problems}
    assert fields == {"side", "type", "quantity"}


def test_build_intent_refuses_floats() -> None:
    with pytest.raises(InvalidIntent) as info:
        build_intent(client_order_id="x", symbol="BTCUSDT", side="BUY", type="MARKET",
                     quantity=0.1)
    assert info.value.problems == [("quantity", "must be a decimal number (as a string)")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"qty": "0"}, "quantity"),
        ({"qty": "-1"}, "quantity"),
        ({"qty": "NaN"}, "quantity"),
        ({"qty": "Infinity"}, "quantity"),
        ({"type": OrderType.LIMIT}, "price"),
        ({"type": OrderType.LIMIT, "price": "0"}, "price"),
        ({"price": "100"}, "price"),
        ({"tif": TimeInForce.GTC}, "timeInForce"),
        ({"cid": "bad id"}, "clientOrderId"),
        ({"symbol": "btcusdt"}, "symbol"),
    ],
)
def test_intent_problems(kwargs: dict[str, Any], field: str) -> None:
    problems = intent_problems(intent(**kwargs))
    assert [f for f, _ in problems] == [field]


def test_good_intents_have_no_problems() -> None:
    assert intent_problems(intent()) == []
    assert intent_problems(intent(type=OrderType.LIMIT, price="1", tif=TimeInForce.FOK)) == []


# -- live gate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "policy", "execute", "creds", "allowed", "missing"),
    [
        ("sim", "auto", False, False, True, []),
        ("sim", "confirm_required", False, False, True, []),
        ("sim", "dry_run", True, True, False, ["policy"]),
        ("spot", "auto", True, True, True, []),
        ("futures", "confirm_required", True, True, True, []),
        ("spot", "auto", False, True, False, ["execute"]),
        ("spot", "auto", True, False, False, ["credentials"]),
        ("futures", "dry_run", False, False, False, ["execute", "credentials", "policy"]),
        ("spot-testnet", "auto", False, True, False, ["execute"]),
        ("futures-testnet", "auto", True, True, True, []),
        ("moon", "auto", True, True, False, ["mode"]),
        ("spot", "yolo", True, True, False, ["policy"]),
    ],
)
def test_live_gate(mode: str, policy: str, execute: bool, creds: bool, allowed: bool,
                   missing: list[str]) -> None:
    send_allowed, got = live_gate(mode, policy, execute, creds)
    assert (send_allowed, got) == (allowed, missing)
    text = describe_missing(got)
    assert (text == "armed") is allowed
    if "execute" in got:
        assert "EXECUTE=true" in text
