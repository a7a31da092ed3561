"""Record types: exact amounts, stable JSON round trip, secrets kept out of the audit log."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import orjson
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storage_helpers import audit, execution, one_of_each, order, trade

from spark.storage import records as r
from spark.storage import schema
from spark.storage.amounts import canonical, check_amount, to_text
from spark.storage.errors import AmountOutOfRange, RecordDecodeError
from spark.storage.sink import Sink

# Amounts that fit NUMERIC(36,18), in every shape a Decimal can take.
amounts = st.builds(
    lambda digits, exponent, sign: Decimal((sign, digits, exponent)),
    st.tuples(*[st.integers(0, 9)] * 6).map(tuple) | st.lists(st.integers(0, 9), min_size=1,
                                                               max_size=18).map(tuple),
    st.integers(-18, 0),
    st.integers(0, 1),
).filter(lambda d: d.copy_abs() < Decimal(10) ** 18)


def test_every_record_type_has_exactly_its_table_columns() -> None:
    tables = {
        r.OrderUpdate: schema.orders, r.ExecutionRecord: schema.executions,
        r.TradeRecord: schema.trades, r.RiskDecision: schema.risk_decisions,
        r.AuditEntry: schema.audit_log, r.BreakerEvent: schema.breaker_events,
        r.GateEvent: schema.gate_events, r.KillSwitchEvent: schema.kill_switch_events,
    }
    assert set(tables) == set(r.RECORD_TYPES)
    for cls, table in tables.items():
        fields = {f.name for f in attrs.fields(cls)} - {"ingress"}
        assert fields == {c.name for c in table.columns} - {"id"}, cls


@pytest.mark.parametrize("record", one_of_each(3), ids=lambda rec: type(rec).__name__)
def test_json_round_trip_is_exact_and_stable(record: r.Record) -> None:
    encoded = r.encode(record)
    assert r.decode(encoded) == record
    assert r.encode(r.decode(encoded)) == encoded
    assert orjson.loads(encoded)["k"] == r.KIND[type(record)]


@settings(max_examples=200, deadline=None)
@given(qty=amounts, price=amounts, ingress=st.floats(0, 1e9))
def test_decimal_values_survive_json_exactly(qty: Decimal, price: Decimal, ingress: float) -> None:
    record = trade(1, qty=qty, price=price, ingress=ingress)
    back = r.decode(r.encode(record))
    assert isinstance(back, r.TradeRecord)
    assert back.qty == qty and str(back.qty) == str(qty)  # same value and same representation
    assert back.price == price and back.ingress == ingress


@pytest.mark.parametrize(
    "bad",
    [Decimal("NaN"), Decimal("Infinity"), Decimal("1e18"), Decimal("0.0000000000000000001"),
     1.5, "1.5"],
)
def test_amounts_that_would_not_be_exact_are_refused(bad: Any) -> None:
    with pytest.raises(AmountOutOfRange) as info:
        trade(1, price=bad)
    assert info.value.reason == "amount_out_of_range"


def test_amount_edges() -> None:
    assert check_amount(Decimal("999999999999999999.999999999999999999"))
    assert check_amount(Decimal("1.000000000000000000000"))  # trailing zeros beyond scale: exact
    assert to_text(Decimal("1E+2")) == "100"
    assert to_text(Decimal("0.00012000")) == "0.00012"
    assert to_text(Decimal("1E-18")) == "0.000000000000000001"
    assert str(canonical(Decimal("-0.000"))) == "0"
    big = Decimal("123456789012345678.123456789012345678")
    assert canonical(big) == big  # no rounding to the default 28 digits


@settings(max_examples=100, deadline=None)
@given(value=amounts)
def test_canonical_keeps_the_value(value: Decimal) -> None:
    assert canonical(value) == value
    assert Decimal(to_text(value)) == value


def test_amounts_round_trip_through_the_database(engine: Engine) -> None:
    values = [
        Decimal("0"), Decimal("0.1"), Decimal("45000.50"), Decimal("1E-18"), Decimal("-3.25"),
        Decimal("999999999999999999.999999999999999999"), Decimal("0.00012000"),
        Decimal("123456789012345678.123456789012345678"), Decimal("1E+5"),
    ]
    Sink(engine).write([trade(i, price=v, qty=v) for i, v in enumerate(values)])
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.trades.c.price, schema.trades.c.qty).order_by(schema.trades.c.trade_id)
        ).all()
    assert [row.price for row in rows] == values
    assert [str(row.qty) for row in rows] == [str(canonical(v)) for v in values]


def test_audit_detail_never_keeps_a_secret() -> None:
    entry = audit(
        1,
        detail={
            "token": "tok-123", "Authorization": "Bearer tok-123", "nested": {"api_key": "key-456"},
            "items": [{"password": "pw-789"}], "amount": Decimal("1.50"), "ok": "visible",
        },
    )
    encoded = r.encode(entry)
    for secret in (b"tok-123", b"key-456", b"pw-789"):
        assert secret not in encoded
    assert entry.detail["ok"] == "visible"
    assert entry.detail["amount"] == "1.50"


@pytest.mark.parametrize(
    "doc, message",
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"k": "nope"}', "unknown record kind"),
        (b'{"k": "order"}', "missing fields"),
    ],
)
def test_decode_rejects_malformed(doc: bytes, message: str) -> None:
    with pytest.raises(RecordDecodeError, match=message):
        r.decode(doc)


def test_decode_rejects_wrong_field_types() -> None:
    good = orjson.loads(r.encode(order()))
    for field, value in [("version", "1"), ("version", True), ("quantity", 1.5),
                         ("quantity", "abc"), ("symbol", None), ("quantity", "1e-30")]:
        doc = dict(good, **{field: value})
        with pytest.raises(RecordDecodeError):
            r.decode(orjson.dumps(doc))
    with pytest.raises(RecordDecodeError, match="unknown fields"):
        r.decode(orjson.dumps(dict(good, extra=1)))


def test_records_without_natural_keys_get_distinct_record_ids() -> None:
    assert audit(1).record_id != audit(1).record_id
    assert execution(1) == execution(1)  # natural key: equal when equal


def _fits_reference(value: Decimal) -> bool:
    """NUMERIC(36,18) exactness, the slow obvious way."""
    if not value.is_finite():
        return False
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    number = int("".join(map(str, digits)) or "0")
    if number == 0:
        return True
    while exponent < 0 and number % 10 == 0:  # trailing fractional zeros do not count
        number //= 10
        exponent += 1
    fractional = max(0, -exponent)
    integer_digits = max(0, len(str(number)) + exponent)
    return fractional <= 18 and integer_digits <= 18


@settings(max_examples=400, deadline=None)
@given(
    value=st.builds(
        lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=40),
        st.integers(-45, 25),
    )
    | st.sampled_from([Decimal("NaN"), Decimal("-Infinity"), Decimal("-0"), Decimal("0E+30")])
)
def test_amount_text_agrees_with_the_reference(value: Decimal) -> None:
    if not _fits_reference(value):
        with pytest.raises(AmountOutOfRange):
            to_text(value)
        return
    text = to_text(value)
    assert Decimal(text) == value
    assert "E" not in text and "e" not in text
    assert text != "-0"
    if "." in text:
        assert not text.endswith("0") and not text.endswith(".")
    assert canonical(value) == value and str(canonical(value)) == str(Decimal(text))
