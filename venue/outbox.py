"""What the sans-IO core hands to the server to deliver: user-data events, market-stream events,
and the end of a futures listenKey.

The core appends to an :class:`Outbox`; the server drains it after every call into the core and
fans the items out to websockets.  Nothing here knows about sockets.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

Payload = dict[str, Any]


@attrs.frozen
class UserEvent:
    """An account event (``executionReport``, ``ORDER_TRADE_UPDATE``, ...) in Binance's shape."""

    market: Literal["spot", "futures"]
    account: str
    payload: Payload


@attrs.frozen
class MarketEvent:
    """A public stream event; ``stream`` is Binance's stream name, e.g. ``btcusdt@bookTicker``."""

    stream: str
    payload: Payload


@attrs.frozen
class ListenKeyEnded:
    """A futures listenKey stopped: expired (send ``listenKeyExpired`` first) or deleted."""

    key: str
    expired: bool
    payload: Payload | None = None


Outgoing = UserEvent | MarketEvent | ListenKeyEnded


class Outbox:
    """An append-only list the server drains."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[Outgoing] = []

    def put(self, item: Outgoing) -> None:
        self._items.append(item)

    def drain(self) -> list[Outgoing]:
        items, self._items = self._items, []
        return items

    def __len__(self) -> int:
        return len(self._items)
