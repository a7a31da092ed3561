"""Everything the writer persists, as frozen value objects, and their stable JSON form.

Each record carries ``ingress``: the ``trio.current_time()`` at which the event entered the
process (the websocket frame was received, the decision was made).  The writer observes
``spark_event_to_db_seconds`` as commit time minus ``ingress``.  It is a monotonic-clock value of
*this* process, so it means nothing after a restart (the writer does not observe it for records
spooled by a previous process).

Wall-clock times are ``int`` epoch milliseconds (``*_ms``, see :mod:`spark.storage.schema`);
amounts are ``Decimal`` and are checked to fit the database exactly at construction time, so a
bad amount fails where it was made, not later in the writer.

Records without a natural unique key (decisions, audit entries, state events) get a random
``record_id`` at construction; it is the database's idempotency key, so a replayed record never
becomes a second row.

JSON encoding (:func:`encode` / :func:`decode`), used by the spool: one JSON object per record,
``"k"`` names the kind, the other keys are the field names; ``Decimal`` values are strings
(``str(d)``, exact, ``Decimal(s)`` gives back the identical value), ``None`` is ``null``.  Keys
are sorted, so the same record always encodes to the same bytes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

import attrs
import orjson

from spark.storage.amounts import check_amount
from spark.storage.errors import RecordDecodeError

JSONValue: TypeAlias = (
    bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
)


def _amount(_inst: Any, _attribute: attrs.Attribute[Any], value: object) -> None:
    check_amount(value)


def _optional_amount(_inst: Any, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_amount(value)


def new_record_id() -> str:
    """A random, unique idempotency key (32 hex digits)."""
    return uuid.uuid4().hex


@attrs.frozen(kw_only=True)
class OrderUpdate:
    """The router's view of one order after a change; ``version`` increases with every change.

    The database keeps, per ``client_order_id``, the update with the highest ``version``.
    """

    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    quantity: Decimal = attrs.field(validator=_amount)
    price: Decimal | None = attrs.field(validator=_optional_amount)
    status: str
    venue_order_id: int | None
    executed_qty: Decimal = attrs.field(validator=_amount)
    cumulative_quote_qty: Decimal = attrs.field(validator=_amount)
    version: int
    created_ms: int
    updated_ms: int
    reason: str | None = None
    ingress: float


@attrs.frozen(kw_only=True)
class ExecutionRecord:
    """One execution report, as the venue sent it; unique on ``execution_id``.

    ``execution_id`` is the venue's execution id as text (spot ``I``); for futures, which has no
    such id, the codec derives a stable one.  ``trade_id`` is ``None`` when the venue says -1.
    """

    execution_id: str
    client_order_id: str
    venue_order_id: int | None
    symbol: str
    side: str
    execution_type: str
    order_status: str
    last_qty: Decimal = attrs.field(validator=_amount)
    last_price: Decimal = attrs.field(validator=_amount)
    cumulative_qty: Decimal = attrs.field(validator=_amount)
    commission: Decimal = attrs.field(validator=_amount)
    commission_asset: str | None
    trade_id: int | None
    event_ms: int
    transaction_ms: int
    ingress: float


@attrs.frozen(kw_only=True)
class TradeRecord:
    """One fill; unique on ``(symbol, trade_id)`` (Binance trade ids are per symbol).

    ``execution_id`` is the execution report that carried the fill (``None`` for fills learned
    from REST); ``order_status`` the order's status right after the fill, when known.
    """

    symbol: str
    trade_id: int
    venue_order_id: int | None
    client_order_id: str
    execution_id: str | None
    side: str
    price: Decimal = attrs.field(validator=_amount)
    qty: Decimal = attrs.field(validator=_amount)
    quote_qty: Decimal = attrs.field(validator=_amount)
    commission: Decimal = attrs.field(validator=_amount)
    commission_asset: str | None
    is_maker: bool
    order_status: str | None = None
    trade_ms: int
    ingress: float


@attrs.frozen(kw_only=True)
class RiskDecision:
    """The risk guard's verdict on one intent; ``reason`` is a stable reason code."""

    client_order_id: str
    symbol: str
    approved: bool
    reason: str
    detail: str | None = None
    decided_ms: int
    ingress: float
    record_id: str = attrs.field(factory=new_record_id)


_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|authorization|signature|api[-_]?key|private[-_]?key",
    re.IGNORECASE,
)
REDACTED: Final = "***"


def _scrub(value: Any) -> JSONValue:
    """A JSON-safe copy of ``value`` with anything under a secret-looking key redacted.

    Defence in depth: callers must not put secrets into the audit log at all; if one slips in
    under an obvious key it is still never written.  ``Decimal`` becomes its exact string.
    """
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _scrub_detail(value: Mapping[str, Any] | None) -> dict[str, JSONValue]:
    scrubbed = _scrub(value or {})
    assert isinstance(scrubbed, dict)
    return scrubbed


@attrs.frozen(kw_only=True)
class AuditEntry:
    """Who did what to what, with which result.

    ``actor`` is the control-port role (``admin``, ``trader``...) or ``signal``, never a token;
    ``detail`` is JSON (secret-looking keys are redacted on construction).
    """

    at_ms: int
    actor: str
    action: str
    target: str | None
    result: str
    detail: dict[str, JSONValue] = attrs.field(factory=dict, converter=_scrub_detail)
    ingress: float
    record_id: str = attrs.field(factory=new_record_id)


@attrs.frozen(kw_only=True)
class BreakerEvent:
    """A circuit-breaker state change (``closed`` / ``open`` / ``half_open``)."""

    at_ms: int
    from_state: str | None
    to_state: str
    reason: str
    source: str
    ingress: float
    record_id: str = attrs.field(factory=new_record_id)


@attrs.frozen(kw_only=True)
class GateEvent:
    """A drift-gate state change."""

    at_ms: int
    from_state: str | None
    to_state: str
    reason: str
    source: str
    ingress: float
    record_id: str = attrs.field(factory=new_record_id)


@attrs.frozen(kw_only=True)
class KillSwitchEvent:
    """A kill-switch change; ``source`` is e.g. ``signal``, ``control:admin``, ``env``."""

    at_ms: int
    from_state: str | None
    to_state: str
    reason: str
    source: str
    ingress: float
    record_id: str = attrs.field(factory=new_record_id)


Record: TypeAlias = (
    OrderUpdate
    | ExecutionRecord
    | TradeRecord
    | RiskDecision
    | AuditEntry
    | BreakerEvent
    | GateEvent
    | KillSwitchEvent
)

RECORD_TYPES: Final[tuple[type[Record], ...]] = (
    OrderUpdate,
    ExecutionRecord,
    TradeRecord,
    RiskDecision,
    AuditEntry,
    BreakerEvent,
    GateEvent,
    KillSwitchEvent,
)

# The "k" tag of each kind in the JSON form.  Stable: spooled files outlive releases.
KIND: Final[dict[type[Any], str]] = {
    OrderUpdate: "order",
    ExecutionRecord: "execution",
    TradeRecord: "trade",
    RiskDecision: "risk",
    AuditEntry: "audit",
    BreakerEvent: "breaker",
    GateEvent: "gate",
    KillSwitchEvent: "kill_switch",
}
_BY_KIND: Final[dict[str, type[Any]]] = {kind: cls for cls, kind in KIND.items()}


# --- JSON codec -----------------------------------------------------------------------------

Decoder = Callable[[Any], Any]


def _dec_decimal(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise RecordDecodeError(f"amount must be a string, got {type(value).__name__}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise RecordDecodeError(f"not a decimal: {value!r}") from None


def _optional(inner: Decoder) -> Decoder:
    def decode_optional(value: Any) -> Any:
        return None if value is None else inner(value)

    return decode_optional


def _typed(*types: type[Any]) -> Decoder:
    def check(value: Any) -> Any:
        # bool is an int subclass: an int field must not accept true/false and vice versa.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise RecordDecodeError(f"expected {types[0].__name__}, got {type(value).__name__}")
        return value

    return check


def _dec_float(value: Any) -> float:
    return float(_typed(int, float)(value))


# Keyed by the annotation text (this module uses postponed annotations), which keeps the table
# independent of how the typing module renders unions of forward references.
_DECODERS_BY_TYPE: Final[dict[str, Decoder]] = {
    "Decimal": _dec_decimal,
    "Decimal | None": _optional(_dec_decimal),
    "str": _typed(str),
    "str | None": _optional(_typed(str)),
    "int": _typed(int),
    "int | None": _optional(_typed(int)),
    "bool": _typed(bool),
    "float": _dec_float,
    "dict[str, JSONValue]": _typed(dict),
}


def _field_codecs(cls: type[Any]) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Decoder]]:
    names: list[str] = []
    decimals: list[str] = []
    decoders: dict[str, Decoder] = {}
    for field in attrs.fields(cls):
        annotation = str(field.type)
        names.append(field.name)
        if annotation in ("Decimal", "Decimal | None"):
            decimals.append(field.name)
        decoders[field.name] = _DECODERS_BY_TYPE[annotation]
    return tuple(names), tuple(decimals), decoders


_CODECS: Final = {cls: _field_codecs(cls) for cls in RECORD_TYPES}


def to_jsonable(record: Record) -> dict[str, Any]:
    """The record as a JSON-ready dict (``"k"`` plus every field, Decimals as strings)."""
    names, decimals, _ = _CODECS[type(record)]
    out: dict[str, Any] = {"k": KIND[type(record)]}
    for name in names:
        out[name] = getattr(record, name)
    for name in decimals:
        value = out[name]
        if value is not None:
            out[name] = str(value)
    return out


def from_jsonable(data: Any) -> Record:
    """The inverse of :func:`to_jsonable`; ``RecordDecodeError`` on anything malformed."""
    if not isinstance(data, dict):
        raise RecordDecodeError("a record must be a JSON object")
    kind = data.get("k")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RecordDecodeError(f"unknown record kind {kind!r}")
    names, _, decoders = _CODECS[cls]
    if len(data) != len(names) + 1 or any(name not in data for name in names):
        missing = sorted(set(names) - set(data))
        extra = sorted(set(data) - set(names) - {"k"})
        raise RecordDecodeError(f"{kind}: missing fields {missing}, unknown fields {extra}")
    kwargs = {}
    for name in names:
        try:
            kwargs[name] = decoders[name](data[name])
        except RecordDecodeError as exc:
            raise RecordDecodeError(f"{kind}.{name}: {exc}") from None
    try:
        record: Record = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecordDecodeError(f"{kind}: {exc}") from None
    return record


def encode(record: Record) -> bytes:
    """The stable JSON bytes of a record (sorted keys, no trailing newline)."""
    return orjson.dumps(to_jsonable(record), option=orjson.OPT_SORT_KEYS)


def decode(data: bytes | str) -> Record:
    """The record encoded by :func:`encode`."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RecordDecodeError(f"not JSON: {exc}") from None
    return from_jsonable(parsed)
