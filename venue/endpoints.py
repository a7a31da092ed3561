"""Raw ASGI endpoints: the REST fast path and the three kinds of websocket.

Raw ASGI rather than Starlette's Request/WebSocket objects because this is the benchmarks' hot
path: the REST endpoint reads the body, hands bytes to the sans-IO :class:`RestApi` and writes
its reply, nothing else.  Websockets: ``/ws-api/v3`` (spot WebSocket API and spot user data),
``/private/ws?listenKey=…&events=…`` (futures user data), ``/ws/<streams>`` and
``/stream?streams=…`` (market streams, also ``SUBSCRIBE``/``UNSUBSCRIBE`` messages).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
import trio
from starlette.types import Receive, Scope, Send

from spark.venue.errors import InvalidListenKey, VenueError
from spark.venue.host import VenueHost
from spark.venue.hub import CLOSE_GOING_AWAY, Connection, Frame
from spark.venue.rest import RestRequest
from spark.venue.wsapi import WsApiSession

_APIKEY_HEADER = b"x-mbx-apikey"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


class RestEndpoint:
    """``/api/v3/…`` and ``/fapi/v1/…``: bytes in, :class:`RestApi`, bytes out."""

    def __init__(self, venue: VenueHost) -> None:
        self.venue = venue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        api_key = None
        for name, value in scope["headers"]:
            if name == _APIKEY_HEADER:
                api_key = value.decode("latin-1")
                break
        venue = self.venue
        request = RestRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("utf-8", "replace"),
            body=body.decode("utf-8", "replace"),
            api_key=api_key,
            client=_client(scope),
        )
        reply = venue.rest.handle(request, venue.now_ms())
        venue.flush()
        if reply.delay_s > 0:
            await trio.sleep(reply.delay_s)
        headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


async def deny(scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
    """Refuse a websocket handshake with an HTTP status and Binance's JSON error."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "websocket.http.response.body", "body": orjson.dumps(body)})
    else:  # pragma: no cover - hypercorn supports the extension
        await send({"type": "websocket.close", "code": 1008})


class SocketEndpoint:
    """Shared websocket life cycle: accept, writer + reader, close with the chosen code."""

    def __init__(self, venue: VenueHost) -> None:
        self.venue = venue

    async def serve(self, scope: Scope, receive: Receive, send: Send, conn: Connection,
                    on_text: Callable[[Connection, str], None] | None) -> None:
        await send({"type": "websocket.accept"})
        venue = self.venue
        venue.hub.add(conn)

        async def send_text(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        client_gone = False
        try:
            async with trio.open_nursery() as nursery:
                conn.scope = nursery.cancel_scope
                if conn.dead:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(venue.hub.write, conn, send_text)
                nursery.start_soon(self._lifetime, conn)
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        client_gone = True
                        break
                    if on_text is not None:
                        text = message.get("text")
                        if text is None:
                            text = (message.get("bytes") or b"").decode("utf-8", "replace")
                        on_text(conn, text)
                nursery.cancel_scope.cancel()
        finally:
            venue.hub.remove(conn)
            conn.dead = True
            if not client_gone:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0), \
                        contextlib.suppress(OSError, trio.BrokenResourceError):
                    await send({"type": "websocket.close", "code": conn.close_code,
                                "reason": conn.close_reason})

    async def _lifetime(self, conn: Connection) -> None:
        """Binance ends every connection after 24 hours; so do we."""
        await trio.sleep(self.venue.max_connection_s)
        conn.kill(CLOSE_GOING_AWAY, "connection lifetime reached")

    async def _connect(self, receive: Receive) -> bool:
        message = await receive()
        return bool(message["type"] == "websocket.connect")


class WsApiEndpoint(SocketEndpoint):
    """``/ws-api/v3``: requests in, responses and ``{"subscriptionId", "event"}`` out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._connect(receive):
            return
        venue = self.venue
        core = venue.core
        client = _client(scope)
        now = core.now(venue.now_ms())
        try:
            core.limiter.admit(f"api:{client}", 2, now)  # connecting costs 2 weight
        except VenueError as exc:
            await deny(scope, send, exc.status, exc.body())
            return
        rate_limits = _query(scope).get("returnRateLimits", "true").lower() != "false"
        session = WsApiSession(core, client=client, connected_at=now,
                               return_rate_limits=rate_limits)
        conn = Connection(capacity=venue.queue_size, user_data=True, session=session)
        await self.serve(scope, receive, send, conn, self._on_text)

    def _on_text(self, conn: Connection, text: str) -> None:
        assert conn.session is not None
        for frame in conn.session.handle(text, self.venue.now_ms()):
            conn.offer(Frame.CONTROL, frame)
        self.venue.flush()


class FuturesUserEndpoint(SocketEndpoint):
    """``/private/ws?listenKey=…&events=A/B``: futures user data of a live listenKey."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._connect(receive):
            return
        venue = self.venue
        query = _query(scope)
        key = query.get("listenKey", "")
        if venue.core.listen_keys.account_of(key, venue.core.now(venue.now_ms())) is None:
            await deny(scope, send, 400, InvalidListenKey().body())
            return
        wanted = query.get("events")
        events = frozenset(e for e in wanted.split("/") if e) if wanted else None
        conn = Connection(capacity=venue.queue_size, user_data=True, listen_key=key,
                          events=events)
        await self.serve(scope, receive, send, conn, None)


class MarketEndpoint(SocketEndpoint):
    """``/ws/<stream>[/<stream>…]`` (raw payloads) and ``/stream?streams=a/b`` (combined)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._connect(receive):
            return
        path: str = scope["path"]
        if path == "/stream":
            combined = True
            names = [s for s in _query(scope).get("streams", "").split("/") if s]
        else:
            combined = False
            names = [s for s in path.removeprefix("/ws").split("/") if s]
        bad = [n for n in names if n not in self.venue.streams]
        if bad:
            await deny(scope, send, 400, {"code": -1121, "msg": f"Invalid stream: {bad[0]}"})
            return
        conn = Connection(capacity=self.venue.queue_size, user_data=False)
        conn.combined = combined
        self.venue.hub.subscribe(conn, names, combined=combined)
        await self.serve(scope, receive, send, conn, self._on_text)

    def _on_text(self, conn: Connection, text: str) -> None:
        """Binance's live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS``."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.offer(Frame.CONTROL, orjson.dumps(
                {"error": {"code": 3, "msg": "Invalid JSON: expected value"}, "id": None}))
            return
        request_id = request.get("id") if isinstance(request, dict) else None
        method = request.get("method") if isinstance(request, dict) else None
        params = request.get("params", []) if isinstance(request, dict) else []
        combined = conn.combined  # SUBSCRIBEd streams keep the framing
        reply: dict[str, Any]
        if method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(conn.streams), "id": request_id}
        elif method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
            bad = [p for p in params if p not in self.venue.streams]
            if bad:
                reply = {"error": {"code": 2, "msg": f"Invalid request: unknown stream {bad[0]}"},
                         "id": request_id}
            elif method == "SUBSCRIBE":
                self.venue.hub.subscribe(conn, params, combined=combined)
                reply = {"result": None, "id": request_id}
            else:
                self.venue.hub.unsubscribe(conn, params)
                reply = {"result": None, "id": request_id}
        else:
            reply = {"error": {"code": 2, "msg": "Invalid request: unknown method"},
                     "id": request_id}
        conn.offer(Frame.CONTROL, orjson.dumps(reply))
