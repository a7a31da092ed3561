"""Typed user-data events and the decoders that build them (the hot path).

Frames arrive in several envelopes and all of them decode here:

* spot WebSocket API user data: ``{"subscriptionId": N, "event": {...}}``
  (``serverShutdown`` on the WS API comes as ``{"event": {...}}`` without a subscription);
* futures user data: the bare event ``{"e": "ORDER_TRADE_UPDATE", ...}``;
* either of them wrapped as a combined stream ``{"stream": "...", "data": {...}}``.

Market-stream events live in :mod:`spark.exchange.market`.

Spot ``executionReport`` and futures ``ORDER_TRADE_UPDATE`` become one :class:`ExecutionEvent`,
which is what the order router consumes. Its ``execution_id`` is the dedup key:

* spot: ``str(I)``, Binance's execution id;
* futures (no ``I`` field): ``f"{orderId}:{tradeId}"`` when the event carries a trade
  (``t`` > 0, i.e. TRADE and trade-bearing CALCULATED), otherwise
  ``f"{orderId}:{x}:{X}:{T}"`` (order id, execution type, order status, transaction time).
  Both are stable across re-deliveries of the same event, which is what dedup needs; two
  distinct non-trade transitions of one order in the same millisecond with the same x and X
  would collide, which Binance does not produce.

Execution ids are unique per (product, symbol); key on all three.

Speed: one ``orjson.loads`` and direct dict indexing, no cattrs/validation layer. Amounts that
repeat (order quantity and price, zeros) go through the ``Decimal`` cache of
:mod:`spark.exchange.numbers`; amounts that change with every fill (last/cumulative quantity,
last price, quote amounts) are never added to it (they would only evict the ones that repeat)
but probe it first — a hit (zero on every non-trade event, a limit order's price as its fill
price, its quantity as the final cumulative quantity) saves a parse — and are parsed directly
otherwise. Decimals stay exact: no float anywhere. Anything that does not have Binance's shape
raises :class:`~spark.exchange.errors.MalformedFrame` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple

import attrs
import orjson

from spark.exchange.errors import MalformedFrame
from spark.exchange.fields import (
    as_bool,
    as_int,
    as_str,
    opt_bool,
    opt_decimal,
    opt_int,
    opt_str,
)
from spark.exchange.models import Balance
from spark.exchange.numbers import DECIMALS as _DECIMALS
from spark.exchange.numbers import to_decimal

__all__ = [
    "EV_AVERAGE_PRICE",
    "EV_CLIENT_ORDER_ID",
    "EV_COMMISSION",
    "EV_COMMISSION_ASSET",
    "EV_CUM_QTY",
    "EV_CUM_QUOTE_QTY",
    "EV_EVENT_TIME",
    "EV_EXECUTION_ID",
    "EV_EXECUTION_TYPE",
    "EV_IS_MAKER",
    "EV_LAST_PRICE",
    "EV_LAST_QTY",
    "EV_LAST_QUOTE_QTY",
    "EV_ORDER_ID",
    "EV_ORDER_STATUS",
    "EV_ORIG_CLIENT_ORDER_ID",
    "EV_PRICE",
    "EV_QUANTITY",
    "EV_SYMBOL",
    "EV_TRADE_ID",
    "EV_TRANSACTION_TIME",
    "AccountPosition",
    "BalanceUpdate",
    "ExecutionEvent",
    "FuturesAccountUpdate",
    "FuturesBalance",
    "FuturesPosition",
    "ListenKeyExpired",
    "ServerShutdown",
    "StreamTerminated",
    "UnknownEvent",
    "UserEvent",
    "decode_user_frame",
    "decode_user_message",
    "unknown_event",
]

Product = Literal["spot", "futures"]


class ExecutionEvent(NamedTuple):
    """One order update, spot ``executionReport`` or futures ``ORDER_TRADE_UPDATE``.

    A ``NamedTuple`` rather than a frozen attrs class on purpose: it is the one type built
    for every execution report, and with 37 fields a frozen attrs ``__init__`` (one
    ``object.__setattr__`` per field) costs more than parsing the JSON. A NamedTuple is
    just as immutable and typed and is built in one C call. Use ``_replace`` instead of
    ``attrs.evolve`` and ``_asdict`` instead of ``attrs.asdict``.

    Exchange timestamps are kept as sent (epoch ms): ``event_time`` (``E``) and
    ``transaction_time`` (``T``). Fields a product does not send are ``None``.
    """

    product: Product
    symbol: str  # s
    client_order_id: str  # c
    order_id: int  # i
    side: str  # S
    order_type: str  # o
    time_in_force: str  # f
    quantity: Decimal  # q
    price: Decimal  # p
    stop_price: Decimal  # P (spot) / sp (futures)
    execution_type: str  # x
    order_status: str  # X
    reject_reason: str  # r (spot); "NONE" on futures
    last_qty: Decimal  # l
    cum_qty: Decimal  # z
    last_price: Decimal  # L
    commission: Decimal  # n
    commission_asset: str | None  # N
    trade_id: int | None  # t; None when the event carries no trade (-1 spot, 0 futures)
    execution_id: str  # spot I; futures derived, see module docstring
    is_maker: bool  # m
    event_time: int  # E
    transaction_time: int  # T
    orig_client_order_id: str | None = None  # C (spot cancels), None when empty
    is_on_book: bool | None = None  # w (spot)
    order_creation_time: int | None = None  # O (spot)
    cum_quote_qty: Decimal | None = None  # Z (spot)
    last_quote_qty: Decimal | None = None  # Y (spot)
    quote_order_qty: Decimal | None = None  # Q (spot)
    working_time: int | None = None  # W (spot)
    order_list_id: int | None = None  # g (spot)
    expiry_reason: str | None = None  # eR (spot) / er (futures)
    average_price: Decimal | None = None  # ap (futures)
    realized_pnl: Decimal | None = None  # rp (futures)
    reduce_only: bool | None = None  # R (futures)
    position_side: str | None = None  # ps (futures)
    subscription_id: int | None = None  # WS-API envelope

    @property
    def is_trade(self) -> bool:
        """True when this event reports a fill (``x`` TRADE, or a futures CALCULATED fill)."""
        return self.trade_id is not None and self.last_qty > 0


# Positions of ExecutionEvent fields, for the hot paths that read many of them
# (spark.core.orders.apply): CPython 3.11 does not specialise attribute access through a
# NamedTuple's field descriptors (each is a generic lookup and a descriptor call), while
# ``event[EV_CUM_QTY]`` is one specialised tuple index. Literal ``Final`` ints, so mypy still
# knows each field's type; checked against ``ExecutionEvent._fields`` just below.
EV_SYMBOL: Final = 1
EV_CLIENT_ORDER_ID: Final = 2
EV_ORDER_ID: Final = 3
EV_QUANTITY: Final = 7
EV_PRICE: Final = 8
EV_EXECUTION_TYPE: Final = 10
EV_ORDER_STATUS: Final = 11
EV_LAST_QTY: Final = 13
EV_CUM_QTY: Final = 14
EV_LAST_PRICE: Final = 15
EV_COMMISSION: Final = 16
EV_COMMISSION_ASSET: Final = 17
EV_TRADE_ID: Final = 18
EV_EXECUTION_ID: Final = 19
EV_IS_MAKER: Final = 20
EV_EVENT_TIME: Final = 21
EV_TRANSACTION_TIME: Final = 22
EV_ORIG_CLIENT_ORDER_ID: Final = 23
EV_CUM_QUOTE_QTY: Final = 26
EV_LAST_QUOTE_QTY: Final = 27
EV_AVERAGE_PRICE: Final = 32


def _check_field_positions() -> None:
    for name, index in list(globals().items()):
        if name.startswith("EV_") and ExecutionEvent._fields[index] != name[3:].lower():
            raise RuntimeError(f"{name} = {index} is {ExecutionEvent._fields[index]!r}")


_check_field_positions()


@attrs.frozen(slots=True)
class AccountPosition:
    """Spot ``outboundAccountPosition``: balances that may have changed."""

    event_time: int  # E
    last_update_time: int  # u
    balances: tuple[Balance, ...]  # B[] of {a, f, l}
    subscription_id: int | None = None


@attrs.frozen(slots=True)
class BalanceUpdate:
    """Spot ``balanceUpdate``: deposit, withdrawal or transfer."""

    event_time: int
    asset: str
    delta: Decimal
    clear_time: int
    subscription_id: int | None = None


@attrs.frozen(slots=True)
class StreamTerminated:
    """``eventStreamTerminated``: this WS-API subscription has ended; re-subscribe."""

    event_time: int
    subscription_id: int | None = None


@attrs.frozen(slots=True)
class ServerShutdown:
    """``serverShutdown``: the server goes away soon; reconnect now."""

    event_time: int | None
    subscription_id: int | None = None


@attrs.frozen(slots=True)
class FuturesBalance:
    asset: str  # a
    wallet_balance: Decimal  # wb
    cross_wallet_balance: Decimal  # cw
    balance_change: Decimal  # bc


@attrs.frozen(slots=True)
class FuturesPosition:
    symbol: str  # s
    amount: Decimal  # pa
    entry_price: Decimal  # ep
    unrealized_pnl: Decimal  # up
    margin_type: str  # mt
    isolated_wallet: Decimal  # iw
    position_side: str  # ps
    accumulated_realized: Decimal | None = None  # cr


@attrs.frozen(slots=True)
class FuturesAccountUpdate:
    """Futures ``ACCOUNT_UPDATE``: balances ``a.B`` and positions ``a.P``, reason ``a.m``."""

    event_time: int
    transaction_time: int
    reason: str
    balances: tuple[FuturesBalance, ...]
    positions: tuple[FuturesPosition, ...]


@attrs.frozen(slots=True)
class ListenKeyExpired:
    """Futures ``listenKeyExpired``: create a new key and reconnect."""

    event_time: int
    listen_key: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class UnknownEvent:
    """A well-formed event of a type Spark does not use (``listStatus``,
    ``externalLockUpdate``, ``TRADE_LITE`` …). Kept, not dropped, so it can be counted."""

    event_type: str
    event_time: int | None
    payload: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    subscription_id: int | None = None
    stream: str | None = None


UserEvent = (
    ExecutionEvent
    | AccountPosition
    | BalanceUpdate
    | StreamTerminated
    | ServerShutdown
    | FuturesAccountUpdate
    | ListenKeyExpired
    | UnknownEvent
)

_known_amount: Final = _DECIMALS.get
"""A probe of the ``Decimal`` cache that never adds to it (``dict.get`` skips ``__missing__``)."""


def _parse_amount(text: str) -> Decimal:
    """An amount string not in the cache, parsed exactly; NaN/Infinity refused."""
    d = Decimal(text)
    if not d.is_finite():
        raise ValueError("non-finite amount")
    return d


def _fresh_amount(v: Any) -> Decimal:
    """An amount that changes with every fill (last/cumulative quantity, last price, quote
    amounts). It is not added to the ``Decimal`` cache — that would only evict the amounts that
    do repeat — but the cache is probed first, which costs one dict lookup and hits often: zero
    on every non-trade event, a limit order's price as its fills' price, the order quantity as
    the last cumulative quantity. Only a miss is parsed."""
    if v.__class__ is not str:
        raise TypeError("amount is not a string")
    d = _known_amount(v)
    return _parse_amount(v) if d is None else d


# ``ExecutionEvent._make`` minus its Python-level length check (one call less per frame); the
# decoders below always pass all 37 fields, and the tests compare against the keyword form.
_new_execution: Callable[[type[ExecutionEvent], tuple[Any, ...]], ExecutionEvent] = tuple.__new__

# --- user data --------------------------------------------------------------------------------


def _spot_execution(e: dict[str, Any], sub: int | None) -> ExecutionEvent:
    # Straight-line on purpose: this runs for every execution report (see module docstring).
    s, c, side, otype, tif = e["s"], e["c"], e["S"], e["o"], e["f"]
    x, status, reason, comm_asset, orig = e["x"], e["X"], e["r"], e["N"], e["C"]
    if (
        s.__class__ is not str
        or c.__class__ is not str
        or side.__class__ is not str
        or otype.__class__ is not str
        or tif.__class__ is not str
        or x.__class__ is not str
        or status.__class__ is not str
        or reason.__class__ is not str
        or (comm_asset is not None and comm_asset.__class__ is not str)
        or orig.__class__ is not str
    ):
        raise TypeError("a string field is not a string")
    order_id, trade_id, exec_id, ev_time, tx_time = e["i"], e["t"], e["I"], e["E"], e["T"]
    created, working, list_id = e["O"], e.get("W"), e.get("g")
    if (
        order_id.__class__ is not int
        or trade_id.__class__ is not int
        or exec_id.__class__ is not int
        or ev_time.__class__ is not int
        or tx_time.__class__ is not int
        or created.__class__ is not int
        or (working is not None and working.__class__ is not int)
        or (list_id is not None and list_id.__class__ is not int)
    ):
        raise TypeError("an integer field is not an integer")
    maker, on_book, expiry = e["m"], e["w"], e.get("eR")
    if (
        maker.__class__ is not bool
        or on_book.__class__ is not bool
        or (expiry is not None and expiry.__class__ is not str)
    ):
        raise TypeError("a boolean field is not a boolean")
    # Amounts that change with every fill: see _fresh_amount. Inlined here (five per frame).
    last_qty, cum_qty, last_price, cum_quote, last_quote = e["l"], e["z"], e["L"], e["Z"], e["Y"]
    if (
        last_qty.__class__ is not str
        or cum_qty.__class__ is not str
        or last_price.__class__ is not str
        or cum_quote.__class__ is not str
        or last_quote.__class__ is not str
    ):
        raise TypeError("an amount is not a string")
    known = _known_amount  # a hit is a finite Decimal (zero is falsy: compare with None)
    hit = known(last_qty)
    last_qty = _parse_amount(last_qty) if hit is None else hit
    hit = known(cum_qty)
    cum_qty = _parse_amount(cum_qty) if hit is None else hit
    hit = known(last_price)
    last_price = _parse_amount(last_price) if hit is None else hit
    hit = known(cum_quote)
    cum_quote = _parse_amount(cum_quote) if hit is None else hit
    hit = known(last_quote)
    last_quote = _parse_amount(last_quote) if hit is None else hit
    # Amounts fixed per order (quantity, price) or mostly zero go through the cache.
    d = _DECIMALS
    quote_qty = e.get("Q")
    return _new_execution(ExecutionEvent, (
        "spot",
        s,
        c,
        order_id,
        side,
        otype,
        tif,
        d[e["q"]],
        d[e["p"]],
        d[e["P"]],
        x,
        status,
        reason,
        last_qty,
        cum_qty,
        last_price,
        d[e["n"]],
        comm_asset,
        None if trade_id < 0 else trade_id,
        str(exec_id),
        maker,
        ev_time,
        tx_time,
        orig or None,
        on_book,
        created,
        cum_quote,
        last_quote,
        None if quote_qty is None else d[quote_qty],
        working,
        list_id,
        expiry,
        None,
        None,
        None,
        None,
        sub,
    ))


def _futures_execution(e: dict[str, Any], sub: int | None) -> ExecutionEvent:
    o = e["o"]
    if o.__class__ is not dict:
        raise TypeError("o must be an object")
    d = _DECIMALS
    order_id = as_int(o["i"])
    t = as_int(o.get("t", 0))
    x = as_str(o["x"])
    status = as_str(o["X"])
    trade_time = as_int(o["T"])
    exec_id = f"{order_id}:{t}" if t > 0 else f"{order_id}:{x}:{status}:{trade_time}"
    er = o.get("er")
    ap, rp = o.get("ap"), o.get("rp")
    return _new_execution(ExecutionEvent, (
        "futures",
        as_str(o["s"]),
        as_str(o["c"]),
        order_id,
        as_str(o["S"]),
        as_str(o["o"]),
        as_str(o["f"]),
        d[o["q"]],
        d[o["p"]],
        d[o.get("sp", "0")],
        x,
        status,
        "NONE",
        _fresh_amount(o["l"]),
        _fresh_amount(o["z"]),
        _fresh_amount(o["L"]),
        d[o.get("n", "0")],
        opt_str(o.get("N")),
        t if t > 0 else None,
        exec_id,
        as_bool(o.get("m", False)),
        as_int(e["E"]),
        trade_time,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None if er is None else str(as_int(er) if er.__class__ is int else as_str(er)),
        None if ap is None else _fresh_amount(ap),
        None if rp is None else _fresh_amount(rp),
        opt_bool(o.get("R")),
        opt_str(o.get("ps")),
        sub,
    ))


def _account_position(e: dict[str, Any], sub: int | None) -> AccountPosition:
    return AccountPosition(
        as_int(e["E"]),
        as_int(e["u"]),
        tuple(Balance(as_str(b["a"]), to_decimal(b["f"]), to_decimal(b["l"])) for b in e["B"]),
        sub,
    )


def _balance_update(e: dict[str, Any], sub: int | None) -> BalanceUpdate:
    return BalanceUpdate(as_int(e["E"]), as_str(e["a"]), to_decimal(e["d"]), as_int(e["T"]), sub)


def _terminated(e: dict[str, Any], sub: int | None) -> StreamTerminated:
    return StreamTerminated(as_int(e["E"]), sub)


def _shutdown(e: dict[str, Any], sub: int | None) -> ServerShutdown:
    return ServerShutdown(opt_int(e.get("E")), sub)


def _futures_account(e: dict[str, Any], sub: int | None) -> FuturesAccountUpdate:
    a = e["a"]
    if a.__class__ is not dict:
        raise TypeError("a must be an object")
    d = to_decimal
    balances = tuple(
        FuturesBalance(as_str(b["a"]), d(b["wb"]), d(b["cw"]), d(b.get("bc", "0")))
        for b in a.get("B", ())
    )
    positions = tuple(
        FuturesPosition(
            as_str(p["s"]),
            d(p["pa"]),
            d(p["ep"]),
            d(p["up"]),
            as_str(p["mt"]),
            d(p["iw"]),
            as_str(p["ps"]),
            opt_decimal(p.get("cr")),
        )
        for p in a.get("P", ())
    )
    return FuturesAccountUpdate(as_int(e["E"]), as_int(e["T"]), as_str(a["m"]), balances, positions)


def _listen_key_expired(e: dict[str, Any], sub: int | None) -> ListenKeyExpired:
    return ListenKeyExpired(as_int(e["E"]), opt_str(e.get("listenKey")))


_USER_DECODERS: Final[dict[str, Any]] = {
    "executionReport": _spot_execution,
    "ORDER_TRADE_UPDATE": _futures_execution,
    "outboundAccountPosition": _account_position,
    "balanceUpdate": _balance_update,
    "eventStreamTerminated": _terminated,
    "serverShutdown": _shutdown,
    "ACCOUNT_UPDATE": _futures_account,
    "listenKeyExpired": _listen_key_expired,
}


def unknown_event(e: dict[str, Any], sub: int | None, stream: str | None) -> UnknownEvent:
    """A well-formed event of a type without its own decoder."""
    kind = e.get("e")
    if kind.__class__ is not str:
        raise TypeError("event without a type")
    return UnknownEvent(kind, opt_int(e.get("E")), e, sub, stream)


def _user(obj: Any) -> UserEvent:
    if obj.__class__ is not dict:
        raise TypeError("frame is not a JSON object")
    event = obj.get("event")
    sub: int | None = None
    if event is not None:
        sub = obj.get("subscriptionId")
        if sub is not None and sub.__class__ is not int:
            raise TypeError("subscriptionId is not an integer")
    elif "data" in obj:
        event = obj["data"]
    else:
        event = obj
    if event.__class__ is not dict:
        raise TypeError("event is not a JSON object")
    kind = event.get("e")
    if kind == "executionReport":  # the hot path: skip the table lookup
        return _spot_execution(event, sub)
    decoder = _USER_DECODERS.get(kind)  # type: ignore[arg-type]
    if decoder is None:
        return unknown_event(event, sub, None)
    return decoder(event, sub)  # type: ignore[no-any-return]


def decode_user_message(obj: Any, raw: str | bytes = b"") -> UserEvent:
    """Decode an already-parsed user-data message (the WS-API reader parses once)."""
    try:
        return _user(obj)
    except Exception as exc:
        raise MalformedFrame(f"{type(exc).__name__}: {exc}", raw or repr(obj)) from None


def decode_user_frame(raw: str | bytes) -> UserEvent:
    """Decode one user-data websocket frame; raises only :class:`MalformedFrame`."""
    try:
        return _user(orjson.loads(raw))
    except Exception as exc:
        raise MalformedFrame(f"{type(exc).__name__}: {exc}", raw) from None
