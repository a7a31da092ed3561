"""Fan-out of the core's events to websockets, without ever blocking the matching engine.

Every connection owns a bounded outbound queue and a writer task.  Publishing is
``send_nowait``: a connection whose queue is full is a client too slow to keep up, and it is
disconnected (code 1008) rather than silently losing events while it stays open, which is what
Binance does too.  Injected websocket faults live in the writer of user-data connections:
stalls (hold every frame, keep TCP open), duplicates (send a frame twice) and reorders (swap an
event with the next one; a lone held event is sent after a short wait, never dropped).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import orjson
import trio

from spark.venue.faults import Faults
from spark.venue.listenkeys import ListenKeys
from spark.venue.outbox import ListenKeyEnded, MarketEvent, Outgoing, UserEvent
from spark.venue.wsapi import terminated_event, wrap_event

if TYPE_CHECKING:
    from spark.venue.wsapi import WsApiSession

REORDER_WAIT_S = 0.05
"""How long a held event waits for a successor to swap with before it is sent anyway."""

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011


class Frame(enum.Enum):
    EVENT = "event"
    CONTROL = "control"
    CLOSE = "close"


Item = tuple[Frame, bytes]
Sender = Callable[[str], Awaitable[None]]


class StallGate:
    """While stalled, user-data writers hold their frames (TCP stays open, pings go on)."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()
        self.generation = 0

    @property
    def stalled(self) -> bool:
        return not self._open.is_set()

    def stall(self) -> int:
        if not self.stalled:
            self._open = trio.Event()
        self.generation += 1
        return self.generation

    def resume(self, generation: int | None = None) -> None:
        if generation is None or generation == self.generation:
            self._open.set()

    async def wait_open(self) -> None:
        await self._open.wait()


class Connection:
    """One websocket: its queue, its fate (close code) and what it listens to."""

    def __init__(self, *, capacity: int, user_data: bool, session: WsApiSession | None = None,
                 listen_key: str | None = None, events: frozenset[str] | None = None) -> None:
        self._send, self.receive = trio.open_memory_channel[Item](capacity)
        self.user_data = user_data
        self.session = session
        self.listen_key = listen_key
        self.events = events
        self.streams: dict[str, bool] = {}
        """Market streams -> combined (wrap in ``{"stream", "data"}``)?"""
        self.combined = False
        self.scope: trio.CancelScope | None = None
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.dead = False

    def offer(self, kind: Frame, data: bytes) -> None:
        if self.dead:
            return
        try:
            self._send.send_nowait((kind, data))
        except trio.WouldBlock:
            self.kill(CLOSE_POLICY, "client too slow to keep up")

    def kill(self, code: int, reason: str) -> None:
        """Disconnect now (the endpoint sends the close frame once its tasks are cancelled)."""
        if self.dead:
            return
        self.dead = True
        self.close_code, self.close_reason = code, reason
        if self.scope is not None:
            self.scope.cancel()

    def finish(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close after everything already queued has been sent."""
        if self.dead:
            return
        self.close_code, self.close_reason = code, reason
        try:
            self._send.send_nowait((Frame.CLOSE, b""))
        except trio.WouldBlock:
            self.kill(code, reason)


class Hub:
    """Who listens to what, and the writers that feed them."""

    def __init__(self, faults: Faults, listen_keys: ListenKeys) -> None:
        self.faults = faults
        self.listen_keys = listen_keys
        self.stall = StallGate()
        self.connections: set[Connection] = set()
        self.wsapi: set[Connection] = set()
        self.futures_user: dict[str, set[Connection]] = {}
        self.market: dict[str, set[Connection]] = {}

    # -- registration -----------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        if conn.session is not None:
            self.wsapi.add(conn)
        if conn.listen_key is not None:
            self.futures_user.setdefault(conn.listen_key, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.wsapi.discard(conn)
        if conn.listen_key is not None:
            peers = self.futures_user.get(conn.listen_key)
            if peers is not None:
                peers.discard(conn)
                if not peers:
                    del self.futures_user[conn.listen_key]
        self.unsubscribe(conn, list(conn.streams))

    def subscribe(self, conn: Connection, streams: Iterable[str], *, combined: bool) -> None:
        for stream in streams:
            conn.streams[stream] = combined
            self.market.setdefault(stream, set()).add(conn)

    def unsubscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            conn.streams.pop(stream, None)
            listeners = self.market.get(stream)
            if listeners is not None:
                listeners.discard(conn)
                if not listeners:
                    del self.market[stream]

    # -- publishing -------------------------------------------------------------------------
    def dispatch(self, items: list[Outgoing], now: int) -> None:
        for item in items:
            if isinstance(item, MarketEvent):
                self._market(item)
            elif isinstance(item, UserEvent):
                if item.market == "spot":
                    self._spot_user(item)
                else:
                    self._futures_user(item, now)
            else:
                self._listen_key_ended(item)

    def _market(self, item: MarketEvent) -> None:
        listeners = self.market.get(item.stream)
        if not listeners:
            return
        data = orjson.dumps(item.payload)
        wrapped = b'{"stream":"' + item.stream.encode() + b'","data":' + data + b"}"
        for conn in list(listeners):
            conn.offer(Frame.EVENT, wrapped if conn.streams.get(item.stream) else data)

    def _spot_user(self, item: UserEvent) -> None:
        data: bytes | None = None
        for conn in list(self.wsapi):
            assert conn.session is not None
            sid = conn.session.subscription_for(item.account)
            if sid is None:
                continue
            if data is None:
                data = orjson.dumps(item.payload)
            conn.offer(Frame.EVENT, wrap_event(sid, data))

    def _futures_user(self, item: UserEvent, now: int) -> None:
        data: bytes | None = None
        kind = item.payload.get("e")
        for key, conns in list(self.futures_user.items()):
            if self.listen_keys.account_of(key, now) != item.account:
                continue
            for conn in list(conns):
                if conn.events is not None and kind not in conn.events:
                    continue
                if data is None:
                    data = orjson.dumps(item.payload)
                conn.offer(Frame.EVENT, data)

    def _listen_key_ended(self, item: ListenKeyEnded) -> None:
        for conn in list(self.futures_user.pop(item.key, ())):
            if item.expired and item.payload is not None:
                conn.offer(Frame.CONTROL, orjson.dumps(item.payload))
            conn.finish(CLOSE_NORMAL, "listenKey expired" if item.expired else "listenKey closed")

    # -- admin ------------------------------------------------------------------------------
    def drop_all(self) -> int:
        victims = list(self.connections)
        for conn in victims:
            conn.kill(CLOSE_INTERNAL, "dropped")
        return len(victims)

    def terminate_subscriptions(self, now: int) -> int:
        count = 0
        for conn in list(self.wsapi):
            assert conn.session is not None
            for sid in conn.session.terminate_all():
                conn.offer(Frame.CONTROL, terminated_event(sid, now))
                count += 1
        return count

    def server_shutdown(self, now: int) -> int:
        frame = orjson.dumps({"event": {"e": "serverShutdown", "E": now}})
        for conn in list(self.wsapi):
            conn.offer(Frame.CONTROL, frame)
        return len(self.wsapi)

    # -- the writer -------------------------------------------------------------------------
    async def write(self, conn: Connection, send: Sender) -> None:
        """Feed ``conn``'s socket from its queue until a CLOSE item or cancellation.

        The hot path of every event: after one blocking ``receive`` it drains what is already
        queued with ``receive_nowait`` and checks the stall gate without awaiting while it is
        open, so a burst costs one scheduler round trip per frame (the socket write's own)
        instead of four.
        """
        receive = conn.receive
        stall = self.stall
        faults = self.faults
        while True:
            item = await receive.receive()
            while True:
                kind, data = item
                if kind is Frame.CLOSE:
                    conn.kill(conn.close_code, conn.close_reason)
                    return
                if conn.user_data:
                    if stall.stalled:
                        await stall.wait_open()
                    if kind is Frame.EVENT and faults.draw(faults.settings.ws_reorder):
                        if not await self._swap(conn, data, send):
                            conn.kill(conn.close_code, conn.close_reason)
                            return
                    else:
                        await self._send(conn, kind, data, send)
                else:
                    await send(data.decode())
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    break

    async def _swap(self, conn: Connection, held: bytes, send: Sender) -> bool:
        """Send the next event before ``held``; returns False when a CLOSE came up."""
        successor: Item | None = None
        with trio.move_on_after(REORDER_WAIT_S):
            successor = await conn.receive.receive()
        if successor is not None and successor[0] is Frame.EVENT:
            await self._send(conn, Frame.EVENT, successor[1], send)
            await self._send(conn, Frame.EVENT, held, send)
            return True
        await self._send(conn, Frame.EVENT, held, send)
        if successor is None:
            return True
        if successor[0] is Frame.CLOSE:
            return False
        await self._send(conn, successor[0], successor[1], send)
        return True

    async def _send(self, conn: Connection, kind: Frame, data: bytes, send: Sender) -> None:
        text = data.decode()
        await send(text)
        if kind is Frame.EVENT and self.faults.draw(self.faults.settings.ws_duplicate):
            await send(text)
