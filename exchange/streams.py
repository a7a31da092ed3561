"""Market-stream and futures user-data URLs, and pumps that read them.

URLs follow the venue profile (:mod:`spark.exchange.venues`): one stream is ``/ws/<stream>``,
several are ``/stream?streams=a/b`` (frames then come wrapped as ``{"stream", "data"}``); the
futures user-data socket is ``/private/ws?listenKey=…&events=A/B/C`` (the old
``/ws/<listenKey>`` is retired).

The listenKey is a bearer credential; :func:`redact_url` strips it for logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import quote

import trio

from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.exchange.errors import MalformedFrame
from spark.exchange.events import UserEvent, decode_user_frame
from spark.exchange.market import MarketEvent, decode_market_frame
from spark.exchange.venues import VenueProfile
from spark.exchange.wsconn import FramePump, Inbound

__all__ = [
    "FUTURES_USER_EVENTS",
    "book_ticker_stream",
    "futures_user_data_url",
    "market_pump",
    "market_stream_url",
    "redact_url",
    "trade_stream",
    "user_data_pump",
]

FUTURES_USER_EVENTS: tuple[str, ...] = ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "listenKeyExpired")

_STREAM_RE = re.compile(r"^[A-Za-z0-9!@_]+$")


def book_ticker_stream(symbol: str) -> str:
    return f"{symbol.lower()}@bookTicker"


def trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def market_stream_url(profile: VenueProfile, streams: Sequence[str]) -> str:
    """``/ws/<stream>`` for one stream, ``/stream?streams=a/b`` for several."""
    if not streams:
        raise ValueError("at least one stream is needed")
    for s in streams:
        if not _STREAM_RE.match(s):
            raise ValueError(f"bad stream name {s!r}")
    base = profile.market_ws_url
    if len(streams) == 1:
        return f"{base}/ws/{streams[0]}"
    return f"{base}/stream?streams={'/'.join(streams)}"


def futures_user_data_url(
    profile: VenueProfile, listen_key: str, events: Iterable[str] = FUTURES_USER_EVENTS
) -> str:
    """``…/private/ws?listenKey=<key>&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/…``."""
    if profile.user_data_ws_url is None:
        raise ValueError(f"{profile.mode} has no futures user-data socket")
    if not listen_key:
        raise ValueError("empty listenKey")
    wanted = "/".join(events)
    return (
        f"{profile.user_data_ws_url}?listenKey={quote(listen_key, safe='')}"
        f"&events={quote(wanted, safe='/_')}"
    )


def redact_url(url: str) -> str:
    """``url`` with any listenKey replaced by ``***`` (safe to log)."""
    return re.sub(r"(?i)(listenKey=)[^&]*", r"\1***", url)


def market_pump(
    send: trio.MemorySendChannel[Inbound[MarketEvent]],
    *,
    clock: WallClock = SYSTEM_CLOCK,
    on_malformed: Callable[[MalformedFrame], None] | None = None,
) -> FramePump[MarketEvent]:
    """A pump for bookTicker/trade streams, raw or combined."""
    return FramePump(decode_market_frame, send, clock=clock, on_malformed=on_malformed)


def user_data_pump(
    send: trio.MemorySendChannel[Inbound[UserEvent]],
    *,
    clock: WallClock = SYSTEM_CLOCK,
    on_malformed: Callable[[MalformedFrame], None] | None = None,
) -> FramePump[UserEvent]:
    """A pump for the futures user-data socket."""
    return FramePump(decode_user_frame, send, clock=clock, on_malformed=on_malformed)
