"""Event decoding for every event type and envelope, and malformed-frame behaviour."""

from __future__ import annotations

import contextlib
import copy
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.exchange.errors import MalformedFrame
from spark.exchange.events import (
    AccountPosition,
    BalanceUpdate,
    ExecutionEvent,
    FuturesAccountUpdate,
    ListenKeyExpired,
    ServerShutdown,
    StreamTerminated,
    UnknownEvent,
    decode_user_frame,
    decode_user_message,
)
from spark.exchange.market import BookTicker, MarketTrade, decode_market_frame
from spark.exchange.models import Balance

# user-data-stream.md "Order Update" payload, made a partial fill.
EXECUTION_REPORT: dict[str, Any] = {
    "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410",
    "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": "TRADE",
    "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.40000000", "z": "0.40000000",
    "L": "0.10264400", "n": "0.00001000", "N": "BNB", "T": 1499405658657, "t": 77, "v": 3,
    "I": 8641984, "w": True, "m": True, "M": False, "O": 1499405658600,
    "Z": "0.04105760", "Y": "0.04105760", "Q": "0.00000000", "W": 1499405658601, "V": "NONE",
}


def wrap(event: dict[str, Any], sub: int = 0) -> bytes:
    # stdlib json: it also writes integers beyond 64 bits, which hypothesis generates.
    return json.dumps({"subscriptionId": sub, "event": event}).encode()


def test_spot_execution_report_every_field() -> None:
    ev = decode_user_frame(wrap(EXECUTION_REPORT, 3))
    assert isinstance(ev, ExecutionEvent)
    assert len(ev) == len(ExecutionEvent._fields)
    assert ev == ExecutionEvent(
        product="spot", symbol="ETHBTC", client_order_id="mUvoqJxFIILMdfAW5iGSOW",
        order_id=4293153, side="BUY", order_type="LIMIT", time_in_force="GTC",
        quantity=Decimal("1"), price=Decimal("0.10264410"), stop_price=Decimal("0"),
        execution_type="TRADE", order_status="PARTIALLY_FILLED", reject_reason="NONE",
        last_qty=Decimal("0.4"), cum_qty=Decimal("0.4"), last_price=Decimal("0.102644"),
        commission=Decimal("0.00001"), commission_asset="BNB", trade_id=77,
        execution_id="8641984", is_maker=True, event_time=1499405658658,
        transaction_time=1499405658657, orig_client_order_id=None, is_on_book=True,
        order_creation_time=1499405658600, cum_quote_qty=Decimal("0.0410576"),
        last_quote_qty=Decimal("0.0410576"), quote_order_qty=Decimal("0"),
        working_time=1499405658601, order_list_id=-1, subscription_id=3,
    )
    assert ev.is_trade
    assert isinstance(ev.price, Decimal) and str(ev.price) == "0.10264410"  # exact text kept


def test_spot_new_and_cancel_reports() -> None:
    new = dict(EXECUTION_REPORT, x="NEW", X="NEW", l="0.00000000", z="0.00000000",
               L="0.00000000", n="0", N=None, t=-1, I=8641983)
    ev = decode_user_frame(wrap(new))
    assert isinstance(ev, ExecutionEvent)
    assert ev.trade_id is None and ev.commission_asset is None and not ev.is_trade
    cancel = dict(new, x="CANCELED", X="CANCELED", c="cancel-req-1", C="orig-1", w=False,
                  eR="EXCHANGE_CANCELED")
    ev2 = decode_user_frame(wrap(cancel))
    assert isinstance(ev2, ExecutionEvent)
    assert ev2.orig_client_order_id == "orig-1" and ev2.expiry_reason == "EXCHANGE_CANCELED"
    assert ev2.is_on_book is False


def test_bare_execution_report_and_combined_envelope() -> None:
    bare = decode_user_frame(orjson.dumps(EXECUTION_REPORT))
    combined = decode_user_frame(orjson.dumps({"stream": "x", "data": EXECUTION_REPORT}))
    assert isinstance(bare, ExecutionEvent) and bare.subscription_id is None
    assert bare == combined
    assert decode_user_message(EXECUTION_REPORT) == bare


def test_account_position_balance_update_terminated_shutdown() -> None:
    pos = decode_user_frame(wrap({
        "e": "outboundAccountPosition", "E": 1564034571105, "u": 1564034571073,
        "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"},
              {"a": "BTC", "f": "1.5", "l": "0.25"}],
    }))
    assert pos == AccountPosition(1564034571105, 1564034571073, (
        Balance("ETH", Decimal("10000"), Decimal("0")),
        Balance("BTC", Decimal("1.5"), Decimal("0.25"))), 0)
    bal = decode_user_frame(wrap({"e": "balanceUpdate", "E": 1573200697110, "a": "BTC",
                                  "d": "-100.00000000", "T": 1573200697068}, 9))
    assert bal == BalanceUpdate(1573200697110, "BTC", Decimal("-100"), 1573200697068, 9)
    term = decode_user_frame(wrap({"e": "eventStreamTerminated", "E": 1728973001334}, 4))
    assert term == StreamTerminated(1728973001334, 4)
    # On the WS API serverShutdown comes without a subscriptionId.
    bye = decode_user_frame(b'{"event":{"e":"serverShutdown","E":1770123456789}}')
    assert bye == ServerShutdown(1770123456789, None)


FUTURES_NEW: dict[str, Any] = {
    "e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
    "o": {
        "s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.001",
        "p": "9000", "ap": "0", "sp": "0", "x": "NEW", "X": "NEW", "i": 8886774, "l": "0",
        "z": "0", "L": "0", "N": "USDT", "n": "0", "T": 1568879465650, "t": 0, "b": "0",
        "a": "9.91", "m": False, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT",
        "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE",
        "pm": "NONE", "gtd": 0, "er": "0",
    },
}


def test_futures_order_trade_update_new_and_trade() -> None:
    new = decode_user_frame(orjson.dumps(FUTURES_NEW))
    assert isinstance(new, ExecutionEvent)
    assert (new.product, new.symbol, new.client_order_id, new.order_id) == (
        "futures", "BTCUSDT", "TEST", 8886774)
    assert new.trade_id is None and new.execution_id == "8886774:NEW:NEW:1568879465650"
    assert (new.reduce_only, new.position_side, new.average_price, new.expiry_reason) == (
        False, "BOTH", Decimal("0"), "0")
    assert new.reject_reason == "NONE" and new.is_on_book is None
    assert new == ExecutionEvent(**new._asdict())  # all 37 fields, in order

    trade = copy.deepcopy(FUTURES_NEW)
    trade["o"].update(x="TRADE", X="FILLED", l="0.001", z="0.001", L="9000.5", n="0.0036",
                      t=12345, m=True, rp="1.5", ap="9000.5")
    ev = decode_user_frame(orjson.dumps(trade))
    assert isinstance(ev, ExecutionEvent)
    assert ev.execution_id == "8886774:12345" and ev.trade_id == 12345 and ev.is_trade
    assert (ev.last_price, ev.realized_pnl, ev.commission) == (
        Decimal("9000.5"), Decimal("1.5"), Decimal("0.0036"))

    # Same event delivered twice → same id (dedup works); a later transition → another id.
    assert decode_user_frame(orjson.dumps(trade)).execution_id == ev.execution_id  # type: ignore[union-attr]
    cancel = copy.deepcopy(FUTURES_NEW)
    cancel["o"].update(x="CANCELED", X="CANCELED", T=1568879465999)
    assert decode_user_frame(orjson.dumps(cancel)).execution_id == (  # type: ignore[union-attr]
        "8886774:CANCELED:CANCELED:1568879465999")


def test_futures_account_update_and_listen_key_expired() -> None:
    upd = decode_user_frame(orjson.dumps({
        "e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.1"}],
            "P": [{"s": "BTCUSDT", "pa": "0", "ep": "0.00000", "bep": "0", "cr": "200",
                   "up": "0", "mt": "isolated", "iw": "0.00000000", "ps": "BOTH"}],
        },
    }))
    assert isinstance(upd, FuturesAccountUpdate)
    assert upd.reason == "ORDER" and upd.balances[0].wallet_balance == Decimal("122624.12345678")
    assert upd.positions[0].accumulated_realized == Decimal("200")
    # Binance documents "E" as a string in this event.
    exp = decode_user_frame(b'{"e":"listenKeyExpired","E":"1736996475556","listenKey":"WsCMN0a"}')
    assert exp == ListenKeyExpired(1736996475556, "WsCMN0a")
    assert "WsCMN0a" not in repr(exp)


def test_unknown_event_types_are_kept_not_dropped() -> None:
    ev = decode_user_frame(wrap({"e": "listStatus", "E": 1564035303637, "s": "ETHBTC"}, 2))
    assert isinstance(ev, UnknownEvent)
    assert (ev.event_type, ev.event_time, ev.subscription_id) == ("listStatus", 1564035303637, 2)


def test_market_book_ticker_and_trade_plain_and_combined() -> None:
    spot_bt = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
               "a": "25.36520000", "A": "40.66000000"}
    plain = decode_market_frame(orjson.dumps(spot_bt))
    assert plain == BookTicker("BNBUSDT", 400900217, Decimal("25.3519"), Decimal("31.21"),
                               Decimal("25.3652"), Decimal("40.66"))
    combined = decode_market_frame(orjson.dumps({"stream": "bnbusdt@bookTicker",
                                                 "data": spot_bt}))
    assert isinstance(combined, BookTicker) and combined.stream == "bnbusdt@bookTicker"
    fut_bt = dict(spot_bt, e="bookTicker", E=1568014460893, T=1568014460891)
    fut = decode_market_frame(orjson.dumps(fut_bt))
    assert isinstance(fut, BookTicker) and fut.event_time == 1568014460893
    trade = {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001",
             "q": "100", "T": 1672515782136, "m": True, "M": True}
    assert decode_market_frame(orjson.dumps(trade)) == MarketTrade(
        "BNBBTC", 12345, Decimal("0.001"), Decimal("100"), 1672515782136, 1672515782136, True)
    wrapped = decode_market_frame(orjson.dumps({"stream": "bnbbtc@trade", "data": trade}))
    assert isinstance(wrapped, MarketTrade) and wrapped.stream == "bnbbtc@trade"
    bye = decode_market_frame(b'{"stream":"!serverShutdown","data":{"e":"serverShutdown",'
                              b'"E":1770123456789}}')
    assert bye == ServerShutdown(1770123456789)
    assert decode_market_frame(b'{"e":"serverShutdown","E":1}') == ServerShutdown(1)
    agg = decode_market_frame(b'{"e":"aggTrade","E":5,"s":"X"}')
    assert isinstance(agg, UnknownEvent) and agg.event_type == "aggTrade"


MALFORMED = [
    b"",
    b"not json",
    b"[1,2,3]",
    b'"executionReport"',
    b"{}",
    b'{"subscriptionId":0,"event":"x"}',
    b'{"subscriptionId":"zero","event":{"e":"eventStreamTerminated","E":1}}',
    wrap({k: v for k, v in EXECUTION_REPORT.items() if k != "q"}),
    wrap(dict(EXECUTION_REPORT, q="NaN")),
    wrap(dict(EXECUTION_REPORT, q="Infinity")),
    wrap(dict(EXECUTION_REPORT, q=1.5)),  # a float amount must not slip in
    wrap(dict(EXECUTION_REPORT, q="1" * 100)),
    wrap(dict(EXECUTION_REPORT, i="4293153x")),
    wrap(dict(EXECUTION_REPORT, m="false")),
    wrap(dict(EXECUTION_REPORT, s=None)),
    wrap(dict(EXECUTION_REPORT, w=None)),
    orjson.dumps(dict(FUTURES_NEW, o=[])),
    b'{"e":"ACCOUNT_UPDATE","E":1,"T":1,"a":{"m":"ORDER","B":[{"a":"USDT"}]}}',
    b'{"e":"balanceUpdate","E":1,"a":"BTC","d":[],"T":1}',
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_user_frames(raw: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        decode_user_frame(raw)
    assert info.value.reason == "malformed_frame"
    assert len(info.value.raw) <= 201


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"stream":"a","data":[]}',
                                 b'{"u":1,"s":"X","b":"1","B":"1","a":"x","A":"1"}',
                                 b'{"e":"trade","E":1}'])
def test_malformed_market_frames(raw: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_market_frame(raw)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_malformed_frame(text: str) -> None:
    for decode in (decode_user_frame, decode_market_frame):
        with contextlib.suppress(MalformedFrame):
            decode(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(sorted(EXECUTION_REPORT)), max_size=6),
       st.dictionaries(st.sampled_from(sorted(EXECUTION_REPORT)), JSON, max_size=4))
def test_damaged_execution_reports_decode_or_raise_malformed(
    dropped: set[str], replaced: dict[str, Any]
) -> None:
    event = {k: v for k, v in EXECUTION_REPORT.items() if k not in dropped}
    event.update(replaced)
    for raw in (wrap(event), json.dumps(event).encode()):
        try:
            ev = decode_user_frame(raw)
        except MalformedFrame:
            continue
        # Whatever decodes is well-typed.
        if isinstance(ev, ExecutionEvent):
            assert isinstance(ev.quantity, Decimal) and ev.quantity.is_finite()
            assert isinstance(ev.order_id, int) and isinstance(ev.symbol, str)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_arbitrary_json_raises_only_malformed_frame(obj: Any) -> None:
    raw = json.dumps(obj)
    for decode in (decode_user_frame, decode_market_frame):
        with contextlib.suppress(MalformedFrame):
            decode(raw)
