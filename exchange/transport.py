"""``Http11Transport``: a lean HTTP/1.1 keep-alive transport for ``httpx.AsyncClient`` on Trio.

Why not httpx's default transport (httpcore): issue #5 bounds the runtime's own overhead per
order (intent accepted → request bytes leave the process) at p99 ≤ 1 ms on a slow 2-core box.
httpcore alone spends p50 0.7 ms / p99 1.4 ms there — h11 re-validating and re-serialising every
header, a connection-pool state machine with locks and several writes per request. This
transport keeps the ``httpx.AsyncClient`` (the issue mandates one long-lived client per venue)
and replaces only what sits below it:

* **One write per request.** The request head and body are serialised by hand into one
  ``bytes`` and written with one non-blocking ``write`` on plain TCP (``send_all`` only for
  what the socket buffer does not take, and for TLS; TCP_NODELAY is on: Trio sets it). The
  header block is checked with one regular expression (names are tokens; values hold no CR,
  LF or NUL) so a bad value can never split the request, instead of paying h11's validation
  and serialisation (~0.2 ms here) before the bytes leave. On a kept-alive connection nothing
  between ``handle_async_request`` and the write, nor between the write and its trace, yields
  to the scheduler.
* **One cancel scope per request.** Each phase (pool wait, connect, write, each read) moves
  the deadline of the request's single ``CancelScope``; the phase that was running when it
  fired names the timeout. Entering a Trio cancel scope costs 10-20 µs on the reference box;
  one per phase and per read would spend that several times per request, once before the
  write.
* **h11 for responses only.** After the bytes are out, the connection's h11 state machine is
  told which request it answers (method and ``Connection: close`` are what matter for framing)
  and parses status, headers, Content-Length / chunked / close-delimited bodies. That cost lands
  after sending, where it does not count against the budget.
* **Our own pool.** At most ``max_connections`` requests hold a slot (a ``trio.Semaphore``;
  waiting obeys the pool timeout → ``httpx.PoolTimeout``). Every exit path — error, timeout,
  cancellation — releases the slot in a ``finally`` with synchronous code, and a connection is
  only returned to the pool after its response was read completely, neither side asked to
  close, and no stray bytes arrived. So httpcore's pool-slot leak under cancellation
  (encode/httpcore#1093) cannot happen here.
* **No stale keep-alive connection reaches an order.** Before an idle connection is reused it
  is polled with a zero timeout: a connection the server closed (FIN, RST, or an unsolicited
  408) is readable, so it is dropped and a fresh one opened *before* anything is sent, instead
  of turning the order into an ambiguous failure. Idle connections also expire after
  ``keepalive_expiry`` seconds.

The contract ``spark.exchange.rest`` relies on (httpcore's ``trace`` extension):
``http11.send_request_headers.started`` is awaited immediately before the one write — never
when nothing could have been written (no connection, bad header, pool timeout) — and
``http11.send_request_body.complete`` immediately after the bytes were handed to the kernel.
A failure before "started" means no byte left the process; after it, the request may have
reached the server. httpcore's other ``http11.*`` send/receive names are emitted too, in
httpcore's order (``response_closed`` is not: the response is complete on return).

Failures are raised as the httpx classes httpx's own transport uses: ``ConnectError`` /
``ConnectTimeout`` (nothing sent), ``WriteError`` / ``WriteTimeout``, ``ReadError`` /
``ReadTimeout`` / ``RemoteProtocolError`` (after sending), ``PoolTimeout``,
``LocalProtocolError`` (a request we refuse to serialise), ``UnsupportedProtocol``.
Exception texts name the host and port only, never the target: query strings carry signatures.

HTTP/1.1 only (ALPN offers ``http/1.1``), no proxies, no ``Expect: 100-continue``, no
upgrades; POSIX only (the liveness poll uses ``select.poll``). Streaming request bodies are
read into memory first and sent in the same single write (chunked framing when httpx chose
it). Responses are read completely before ``handle_async_request`` returns.
"""

from __future__ import annotations

import math
import os
import re
import select
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import h11
import httpx
import trio

__all__ = ["Http11Transport", "PoolStats", "RequestTemplate", "default_ssl_context"]

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]
_Origin = tuple[str, str, int]  # scheme, host, port

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RECEIVE_SIZE = 64 * 1024
# RFC 9110: the method and header names are tokens; the target is visible ASCII without spaces
# (httpx percent-encodes it); header values hold no CR, LF or NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
# Header lines are first joined as ``name NUL value CR LF``: NUL can be in neither a token nor
# a valid value, so this one pattern checks every name and value at once (with ": " as the
# separator a name holding ": " would still parse); the line count catches injected CR LF.
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+\x00[^\x00\r\n]*\r\n)*")
_HOST, _CONNECTION, _TRANSFER_ENCODING, _CONTENT_LENGTH = range(4)
_FRAMING = {b"host": _HOST, b"connection": _CONNECTION,
            b"transfer-encoding": _TRANSFER_ENCODING, b"content-length": _CONTENT_LENGTH}
_TIMEOUTS: dict[str, type[httpx.TimeoutException]] = {
    "pool": httpx.PoolTimeout,
    "connect": httpx.ConnectTimeout,
    "write": httpx.WriteTimeout,
    "read": httpx.ReadTimeout,
}
_IO_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def default_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """The TLS context used for https when none is given: the system's trust store (or
    ``cafile``), certificate and host name verification on, ALPN offering only ``http/1.1``."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    return context


@attrs.frozen(slots=True)
class PoolStats:
    """A snapshot of the pool, for tests and diagnostics."""

    idle: int
    in_use: int
    free_slots: int
    opened: int
    stale_dropped: int


async def _write(conn: _Connection, data: bytes) -> None:
    """Hand ``data`` to the kernel.

    Trio's ``send_all`` yields to the scheduler *after* a successful ``send`` (a checkpoint),
    so every other runnable task would run between the moment the bytes left and the trace
    that says so — and the order path's "bytes on the socket" stamp would include them.  On a
    plain TCP connection the write is one non-blocking system call made here, with the same
    cancellation rule (a cancelled request writes nothing); only what the socket buffer does
    not take at once goes through ``send_all``.  TLS connections always use ``send_all``."""
    if conn.plain:
        await trio.lowlevel.checkpoint_if_cancelled()  # raises if cancelled; no yield if not
        try:
            sent = os.write(conn.sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    await conn.stream.send_all(data)


class _Connection:
    """One kept-alive HTTP/1.1 connection: the stream, its raw socket (for the liveness poll
    and a synchronous close) and the h11 state machine that parses its responses."""

    __slots__ = ("h11", "idle_since", "origin", "plain", "poll", "sock", "stream")

    def __init__(
        self, origin: _Origin, stream: trio.abc.Stream, sock: trio.socket.SocketType
    ) -> None:
        self.origin = origin
        self.stream = stream
        self.sock = sock
        #: Plain TCP (no TLS layer): the request can be written straight to the socket.
        self.plain = isinstance(stream, trio.SocketStream)
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.idle_since = 0.0
        # Registered once: polling is then one system call. Only used while the socket is
        # open, so the descriptor number cannot belong to another socket by then.
        self.poll = select.poll()
        self.poll.register(sock.fileno(), select.POLLIN)

    def close(self) -> None:
        """Close at once, without awaiting: safe in ``finally`` blocks of cancelled tasks, and
        wakes any task blocked on the socket with ``ClosedResourceError``. TLS connections are
        closed without close_notify, as an https-compatible client may (Trio's
        ``https_compatible``): HTTP framing, not TLS, marks the end of each response."""
        self.sock.close()

    def looks_alive(self) -> bool:
        """Zero-timeout poll: an idle connection must have nothing to read. Readable means the
        server closed it (EOF/RST) or sent something unsolicited (e.g. a 408): either way it
        must not carry the next request."""
        return self.sock.fileno() != -1 and not self.poll.poll(0)


class _Payload:
    """The request as written (``data``) plus what h11 needs to frame its response."""

    __slots__ = ("close", "data", "host", "method", "target")

    def __init__(self, data: bytes, method: bytes, target: bytes, host: bytes,
                 close: bool) -> None:
        self.data = data
        self.method = method
        self.target = target
        self.host = host
        self.close = close


class _Phase:
    """The request's one cancel scope and which phase its deadline currently guards.

    It starts in the write phase, deadline included (a deadline given to a scope before it is
    entered costs nothing extra; moving one later costs several µs): on the fast path — a free
    slot and a kept-alive connection — nothing before the write can wait, so no other phase is
    ever entered before the bytes leave.
    """

    __slots__ = ("name", "scope", "timeouts")

    def __init__(self, timeouts: dict[str, float | None]) -> None:
        self.timeouts = timeouts
        self.name = "write"
        seconds = timeouts.get("write")
        self.scope = trio.CancelScope(
            deadline=math.inf if seconds is None else trio.current_time() + seconds
        )

    def enter(self, name: str) -> None:
        self.name = name
        seconds = self.timeouts.get(name)
        self.scope.deadline = math.inf if seconds is None else trio.current_time() + seconds

    def timed_out(self, request: httpx.Request | None,
                  origin: _Origin) -> httpx.TimeoutException:
        what = {"pool": "waiting for a free connection slot"}.get(self.name, self.name)
        return _TIMEOUTS[self.name](
            f"{what} ({origin[1]}:{origin[2]}) timed out", request=request
        )


def _origin(request: httpx.Request) -> _Origin:
    url = request.url
    scheme = url.scheme
    default = _DEFAULT_PORTS.get(scheme)
    if default is None:
        raise httpx.UnsupportedProtocol(
            f"unsupported URL scheme {scheme!r}: only http and https", request=request
        )
    if not url.host:
        raise httpx.UnsupportedProtocol("URL has no host", request=request)
    return scheme, url.host, url.port or default


def _describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, or of its cause when Trio wrapped it (an ``SSLError`` inside
    ``BrokenResourceError`` says why a handshake failed)."""
    shown = exc.__cause__ if not str(exc) and exc.__cause__ is not None else exc
    return f"{type(shown).__name__}: {shown}"


def _serialize(request: httpx.Request, body: bytes,
               raw: list[tuple[bytes, bytes]] | None = None) -> _Payload:
    """Request line, the headers exactly as ``request.headers.raw`` (httpx already added Host,
    Content-Length or Transfer-Encoding) or as ``raw`` if given, blank line, body: one
    ``bytes``. Refuses anything that could make the server read a different request than httpx
    built."""
    try:
        method = request.method.encode("ascii")
    except UnicodeEncodeError:
        method = b""
    target = request.url.raw_path
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise httpx.LocalProtocolError("invalid request method or target", request=request)
    if raw is None:
        raw = request.headers.raw
    block = b"".join([b"%s\x00%s\r\n" % item for item in raw])
    if _HEADER_BLOCK.fullmatch(block) is None or block.count(b"\n") != len(raw):
        raise httpx.LocalProtocolError(
            "invalid header (a name that is not a token, or CR, LF or NUL in a value)",
            request=request,
        )
    block = block.replace(b"\x00", b": ")
    host: bytes | None = None
    close = chunked = False
    length: bytes | None = None
    for name, value in raw:
        kind = _FRAMING.get(name.lower())
        if kind is None:
            continue
        if kind == _HOST:
            if host is not None:
                raise httpx.LocalProtocolError("more than one Host header", request=request)
            host = value
        elif kind == _CONNECTION:
            close = close or b"close" in value.lower()
        elif kind == _TRANSFER_ENCODING:
            chunked = value.strip().lower() == b"chunked"
            if not chunked:
                raise httpx.LocalProtocolError("unsupported Transfer-Encoding",
                                               request=request)
        elif length is not None and length != value:
            raise httpx.LocalProtocolError("conflicting Content-Length headers",
                                           request=request)
        else:
            length = value
    if chunked and length is not None:
        raise httpx.LocalProtocolError("both Content-Length and Transfer-Encoding",
                                       request=request)
    if length is not None and length.strip() != b"%d" % len(body):
        raise httpx.LocalProtocolError("Content-Length does not match the body",
                                       request=request)
    head = b"%s %s HTTP/1.1\r\n%s" % (method, target, block)
    if host is None:
        host = request.url.netloc
        head += b"Host: %s\r\n" % host
    if chunked:
        chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        data = head + b"\r\n" + chunk + b"0\r\n\r\n"
    else:
        if body and length is None:
            head += b"Content-Length: %d\r\n" % len(body)
        data = head + b"\r\n" + body
    return _Payload(data, method, target, host, close)


class RequestTemplate:
    """Everything of a request but its body, serialised and checked once: the head of every
    request with one method, URL and header set.  :meth:`Http11Transport.send_prepared` sends
    it with a body.

    Why: the venue client sends the same head for every order (method, path, Host, its
    default headers, the API key, the form content type); only the signed body changes.
    Building an ``httpx.Request`` per order and serialising it again cost ~60 µs p50 on the
    reference box before the bytes could leave (the order path's budget is 1 ms at p99).  The
    template is made from a bodiless ``httpx.Request`` built as the client builds its requests,
    through the same checks as :func:`_serialize`.  Sent with no body it is exactly that
    request (httpx's own ``Content-Length: 0`` on POST, PUT and PATCH, none otherwise); with a
    body it is what httpx makes for a body given as bytes: the same headers, then
    ``Content-Length``."""

    __slots__ = ("_bodiless", "_close", "_head", "_host", "_method", "_target", "origin")

    def __init__(self, request: httpx.Request) -> None:
        self.origin = _origin(request)
        self._bodiless = _serialize(request, b"")
        raw = [(name, value) for name, value in request.headers.raw
               if name.lower() not in (b"content-length", b"transfer-encoding")]
        payload = _serialize(request, b"", raw)
        self._head = payload.data[:-2]  # without the blank line
        self._method = payload.method
        self._target = payload.target
        self._host = payload.host
        self._close = payload.close

    def payload(self, body: bytes) -> _Payload:
        if not body:
            return self._bodiless
        data = b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body)
        return _Payload(data, self._method, self._target, self._host, self._close)


class Http11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport for one ``httpx.AsyncClient`` on Trio (see the module
    docstring for why it exists and what it guarantees). Not thread-safe; use from one Trio
    run. ``aclose`` (or closing the client) closes every connection, including those in use,
    whose requests then fail with ``ReadError``/``WriteError``.
    """

    def __init__(
        self,
        *,
        max_connections: int = 16,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        keepalive = max_connections if max_keepalive_connections is None \
            else max_keepalive_connections
        if not 0 <= keepalive <= max_connections:
            raise ValueError("max_keepalive_connections must be between 0 and max_connections")
        if keepalive_expiry is not None and keepalive_expiry < 0:
            raise ValueError("keepalive_expiry must not be negative")
        self._max_connections = max_connections
        self._max_keepalive = keepalive
        self._keepalive_expiry = math.inf if keepalive_expiry is None else keepalive_expiry
        self._ssl_context = ssl_context
        self._slots = trio.Semaphore(max_connections, max_value=max_connections)
        # Oldest first; reuse takes the newest (warmest, least likely to be closed by the
        # server's idle timeout) and expiry sweeps from the front.
        self._idle: list[_Connection] = []
        self._in_use: set[_Connection] = set()
        self._closed = False
        self._opened = 0
        self._stale_dropped = 0

    # --- public -----------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        return PoolStats(
            idle=len(self._idle),
            in_use=len(self._in_use),
            free_slots=self._slots.value,
            opened=self._opened,
            stale_dropped=self._stale_dropped,
        )

    async def aclose(self) -> None:
        """Close every connection, idle or in use. Closing is a synchronous socket close (no
        TLS close_notify round trip), so it is bounded and cannot be interrupted; the shielded
        scope only keeps the final checkpoint from raising ``Cancelled`` halfway."""
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            self._closed = True
            connections = [*self._idle, *self._in_use]
            self._idle.clear()
            for conn in connections:
                conn.close()
            await trio.lowlevel.checkpoint()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request)
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()  # a streaming body: read it, still one write
        payload = _serialize(request, body)
        phase = _Phase(request.extensions.get("timeout", {}))
        trace: Trace | None = request.extensions.get("trace")
        with phase.scope:
            return await self._round_trip(request, origin, payload, trace, phase)
        # Only our own deadline lands here; an outer cancellation propagates as Cancelled.
        raise phase.timed_out(request, origin)

    async def send_prepared(
        self,
        template: RequestTemplate,
        body: bytes,
        timeouts: dict[str, float | None],
        trace: Trace | None = None,
    ) -> httpx.Response:
        """:meth:`handle_async_request` for ``template`` with ``body``, without an
        ``httpx.Request`` (the response and any exception carry none).  Same pool, phases,
        timeouts, trace and failure classes."""
        payload = template.payload(body)
        phase = _Phase(timeouts)
        with phase.scope:
            return await self._round_trip(None, template.origin, payload, trace, phase)
        raise phase.timed_out(None, template.origin)

    # --- pool -------------------------------------------------------------------------------

    async def _round_trip(
        self,
        request: httpx.Request | None,
        origin: _Origin,
        payload: _Payload,
        trace: Trace | None,
        phase: _Phase,
    ) -> httpx.Response:
        try:
            self._slots.acquire_nowait()  # the usual case: no scheduling point before sending
        except trio.WouldBlock:
            phase.enter("pool")
            await self._slots.acquire()
        # No checkpoint between acquiring the slot and the try: the finally always runs.
        try:
            if self._closed:
                raise httpx.ConnectError("transport is closed", request=request)
            conn = self._take_idle(origin)
            if conn is None:
                phase.enter("connect")
                conn = await self._connect(origin, request)
                phase.enter("write")
            elif phase.name != "write":  # we waited for the slot
                phase.enter("write")
            self._in_use.add(conn)
            try:
                response = await self._exchange(conn, request, payload, trace, phase)
            except BaseException:
                # Error, timeout or cancellation mid-request: the connection's state is
                # unknown, so it is closed, never pooled.
                self._in_use.discard(conn)
                conn.close()
                raise
            self._in_use.discard(conn)
            self._put_back(conn)
            return response
        finally:
            self._slots.release()

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        now = trio.current_time()
        expiry = self._keepalive_expiry
        idle = self._idle
        while idle and now - idle[0].idle_since >= expiry:
            idle.pop(0).close()
        for i in range(len(idle) - 1, -1, -1):
            conn = idle[i]
            if conn.origin != origin:
                continue
            del idle[i]
            if conn.looks_alive():
                return conn
            conn.close()
            self._stale_dropped += 1
        return None

    def _put_back(self, conn: _Connection) -> None:
        h = conn.h11
        stray, eof = h.trailing_data
        # Both sides DONE: complete response, nobody said "Connection: close", HTTP/1.1.
        # ``eof``: the body was close-delimited (h11 still reports DONE then). ``stray``: bytes
        # beyond the response, which would be mistaken for the next one.
        reusable = (
            not self._closed
            and h.our_state is h11.DONE
            and h.their_state is h11.DONE
            and not stray
            and not eof
            and self._max_keepalive > 0
        )
        if not reusable:
            conn.close()
            return
        h.start_next_cycle()
        conn.idle_since = trio.current_time()
        if len(self._idle) >= self._max_keepalive:
            self._idle.pop(0).close()
        self._idle.append(conn)

    def _make_room(self) -> None:
        """Keep open sockets ≤ max_connections: each slot holder has at most one connection,
        so idle ones beyond what the free slots allow (other origins) are closed, oldest
        first."""
        taken = self._max_connections - self._slots.value
        while self._idle and len(self._idle) + taken > self._max_connections:
            self._idle.pop(0).close()

    async def _connect(self, origin: _Origin, request: httpx.Request | None) -> _Connection:
        """TCP (+ TLS), under the caller's connect deadline. Nothing of the request is sent."""
        scheme, host, port = origin
        self._make_room()
        tcp: trio.SocketStream | None = None
        try:
            tcp = await trio.open_tcp_stream(host, port)
            stream: trio.abc.Stream = tcp
            if scheme == "https":
                tls = trio.SSLStream(
                    tcp, self._tls_context(), server_hostname=host, https_compatible=True
                )
                await tls.do_handshake()
                stream = tls
        except _IO_ERRORS as exc:
            if tcp is not None:
                tcp.socket.close()
            raise httpx.ConnectError(
                f"cannot connect to {host}:{port}: {_describe(exc)}", request=request
            ) from exc
        except BaseException:  # our connect deadline (Cancelled) or an outer cancellation
            if tcp is not None:
                tcp.socket.close()
            raise
        conn = _Connection(origin, stream, tcp.socket)
        if self._closed:  # aclose() ran while we were connecting
            conn.close()
            raise httpx.ConnectError("transport is closed", request=request)
        self._opened += 1
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # built lazily: loading the trust store takes a while
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    # --- one request/response ---------------------------------------------------------------

    async def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request | None,
        payload: _Payload,
        trace: Trace | None,
        phase: _Phase,
    ) -> httpx.Response:
        info = {"request": request}
        if trace is not None:
            await trace("http11.send_request_headers.started", info)
        try:
            await _write(conn, payload.data)
        except _IO_ERRORS as exc:
            raise httpx.WriteError(
                f"writing to {conn.origin[1]}:{conn.origin[2]} failed: {_describe(exc)}",
                request=request,
            ) from exc
        if trace is not None:
            await trace("http11.send_request_headers.complete", info)
            await trace("http11.send_request_body.started", info)
            await trace("http11.send_request_body.complete", info)
        # Tell h11 which request this response answers (after sending: off the hot path).
        h = conn.h11
        headers = [(b"host", payload.host)]
        if payload.close:
            headers.append((b"connection", b"close"))
        h.send(h11.Request(method=payload.method, target=payload.target, headers=headers))
        h.send(h11.EndOfMessage())
        if trace is not None:
            await trace("http11.receive_response_headers.started", info)
        head = await self._next_event(conn, request, phase, first=True)
        while isinstance(head, h11.InformationalResponse):
            head = await self._next_event(conn, request, phase, first=False)
        if not isinstance(head, h11.Response):
            raise httpx.RemoteProtocolError(
                f"expected a response, got {type(head).__name__}", request=request
            )
        http_version = b"HTTP/" + head.http_version
        response_headers = head.headers.raw_items()
        if trace is not None:
            await trace("http11.receive_response_headers.complete",
                        {"request": request, "return_value": (
                            http_version, head.status_code, head.reason, response_headers)})
            await trace("http11.receive_response_body.started", info)
        chunks: list[bytes] = []
        while True:
            event = await self._next_event(conn, request, phase, first=False)
            if isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise httpx.RemoteProtocolError(
                    f"unexpected {type(event).__name__} inside a response body",
                    request=request,
                )
        if trace is not None:
            await trace("http11.receive_response_body.complete", info)
        return httpx.Response(
            status_code=head.status_code,
            headers=response_headers,
            stream=httpx.ByteStream(b"".join(chunks)),
            extensions={"http_version": http_version, "reason_phrase": head.reason},
            request=request,
        )

    async def _next_event(
        self, conn: _Connection, request: httpx.Request | None, phase: _Phase, *,
        first: bool
    ) -> h11.Event:
        """The next h11 event, reading as needed (each read under a fresh read deadline)."""
        h = conn.h11
        received_any = not first
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(
                    f"invalid HTTP/1.1 response: {exc}", request=request
                ) from exc
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # h11 wants a new cycle: the server sent a second message
                raise httpx.RemoteProtocolError("unexpected data after a response",
                                                request=request)
            phase.enter("read")
            try:
                data = await conn.stream.receive_some(_RECEIVE_SIZE)
            except _IO_ERRORS as exc:
                raise httpx.ReadError(
                    f"reading from {conn.origin[1]}:{conn.origin[2]} failed: {_describe(exc)}",
                    request=request,
                ) from exc
            if not data and not received_any:
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending a response", request=request
                )
            received_any = True
            h.receive_data(bytes(data))  # b"" marks EOF: ends a close-delimited body, or h11
            # then raises because the response is incomplete
