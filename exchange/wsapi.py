"""Spot user data over the WebSocket API: a request/response session plus the event pump.

One connection carries both our requests' responses and the user-data events. The session's
:meth:`WsApiSession.run` is the only reader: it routes responses to the request waiting for
that id and pushes events into the owner's channel (the :mod:`spark.exchange.wsconn` rules:
decode at once, ``send_nowait``, never stall the socket).

The connection owner (the listenKey-keeper/ws-reader actors, with reconnects, backoff and
stall detection) is built on top of these pieces::

    async with user_data_session(profile.ws_api_url, creds, send, timestamp=ts) as (s, sub_id):
        ...  # events arrive on the receive side of ``send``
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from trio_websocket import WebSocketConnection

from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.exchange.credentials import Credentials
from spark.exchange.errors import MalformedFrame, UnknownExecutionStatus
from spark.exchange.events import UserEvent
from spark.exchange.wsapi_codec import (
    WsApiRequest,
    WsApiResponse,
    decode_ws_api_frame,
    ping_request,
    session_logon_request,
    subscribe_request,
    subscribe_signature_request,
    time_request,
    unsubscribe_request,
)
from spark.exchange.wsconn import Inbound, InboundSink, open_ws

__all__ = ["WsApiSession", "user_data_session"]


class _Slot:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: WsApiResponse | None = None


class WsApiSession:
    """Requests over one WS-API connection; :meth:`run` must be running in a nursery."""

    def __init__(
        self,
        ws: WebSocketConnection,
        events: trio.MemorySendChannel[Inbound[UserEvent]],
        *,
        clock: WallClock = SYSTEM_CLOCK,
        on_malformed: Callable[[MalformedFrame], None] | None = None,
        request_timeout_s: float = 10.0,
        id_prefix: str = "spark",
    ) -> None:
        self._ws = ws
        self._pending: dict[str, _Slot] = {}
        self._ids = (f"{id_prefix}-{n}" for n in itertools.count(1))
        self._timeout = request_timeout_s
        self.sink: InboundSink[UserEvent] = InboundSink(
            events, clock=clock, on_malformed=on_malformed
        )
        self.unmatched_responses = 0

    def next_id(self) -> str:
        return next(self._ids)

    def feed(self, raw: str | bytes) -> None:
        """Route one frame: a response to its waiter, an event to the channel. Never yields."""
        self.sink.frames += 1
        try:
            frame = decode_ws_api_frame(raw)
        except MalformedFrame as exc:
            self.sink.malformed_frame(exc)
            return
        if isinstance(frame, WsApiResponse):
            slot = self._pending.pop(str(frame.id), None)
            if slot is None:
                self.unmatched_responses += 1  # e.g. the requester timed out and left
                return
            slot.response = frame
            slot.done.set()
            return
        self.sink.deliver(frame)

    async def run(self) -> None:
        """Read until the connection closes (``ConnectionClosed`` propagates)."""
        while True:
            self.feed(await self._ws.get_message())

    async def request(self, req: WsApiRequest) -> WsApiResponse:
        """Send ``req`` and wait for its response (errors are in ``response.error``)."""
        slot = _Slot()
        self._pending[req.id] = slot
        try:
            await self._ws.send_message(req.to_json())
            with trio.move_on_after(self._timeout):
                await slot.done.wait()
        finally:
            self._pending.pop(req.id, None)
        if slot.response is None:
            raise UnknownExecutionStatus(f"WS-API {req.method} got no response in time")
        return slot.response

    async def subscribe_signature(
        self, credentials: Credentials, timestamp_ms: int, recv_window_ms: int | None = None
    ) -> int:
        """``userDataStream.subscribe.signature``; returns the subscription id."""
        req = subscribe_signature_request(self.next_id(), credentials, timestamp_ms, recv_window_ms)
        return (await self.request(req)).subscription_id()

    async def logon(
        self, credentials: Credentials, timestamp_ms: int, recv_window_ms: int | None = None
    ) -> None:
        """``session.logon`` (Ed25519 keys only)."""
        resp = await self.request(
            session_logon_request(self.next_id(), credentials, timestamp_ms, recv_window_ms)
        )
        if resp.error is not None:
            raise resp.error

    async def subscribe(self) -> int:
        """``userDataStream.subscribe`` after :meth:`logon`."""
        return (await self.request(subscribe_request(self.next_id()))).subscription_id()

    async def unsubscribe(self, subscription_id: int | None = None) -> None:
        resp = await self.request(unsubscribe_request(self.next_id(), subscription_id))
        if resp.error is not None:
            raise resp.error

    async def ping(self) -> None:
        resp = await self.request(ping_request(self.next_id()))
        if resp.error is not None:
            raise resp.error

    async def server_time(self) -> int:
        resp = await self.request(time_request(self.next_id()))
        if resp.error is not None:
            raise resp.error
        result = resp.result
        server_time = result.get("serverTime") if isinstance(result, dict) else None
        if not isinstance(server_time, int):
            raise MalformedFrame("time response without serverTime", repr(result))
        return server_time


@asynccontextmanager
async def user_data_session(
    url: str,
    credentials: Credentials,
    events: trio.MemorySendChannel[Inbound[UserEvent]],
    *,
    timestamp: Callable[[], int],
    recv_window_ms: int | None = None,
    clock: WallClock = SYSTEM_CLOCK,
    on_malformed: Callable[[MalformedFrame], None] | None = None,
    connect_timeout_s: float = 10.0,
    request_timeout_s: float = 10.0,
) -> AsyncIterator[tuple[WsApiSession, int]]:
    """Connect, start the reader, subscribe with ``userDataStream.subscribe.signature``.

    Yields ``(session, subscription_id)``. ``timestamp`` returns the server-adjusted epoch ms
    (e.g. ``lambda: rest.time_offset.timestamp(clock.now_ms())``). When the connection
    closes, the reader's ``ConnectionClosed`` cancels the body and propagates (in an
    exception group, as nurseries do).
    """
    async with open_ws(url, connect_timeout_s=connect_timeout_s) as ws, trio.open_nursery() as n:
        session = WsApiSession(
            ws, events, clock=clock, on_malformed=on_malformed, request_timeout_s=request_timeout_s
        )
        n.start_soon(session.run)
        sub_id = await session.subscribe_signature(credentials, timestamp(), recv_window_ms)
        yield session, sub_id
        n.cancel_scope.cancel()
