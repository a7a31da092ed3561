"""``Http11Transport`` against raw Trio TCP/TLS servers written here (port 0).

The server parses requests with h11 but writes its responses as raw bytes, so each test can
misbehave exactly as a real venue or a middlebox might: close an idle keep-alive connection,
drop the connection after reading a request, never answer, never read, add stray bytes.
"""

from __future__ import annotations

import math
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import httpx
import orjson
import pytest
import trio

from spark.exchange.credentials import Credentials
from spark.exchange.errors import TransportError, UnknownExecutionStatus
from spark.exchange.models import OrderAck
from spark.exchange.rest import RestClient, RestConfig
from spark.exchange.transport import Http11Transport, RequestTemplate, default_ssl_context
from spark.exchange.venues import venue_profile

STARTED = "http11.send_request_headers.started"
BODY_COMPLETE = "http11.send_request_body.complete"


@attrs.define
class Got:
    conn: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class RawServer:
    """Answers by path; counts connections and keeps what it received."""

    url: str = ""
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    requests: list[Got] = attrs.field(factory=list)
    wire: dict[int, bytearray] = attrs.field(factory=dict)
    errors: list[BaseException] = attrs.field(factory=list)
    idle_closed: trio.Event = attrs.field(factory=trio.Event)
    close_every_connection_after_reply: bool = False  # keep-alive reply, then close it
    barrier_n: int = 0
    barrier_waiting: int = 0
    barrier_open: trio.Event = attrs.field(factory=trio.Event)
    sni: list[str | None] = attrs.field(factory=list)
    alpn: list[str | None] = attrs.field(factory=list)

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn_id = self.connections
        self.wire[conn_id] = bytearray()
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            h = h11.Connection(h11.SERVER)
            while True:
                got = await self._read_request(stream, h, conn_id)
                if got is None:
                    return
                self.requests.append(got)
                if isinstance(stream, trio.SSLStream):
                    self.alpn.append(stream.selected_alpn_protocol())
                if not await self._respond(stream, got):
                    return
                # Responses are written raw, so h11 only ever parses one request per instance.
                leftover = h.trailing_data[0]
                h = h11.Connection(h11.SERVER)
                if leftover:
                    h.receive_data(leftover)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            pass  # the client went away: part of several tests
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self.open_now -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _read_request(
        self, stream: trio.abc.Stream, h: h11.Connection, conn_id: int
    ) -> Got | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                self.wire[conn_id] += data
                h.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return Got(conn_id, request.method.decode(), request.target.decode(),
                           {k.decode(): v.decode() for k, v in request.headers}, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _respond(self, stream: trio.abc.Stream, got: Got) -> bool:
        """Write the reply for ``got``; ``False`` when the connection is to be closed."""
        parts = urlsplit(got.target)
        path, query = parts.path, parse_qs(parts.query)
        n = len(self.requests)
        if path == "/hang":
            await trio.sleep_forever()
        if path == "/drop":
            return False
        if path == "/slow":
            await trio.sleep(int(query["ms"][0]) / 1000)
        if path == "/barrier":
            self.barrier_waiting += 1
            if self.barrier_waiting >= self.barrier_n:
                self.barrier_open.set()
            await self.barrier_open.wait()
        if path == "/chunked":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"a":', b'"chunk', b'ed"}'):
                await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
                await trio.sleep(0.005)
            await stream.send_all(b"0\r\n\r\n")
            return True
        if path == "/nolength":  # close-delimited body
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil")
            await stream.send_all(b" eof")
            return False
        if path == "/api/v3/time":
            body = orjson.dumps({"serverTime": time.time_ns() // 1_000_000})
        elif path == "/api/v3/order":
            body = orjson.dumps({"symbol": "BTCUSDT", "orderId": n, "orderListId": -1,
                                 "clientOrderId": "c-1", "transactTime": 1})
        elif path == "/big":
            body = bytes(range(256)) * 8192  # 2 MiB
        else:
            body = orjson.dumps({"n": n, "conn": got.conn, "target": got.target,
                                 "body": got.body.decode(errors="replace")})
        head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json",
                b"Content-Length: %d" % len(body), b"X-Conn: %d" % got.conn]
        close = path == "/close"
        if close:
            head.append(b"Connection: close")
        prefix = b"HTTP/1.1 100 Continue\r\n\r\n" if path == "/info" else b""
        suffix = b"HTTP/1.1 200 OK\r\n" if path == "/stray" else b""
        if got.method == "HEAD":
            body = b""  # Content-Length still describes the GET body
        await stream.send_all(prefix + b"\r\n".join(head) + b"\r\n\r\n" + body + suffix)
        if path == "/idle-close" or self.close_every_connection_after_reply:
            self.idle_closed.set()
            return False
        if got.headers.get("connection") == "close":
            return False
        return not close


class Trace:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        assert "request" in info
        self.names.append(name)


@pytest.fixture
async def server(nursery: trio.Nursery) -> RawServer:
    s = RawServer()
    s.url = f"http://127.0.0.1:{await listen(nursery, s.handle)}"
    return s


def client_for(url: str, transport: Http11Transport, **timeouts: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(**{"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0,
                               **timeouts})
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout,
                             trust_env=False)


async def listen(nursery: trio.Nursery, handler: Any,
                 tls: ssl.SSLContext | None = None) -> int:
    """Serve ``handler`` on 127.0.0.1, an ephemeral port; returns the port."""
    if tls is None:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        return int(listeners[0].socket.getsockname()[1])
    listeners = await nursery.start(partial(
        trio.serve_ssl_over_tcp, handler, 0, tls, host="127.0.0.1", https_compatible=True))
    return int(listeners[0].transport_listener.socket.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Any, timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.005)


# --- keep-alive and framing ------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(server: RawServer) -> None:
    transport = Http11Transport(max_connections=4)
    async with client_for(server.url, transport) as client:
        for i in range(20):
            response = await client.get(f"/ok?i={i}")
            assert response.status_code == 200
            assert response.json()["target"] == f"/ok?i={i}"
            assert response.http_version == "HTTP/1.1"
    assert server.connections == 1
    assert transport.stats().opened == 1


async def test_request_goes_out_exactly_as_httpx_built_it(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        request = client.build_request(
            "POST", "/echo?a=1&b=x%20y", content=b"k=v&s=1",
            headers={"X-MBX-APIKEY": "key", "Content-Type": "application/x-www-form-urlencoded"})
        response = await client.send(request)
    assert response.json()["body"] == "k=v&s=1"
    # Request line, httpx's headers in httpx's order and spelling, blank line, body.
    headers = b"".join(b"%s: %s\r\n" % item for item in request.headers.raw)
    assert bytes(server.wire[1]) == (
        b"POST /echo?a=1&b=x%20y HTTP/1.1\r\n" + headers + b"\r\nk=v&s=1"
    )
    host = server.url.removeprefix("http://").encode()
    assert request.headers.raw[0] == (b"Host", host)
    assert (b"Content-Length", b"7") in request.headers.raw


async def test_no_other_task_runs_between_the_write_and_its_trace(server: RawServer) -> None:
    """The "bytes on the socket" trace comes straight after the write on plain TCP: a busy
    task that counts its scheduler turns makes no progress between "started" and "complete"
    (trio's ``send_all`` would yield after its send and let it run)."""
    turns = TurnCounter()
    async with client_for(server.url, Http11Transport()) as client, \
            trio.open_nursery() as nursery:
        await client.get("/ok")  # a kept-alive connection: the next request only writes
        nursery.start_soon(turns.busy)
        for _ in range(20):
            turns.seen.clear()
            response = await client.post("/echo", content=b"k=v",
                                         extensions={"trace": turns.trace})
            assert response.json()["body"] == "k=v"
            turns.check()
        assert turns.turns > 20  # the busy task did run, just never in between
        nursery.cancel_scope.cancel()


class TurnCounter:
    """A busy task counting its scheduler turns, and a trace noting the count at each name."""

    def __init__(self) -> None:
        self.turns = 0
        self.seen: dict[str, int] = {}

    async def busy(self) -> None:
        while True:
            self.turns += 1
            await trio.sleep(0)

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        self.seen[name] = self.turns

    def check(self) -> None:
        assert self.seen[STARTED] == self.seen["http11.send_request_body.complete"], self.seen


async def test_server_connection_close_is_honoured(server: RawServer) -> None:
    transport = Http11Transport()
    async with client_for(server.url, transport) as client:
        first = await client.get("/close")
        assert first.headers["connection"] == "close"
        second = await client.get("/ok")
    assert first.headers["x-conn"] == "1" and second.headers["x-conn"] == "2"
    assert server.connections == 2


async def test_client_connection_close_is_honoured(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        await client.get("/ok", headers={"Connection": "close"})
        await client.get("/ok")
    assert server.connections == 2


async def test_server_closing_an_idle_connection_costs_no_request(server: RawServer) -> None:
    transport = Http11Transport()
    async with client_for(server.url, transport) as client:
        await client.get("/idle-close")
        await server.idle_closed.wait()
        await wait_until(lambda: server.open_now == 0)
        trace = Trace()
        # Without the liveness poll this request would be written to the dead connection and
        # fail after "started": an ambiguous outcome for an order.
        response = await client.get("/ok", extensions={"trace": trace})
    assert response.status_code == 200 and response.headers["x-conn"] == "2"
    assert trace.names.count(STARTED) == 1
    assert transport.stats().stale_dropped == 1


async def test_idle_connections_expire(server: RawServer) -> None:
    transport = Http11Transport(keepalive_expiry=0.05)
    async with client_for(server.url, transport) as client:
        await client.get("/ok")
        await client.get("/ok")
        await trio.sleep(0.1)
        await client.get("/ok")
    assert server.connections == 2


async def test_chunked_response_then_reuse(server: RawServer) -> None:
    transport = Http11Transport()
    async with client_for(server.url, transport) as client:
        for _ in range(3):
            response = await client.get("/chunked")
            assert response.json() == {"a": "chunked"}
    assert server.connections == 1


async def test_close_delimited_body_is_read_to_eof_and_not_reused(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        response = await client.get("/nolength")
        assert response.content == b"until eof"
        await client.get("/ok")
    assert server.connections == 2


async def test_large_body_and_informational_response(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        big = await client.get("/big")
        assert big.content == bytes(range(256)) * 8192
        info = await client.get("/info")
        assert info.status_code == 200
        await client.get("/ok")
    assert server.connections == 1


async def test_head_response_has_no_body_and_keeps_the_connection(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        for _ in range(2):
            response = await client.head("/ok")
            assert response.status_code == 200 and response.content == b""
            assert int(response.headers["content-length"]) > 0
        await client.get("/ok")
    assert server.connections == 1


async def test_stray_bytes_after_a_response_retire_the_connection(server: RawServer) -> None:
    async with client_for(server.url, Http11Transport()) as client:
        await client.get("/stray")
        response = await client.get("/ok")
    assert response.headers["x-conn"] == "2"


async def test_streaming_request_body_is_sent_chunked(server: RawServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part-1,"
        yield b"part-2"

    async with client_for(server.url, Http11Transport()) as client:
        response = await client.post("/echo", content=body())
    assert response.json()["body"] == "part-1,part-2"
    assert server.requests[0].headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize("header", [
    (b"X-A", b"a\r\nX-Evil: 1"),
    (b"X-A", b"a\nX-Evil: 1"),
    (b"X-A", b"a\rb"),
    (b"X-A", b"a\x00b"),
    (b"X-A: b", b"c"),
    (b"X A", b"c"),
    (b"", b"c"),
    (b"X-A\r\nX-Evil", b"c"),
    (b"Content-Length", b"999"),
    (b"Transfer-Encoding", b"gzip"),
])
async def test_bad_headers_are_refused_before_anything_is_sent(
    server: RawServer, header: tuple[bytes, bytes]
) -> None:
    trace = Trace()
    async with client_for(server.url, Http11Transport()) as client:
        request = client.build_request("POST", "/ok", content=b"abc",
                                       extensions={"trace": trace})
        request.headers = httpx.Headers([*request.headers.raw, header])
        with pytest.raises(httpx.LocalProtocolError):
            await client.send(request)
        assert trace.names == [] and server.connections == 0
        assert (await client.post("/ok", content=b"abc")).status_code == 200


async def test_unsupported_scheme() -> None:
    async with httpx.AsyncClient(transport=Http11Transport()) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/x")


# --- failures, timeouts and the "did bytes leave" trace --------------------------------------


async def test_connect_refused_emits_no_started() -> None:
    trace = Trace()
    transport = Http11Transport()
    async with client_for(f"http://127.0.0.1:{closed_port()}", transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/ok", extensions={"trace": trace})
    assert trace.names == []
    assert transport.stats().free_slots == 16


async def test_drop_after_reading_the_request_emits_started(server: RawServer) -> None:
    trace = Trace()
    async with client_for(server.url, Http11Transport()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post("/drop", content=b"x=1", extensions={"trace": trace})
    assert trace.names[0] == STARTED and BODY_COMPLETE in trace.names
    assert server.requests[0].body == b"x=1"


async def test_read_timeout(server: RawServer) -> None:
    trace = Trace()
    transport = Http11Transport()
    async with client_for(server.url, transport, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/hang", extensions={"trace": trace})
        assert STARTED in trace.names and BODY_COMPLETE in trace.names
        stats = transport.stats()
        assert stats.in_use == 0 and stats.idle == 0 and stats.free_slots == 16
        await client.get("/ok")  # a fresh connection
    assert server.connections == 2


async def test_write_timeout(nursery: trio.Nursery) -> None:
    accepted: list[trio.SocketStream] = []

    async def never_reads(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    url = f"http://127.0.0.1:{await listen(nursery, never_reads)}"
    trace = Trace()
    async with client_for(url, Http11Transport(), write=0.3) as client:
        with pytest.raises(httpx.WriteTimeout):
            await client.post("/x", content=b"x" * (64 << 20), extensions={"trace": trace})
    assert trace.names == [STARTED]  # the bytes may have started to leave: never "complete"


async def test_tls_handshake_that_never_ends_is_a_connect_timeout(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    url = f"https://127.0.0.1:{await listen(nursery, silent)}"
    trace = Trace()
    transport = Http11Transport()
    async with client_for(url, transport, connect=0.3) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("/ok", extensions={"trace": trace})
    assert trace.names == [] and transport.stats().free_slots == 16


async def test_pool_timeout_then_the_slot_comes_back(server: RawServer) -> None:
    transport = Http11Transport(max_connections=1)
    async with client_for(server.url, transport, pool=0.2) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.get, "/hang")
            await wait_until(lambda: len(server.requests) == 1)
            trace = Trace()
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/ok", extensions={"trace": trace})
            assert trace.names == []
            nursery.cancel_scope.cancel()
        assert transport.stats().free_slots == 1
        assert (await client.get("/ok")).status_code == 200
    assert server.connections == 2


async def test_pool_bounds_open_connections(server: RawServer) -> None:
    transport = Http11Transport(max_connections=2)
    async with client_for(server.url, transport) as client, trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(client.get, f"/slow?ms=30&i={i}")
    assert server.max_open <= 2 and server.connections == 2
    assert transport.stats().free_slots == 2


async def test_idle_connections_of_other_origins_make_room(server: RawServer,
                                                          nursery: trio.Nursery) -> None:
    other = RawServer()
    other_url = f"http://127.0.0.1:{await listen(nursery, other.handle)}"
    transport = Http11Transport(max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(f"{server.url}/ok")
        await client.get(f"{other_url}/ok")  # closes the idle one to server first
        await wait_until(lambda: server.open_now == 0)
        assert transport.stats().idle == 1


async def test_aclose_fails_requests_in_flight_and_refuses_new_ones(server: RawServer) -> None:
    transport = Http11Transport()
    async with client_for(server.url, transport) as client:
        await client.get("/ok")
        failures: list[BaseException] = []

        async def stuck() -> None:
            try:
                await client.get("/hang")
            except httpx.HTTPError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stuck)
            await wait_until(lambda: len(server.requests) == 2)
            with trio.fail_after(1):
                await transport.aclose()
        assert len(failures) == 1 and isinstance(failures[0], httpx.ReadError)
        with pytest.raises(httpx.ConnectError, match="closed"):
            await client.get("/ok")
        assert transport.stats().idle == 0 and transport.stats().in_use == 0


# --- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cancellation_under_contention_leaks_nothing(server: RawServer, seed: int) -> None:
    rng = random.Random(seed)
    max_connections = 4
    transport = Http11Transport(max_connections=max_connections)
    completed = cancelled = 0
    async with client_for(server.url, transport, pool=5.0) as client:

        async def one(i: int, delay_ms: int, cancel_after: float) -> None:
            nonlocal completed, cancelled
            with trio.move_on_after(cancel_after) as scope:
                response = await client.get(f"/slow?ms={delay_ms}&i={i}")
                # A connection abandoned mid-response must never be reused: the reply would
                # belong to an earlier request.
                assert response.json()["target"] == f"/slow?ms={delay_ms}&i={i}"
                completed += 1
            cancelled += scope.cancelled_caught

        async with trio.open_nursery() as nursery:
            for i in range(60):
                # Every 6th request is never cancelled, the rest at a random moment: while
                # waiting for a slot, connecting, writing, or reading the response.
                cancel_after = math.inf if i % 6 == 0 else rng.uniform(0, 0.06)
                nursery.start_soon(one, i, rng.randint(0, 20), cancel_after)
                if rng.random() < 0.3:
                    await trio.sleep(0)
        stats = transport.stats()
        assert stats.in_use == 0 and stats.free_slots == max_connections
        assert completed >= 10 and cancelled > 0 and completed + cancelled == 60
        # Every slot is usable: max_connections requests are in the server at the same time.
        server.barrier_n = max_connections
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                for i in range(max_connections):
                    nursery.start_soon(client.get, f"/barrier?i={i}")
        for i in range(10):
            response = await client.get(f"/ok?after={i}")
            assert response.json()["target"] == f"/ok?after={i}"
    assert not server.errors


async def test_cancelled_while_waiting_for_a_slot_takes_no_slot(server: RawServer) -> None:
    transport = Http11Transport(max_connections=1)
    async with client_for(server.url, transport, pool=10) as client, \
            trio.open_nursery() as nursery:
        nursery.start_soon(client.get, "/hang")
        await wait_until(lambda: len(server.requests) == 1)
        with trio.move_on_after(0.1) as scope:
            await client.get("/ok")
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
    assert transport.stats().free_slots == 1


# --- RestClient on top ------------------------------------------------------------------------


async def test_rest_orders_survive_the_venue_closing_idle_connections(server: RawServer) -> None:
    server.close_every_connection_after_reply = True
    creds = Credentials.hmac("k", "s")
    client = RestClient(venue_profile("sim", rest_url=server.url), creds,
                        config=RestConfig(read_timeout_s=2.0))
    async with client:
        await client.sync_time()
        for i in range(5):
            await wait_until(lambda: server.open_now == 0)
            ack = await client.place_order("BTCUSDT", "BUY", "MARKET",
                                           new_client_order_id=f"c-{i}",
                                           quantity=Decimal("0.001"))
            assert isinstance(ack, OrderAck)
    assert server.connections == 6
    assert isinstance(client._http._transport, Http11Transport)


async def test_rest_drop_after_sending_is_unknown(server: RawServer) -> None:
    client = RestClient(venue_profile("sim", rest_url=f"{server.url}/drop"),
                        config=RestConfig(read_timeout_s=2.0))
    async with client:
        with pytest.raises(UnknownExecutionStatus):
            await client.server_time()


# --- prepared requests (RequestTemplate + send_prepared: the order path) -----------------------

TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


def template_for(url: str, path: str = "/echo") -> RequestTemplate:
    with httpx.Client(base_url=url, trust_env=False) as builder:
        return RequestTemplate(builder.build_request(
            "POST", path, headers={"X-MBX-APIKEY": "key",
                                   "Content-Type": "application/x-www-form-urlencoded"}))


async def test_prepared_request_goes_out_as_httpx_would_send_it(server: RawServer) -> None:
    transport = Http11Transport()
    template = template_for(server.url)
    trace = Trace()
    try:
        response = await transport.send_prepared(template, b"k=v&s=1", TIMEOUTS, trace)
        await response.aread()
        assert response.json()["body"] == "k=v&s=1"
        async with client_for(server.url, Http11Transport()) as client:
            await client.post("/echo", content=b"k=v&s=1", headers={
                "X-MBX-APIKEY": "key", "Content-Type": "application/x-www-form-urlencoded"})
        assert bytes(server.wire[1]) == bytes(server.wire[2])
        assert trace.names[0] == STARTED and BODY_COMPLETE in trace.names
    finally:
        await transport.aclose()


async def test_prepared_no_other_task_runs_between_the_write_and_its_trace(
        server: RawServer) -> None:
    turns = TurnCounter()
    transport = Http11Transport()
    template = template_for(server.url)
    try:
        await (await transport.send_prepared(template, b"k=v", TIMEOUTS)).aread()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(turns.busy)
            for _ in range(20):
                turns.seen.clear()
                await (await transport.send_prepared(template, b"k=v", TIMEOUTS,
                                                     turns.trace)).aread()
                turns.check()
            assert turns.turns > 20
            nursery.cancel_scope.cancel()
    finally:
        await transport.aclose()


async def test_prepared_connect_refused_emits_no_started() -> None:
    trace = Trace()
    transport = Http11Transport()
    template = template_for(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(httpx.ConnectError):
        await transport.send_prepared(template, b"x=1", TIMEOUTS, trace)
    assert trace.names == [] and transport.stats().free_slots == 16


async def test_prepared_drop_after_sending_emits_started(server: RawServer) -> None:
    trace = Trace()
    transport = Http11Transport()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.send_prepared(template_for(server.url, "/drop"), b"x=1", TIMEOUTS,
                                          trace)
        assert trace.names[0] == STARTED and server.requests[0].body == b"x=1"
    finally:
        await transport.aclose()


async def test_prepared_read_timeout_and_pool_timeout(server: RawServer) -> None:
    transport = Http11Transport(max_connections=1)
    try:
        trace = Trace()
        with pytest.raises(httpx.ReadTimeout):
            await transport.send_prepared(template_for(server.url, "/hang"), b"x=1",
                                          {**TIMEOUTS, "read": 0.2}, trace)
        assert STARTED in trace.names
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.send_prepared, template_for(server.url, "/hang"),
                               b"x=1", TIMEOUTS)
            await wait_until(lambda: len(server.requests) == 2)
            trace = Trace()
            with pytest.raises(httpx.PoolTimeout):
                await transport.send_prepared(template_for(server.url), b"x=1",
                                              {**TIMEOUTS, "pool": 0.2}, trace)
            assert trace.names == []
            nursery.cancel_scope.cancel()
        assert transport.stats().free_slots == 1
    finally:
        await transport.aclose()


async def test_prepared_on_a_closed_transport_is_refused_before_sending(
        server: RawServer) -> None:
    transport = Http11Transport()
    await transport.aclose()
    trace = Trace()
    with pytest.raises(httpx.ConnectError, match="closed"):
        await transport.send_prepared(template_for(server.url), b"x=1", TIMEOUTS, trace)
    assert trace.names == [] and server.requests == []


async def test_rest_order_on_a_closed_client_is_not_sent(server: RawServer) -> None:
    """A closed client refuses an order as "nothing sent" (``TransportError``), not as an
    unknown outcome, and the venue sees nothing."""
    client = RestClient(venue_profile("sim", rest_url=server.url), Credentials.hmac("k", "s"),
                        config=RestConfig(read_timeout_s=2.0))
    async with client:
        await client.sync_time()
    with pytest.raises(TransportError, match="before sending"):
        await client.place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="c-1",
                                 quantity=Decimal("0.001"))
    assert [request.method for request in server.requests] == ["GET"]


# --- TLS ---------------------------------------------------------------------------------------


@attrs.frozen
class Tls:
    server: RawServer
    url: str
    trusted: ssl.SSLContext


@pytest.fixture
def ca() -> Iterator[Any]:
    trustme = pytest.importorskip("trustme")
    yield trustme.CA()


@pytest.fixture
async def tls(nursery: trio.Nursery, ca: Any) -> Tls:
    s = RawServer()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        s.sni.append(name)

    server_ctx.sni_callback = sni
    s.url = f"https://localhost:{await listen(nursery, s.handle, server_ctx)}"
    trusted = default_ssl_context()
    ca.configure_trust(trusted)
    return Tls(s, s.url, trusted)


async def test_tls_keep_alive_sni_and_alpn(tls: Tls) -> None:
    transport = Http11Transport(ssl_context=tls.trusted)
    async with client_for(tls.url, transport) as client:
        for i in range(3):
            response = await client.post(f"/echo?i={i}", content=b"a=1")
            assert response.json()["body"] == "a=1"
    assert tls.server.connections == 1
    assert tls.server.sni == ["localhost"]
    assert tls.server.alpn == ["http/1.1"] * 3  # we offer only http/1.1, even to an h2 server


async def test_tls_idle_close_is_detected(tls: Tls) -> None:
    transport = Http11Transport(ssl_context=tls.trusted)
    async with client_for(tls.url, transport) as client:
        await client.get("/idle-close")
        await wait_until(lambda: tls.server.open_now == 0)
        response = await client.get("/ok")
    assert response.headers["x-conn"] == "2" and transport.stats().stale_dropped == 1


async def test_tls_untrusted_certificate_is_a_connect_error(tls: Tls) -> None:
    trace = Trace()
    async with client_for(tls.url, Http11Transport()) as client:  # system trust store only
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get("/ok", extensions={"trace": trace})
    assert trace.names == []
