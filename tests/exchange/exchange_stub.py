"""A tiny scripted Binance-shaped server for the exchange tests: real HTTP and websockets.

It is an ASGI app served by hypercorn's Trio worker on 127.0.0.1 port 0, so the client under
test goes through its real stack (httpx → ``Http11Transport`` → sockets, trio-websocket →
wsproto).
Tests script replies per route and read back what the server received.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import attrs
import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

SIM_KEY = "sim-key"
SIM_SECRET = "sim-secret"


@attrs.frozen
class Reply:
    status: int = 200
    body: Any = attrs.field(factory=dict)  # JSON-serialisable, or bytes sent as-is
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)


@attrs.frozen
class Seen:
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]
    at: float  # trio.current_time() when the request was complete

    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query or self.body.decode(), keep_blank_values=True))

    def signature_ok(self, secret: str = SIM_SECRET) -> bool:
        """Binance's REST rule: HMAC over query string + body, signature stripped."""
        payload = self.query + self.body.decode()
        head, sep, sig = payload.rpartition("&signature=")
        if not sep:
            return False
        expected = hmac.new(secret.encode(), head.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, sig)


Handler = Callable[[Seen], Awaitable[Reply]]
WsHandler = Callable[[Any, Callable[[str], Awaitable[None]]], Awaitable[None]]


class VenueStub:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply] | Handler] = {}
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self.ws_url = ""
        self.ws_routes: dict[str, WsHandler] = {}
        self.server_time_ms: Callable[[], int] | None = None

    # --- scripting -----------------------------------------------------------------------------

    def reply(self, method: str, path: str, *replies: Reply) -> None:
        """Successive requests get successive replies; the last one repeats."""
        self.routes[(method, path)] = list(replies)

    def handle(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        seen = Seen(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            body,
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            trio.current_time(),
        )
        self.seen.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = await self._reply_for(seen)
            if reply.delay_s:
                await trio.sleep(reply.delay_s)
        finally:
            self.in_flight -= 1
        payload = reply.encoded()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _reply_for(self, seen: Seen) -> Reply:
        route = self.routes.get((seen.method, seen.path))
        if route is None:
            if seen.path.endswith("/time"):
                now = self.server_time_ms() if self.server_time_ms else int(trio.current_time())
                return Reply(body={"serverTime": now})
            return Reply(404, {"code": -1, "msg": "no route in stub"})
        if callable(route):
            return await route(seen)
        return route.pop(0) if len(route) > 1 else route[0]

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        qs = scope["query_string"].decode()
        handler = self.ws_routes.get(path)
        msg = await receive()  # websocket.connect
        assert msg["type"] == "websocket.connect"
        if handler is None:
            await send({"type": "websocket.close", "code": 4404})
            return
        await send({"type": "websocket.accept"})

        async def send_text(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        conn = WsConn(path, qs, receive, send_text)
        try:
            await handler(conn, send_text)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(
                Exception  # already closed by the client
            ):
                await send({"type": "websocket.close", "code": 1000})


@attrs.define
class WsConn:
    path: str
    query: str
    _receive: Any
    send: Callable[[str], Awaitable[None]]

    async def recv(self) -> str | None:
        """Next text message, or None when the client went away."""
        while True:
            msg = await self._receive()
            if msg["type"] == "websocket.disconnect":
                return None
            if msg["type"] == "websocket.receive":
                return msg.get("text") or (msg.get("bytes") or b"").decode()


async def start_stub(nursery: trio.Nursery, stub: VenueStub | None = None) -> VenueStub:
    stub = stub or VenueStub()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    config.keep_alive_timeout = 30
    binds: list[str] = await nursery.start(partial(serve, stub, config, mode="asgi"))
    stub.url = binds[0]
    stub.ws_url = "ws://" + binds[0].removeprefix("http://")
    return stub


def free_port_url() -> str:
    """An http URL on which nothing listens (bound then closed, port 0 → OS-chosen)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
