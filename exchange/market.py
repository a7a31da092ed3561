"""Typed market-stream events (``bookTicker``, ``trade``) and their decoder.

Frames come bare from ``/ws/<stream>`` or wrapped as ``{"stream": "...", "data": {...}}`` from
``/stream?streams=…``; spot ``bookTicker`` frames carry no ``"e"`` field at all. A
``serverShutdown`` may arrive on any market connection (raw, or as stream
``!serverShutdown``). Anything that is not Binance's shape raises
:class:`~spark.exchange.errors.MalformedFrame` and nothing else.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import orjson

from spark.exchange.errors import MalformedFrame
from spark.exchange.events import ServerShutdown, UnknownEvent, unknown_event
from spark.exchange.fields import as_bool, as_int, as_str, opt_int
from spark.exchange.numbers import to_decimal

__all__ = [
    "BookTicker",
    "MarketEvent",
    "MarketTrade",
    "decode_market_frame",
    "decode_market_message",
]


@attrs.frozen(slots=True)
class BookTicker:
    """``<symbol>@bookTicker``: best bid/ask. Spot sends no event time; futures does."""

    symbol: str
    update_id: int
    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    event_time: int | None = None
    transaction_time: int | None = None
    stream: str | None = None


@attrs.frozen(slots=True)
class MarketTrade:
    """``<symbol>@trade``."""

    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    trade_time: int
    event_time: int
    is_buyer_maker: bool
    stream: str | None = None


MarketEvent = BookTicker | MarketTrade | ServerShutdown | UnknownEvent


def _book_ticker(e: dict[str, Any], stream: str | None) -> BookTicker:
    d = to_decimal
    return BookTicker(
        as_str(e["s"]),
        as_int(e["u"]),
        d(e["b"]),
        d(e["B"]),
        d(e["a"]),
        d(e["A"]),
        opt_int(e.get("E")),
        opt_int(e.get("T")),
        stream,
    )


def _market_trade(e: dict[str, Any], stream: str | None) -> MarketTrade:
    return MarketTrade(
        as_str(e["s"]),
        as_int(e["t"]),
        to_decimal(e["p"]),
        to_decimal(e["q"]),
        as_int(e["T"]),
        as_int(e["E"]),
        as_bool(e["m"]),
        stream,
    )


def _market(obj: Any) -> MarketEvent:
    if obj.__class__ is not dict:
        raise TypeError("frame is not a JSON object")
    stream: str | None = None
    data = obj
    if "stream" in obj and "data" in obj:
        stream = as_str(obj["stream"])
        data = obj["data"]
        if data.__class__ is not dict:
            raise TypeError("data is not a JSON object")
    kind = data.get("e")
    if kind is None:
        # Spot bookTicker frames carry no "e".
        if "u" in data and "b" in data and "a" in data:
            return _book_ticker(data, stream)
        raise TypeError("market event without a type")
    if kind == "bookTicker":
        return _book_ticker(data, stream)
    if kind == "trade":
        return _market_trade(data, stream)
    if kind == "serverShutdown":
        return ServerShutdown(opt_int(data.get("E")))
    return unknown_event(data, None, stream)


def decode_market_message(obj: Any, raw: str | bytes = b"") -> MarketEvent:
    try:
        return _market(obj)
    except Exception as exc:
        raise MalformedFrame(f"{type(exc).__name__}: {exc}", raw or repr(obj)) from None


def decode_market_frame(raw: str | bytes) -> MarketEvent:
    """Decode one market-stream frame (raw or combined); raises only :class:`MalformedFrame`."""
    try:
        return _market(orjson.loads(raw))
    except Exception as exc:
        raise MalformedFrame(f"{type(exc).__name__}: {exc}", raw) from None
