"""User-data and market-stream events in Binance's exact wire shape.

Spot: ``executionReport`` (user-data-stream.md; every field incl. ``I``, ``t`` = -1 without a
trade, ``w``, ``m``, ``O``, ``Z``, ``Y``, ``C``) and ``outboundAccountPosition``.  USD-M futures:
``ORDER_TRADE_UPDATE`` (order fields nested under ``o``), ``ACCOUNT_UPDATE`` and
``listenKeyExpired``.  Market: ``bookTicker`` and ``trade``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from spark.venue.book import Market
from spark.venue.numbers import ZERO, at, fmt8, plain
from spark.venue.orders import Order, Trade
from spark.venue.outbox import Payload


def execution_report(
    order: Order,
    *,
    exec_type: str,
    now: int,
    exec_id: int,
    trade: Trade | None = None,
    client_order_id: str | None = None,
    orig_client_order_id: str = "",
) -> Payload:
    """One spot ``executionReport``.

    On a cancel Binance puts the *cancel request's* client id in ``c`` and the order's own in
    ``C``; ``client_order_id`` / ``orig_client_order_id`` carry that.
    """
    last_qty = trade.qty if trade else ZERO
    last_price = trade.price if trade else ZERO
    report: Payload = {
        "e": "executionReport",
        "E": now,
        "s": order.symbol,
        "c": client_order_id if client_order_id is not None else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": fmt8(order.orig_qty),
        "p": fmt8(order.price),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": orig_client_order_id,
        "x": exec_type,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": fmt8(last_qty),
        "z": fmt8(order.executed_qty),
        "L": fmt8(last_price),
        "n": fmt8(trade.commission) if trade else "0",
        "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else now,
        "t": trade.id if trade else -1,
        "I": exec_id,
        "w": order.on_book,
        "m": trade.is_maker if trade else False,
        "M": trade is not None,
        "O": order.time,
        "Z": fmt8(order.cum_quote),
        "Y": fmt8(trade.quote_qty if trade else ZERO),
        "Q": fmt8(order.quote_order_qty),
    }
    if order.on_book:
        report["W"] = order.time
    report["V"] = "NONE"
    return report


def account_position(now: int, rows: Iterable[tuple[str, Decimal, Decimal]]) -> Payload:
    """``outboundAccountPosition`` with the assets the change touched."""
    return {
        "e": "outboundAccountPosition",
        "E": now,
        "u": now,
        "B": [{"a": a, "f": fmt8(f), "l": fmt8(lk)} for a, f, lk in rows],
    }


def order_trade_update(
    order: Order, *, exec_type: str, now: int, market: Market, trade: Trade | None = None,
) -> Payload:
    """USD-M ``ORDER_TRADE_UPDATE``; commission fields only appear with a trade (as on Binance)."""
    spec = market.spec
    avg = order.cum_quote / order.executed_qty if order.executed_qty > 0 else ZERO
    o: Payload = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": at(order.orig_qty, spec.step_size),
        "p": at(order.price, spec.tick_size),
        "ap": plain(avg),
        "sp": "0",
        "x": exec_type,
        "X": order.status,
        "i": order.order_id,
        "l": at(trade.qty if trade else ZERO, spec.step_size),
        "z": at(order.executed_qty, spec.step_size),
        "L": at(trade.price if trade else ZERO, spec.tick_size),
    }
    if trade is not None:
        o["N"] = trade.commission_asset
        o["n"] = plain(trade.commission)
    o.update(
        {
            "T": trade.time if trade else now,
            "t": trade.id if trade else 0,
            "b": "0",
            "a": "0",
            "m": trade.is_maker if trade else False,
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": order.type,
            "ps": "BOTH",
            "cp": False,
            "rp": plain(trade.realized_pnl if trade else ZERO),
            "pP": False,
            "si": 0,
            "ss": 0,
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
        }
    )
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o}


def account_update(
    now: int,
    *,
    asset: str,
    wallet: Decimal,
    positions: Iterable[tuple[str, Decimal, Decimal, Decimal]],
    reason: str = "ORDER",
) -> Payload:
    """USD-M ``ACCOUNT_UPDATE``: ``positions`` are (symbol, amount, entry price, unrealized)."""
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now,
        "T": now,
        "a": {
            "m": reason,
            "B": [{"a": asset, "wb": plain(wallet), "cw": plain(wallet), "bc": "0"}],
            "P": [
                {
                    "s": sym,
                    "pa": plain(amount),
                    "ep": plain(entry),
                    "bep": plain(entry),
                    "cr": "0",
                    "up": plain(unrealized),
                    "mt": "cross",
                    "iw": "0",
                    "ps": "BOTH",
                }
                for sym, amount, entry, unrealized in positions
            ],
        },
    }


def listen_key_expired(now: int, key: str) -> Payload:
    """Binance documents ``E`` of this event as a string; we send it the same way."""
    return {"e": "listenKeyExpired", "E": str(now), "listenKey": key}


def book_ticker(market: Market) -> Payload:
    bid, bid_qty = market.top("SELL")
    ask, ask_qty = market.top("BUY")
    return {
        "u": market.update_id,
        "s": market.spec.symbol,
        "b": fmt8(bid),
        "B": fmt8(bid_qty),
        "a": fmt8(ask),
        "A": fmt8(ask_qty),
    }


def public_trade(trade: Trade, now: int) -> Payload:
    """``<symbol>@trade``; ``m`` says whether the *buyer* was the maker."""
    buyer_maker = trade.is_maker if trade.side == "BUY" else not trade.is_maker
    return {
        "e": "trade",
        "E": now,
        "s": trade.symbol,
        "t": trade.id,
        "p": fmt8(trade.price),
        "q": fmt8(trade.qty),
        "T": trade.time,
        "m": buyer_maker,
        "M": True,
    }
