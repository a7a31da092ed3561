"""``RestClient``: Binance REST over one long-lived ``httpx.AsyncClient`` on Trio.

What this layer adds to the sans-IO codec, and why:

* **Rate-limit budget before sending.** Each request first asks
  :class:`~spark.exchange.ratelimit.RateLimitBudget` how long to wait; it waits (up to
  ``max_budget_wait_s``) or raises :class:`RateLimited`/:class:`IpBanned` without sending.
* **Our own transport under httpx.** The client is one long-lived ``httpx.AsyncClient``, but
  its transport is :class:`~spark.exchange.transport.Http11Transport`, not httpcore: one
  ``send_all`` per request (httpcore alone cost more than the 1 ms per-order budget at p99 on
  the reference box), a keep-alive pool that releases its slot on every exit path including
  cancellation (httpcore can leak slots there, encode/httpcore#1093), and a liveness poll that
  drops a keep-alive connection the venue closed *before* an order is written to it.
* **In-flight bound below the pool size.** A ``trio.CapacityLimiter`` smaller than the pool
  keeps a slot spare, so a request never waits on the pool behind its own siblings; a client
  that keeps raising ``PoolTimeout`` anyway (it should not: the transport cannot leak slots)
  is closed and recreated as a last resort.
* **Knowing whether bytes left.** The transport implements httpcore's ``trace`` extension:
  ``send_request_headers.started`` is emitted right before the request's only write. A failure
  before that is a :class:`TransportError` (nothing was sent: safe to retry); after it,
  :class:`UnknownExecutionStatus` (the order may exist). ``send_request_body.complete``
  timestamps the moment the bytes are on the socket, for the overhead benchmark.
* **One retry, only for -1021.** Binance rejects a stale timestamp before executing anything,
  so the client re-measures the server-time offset and resends that signed request once.
  Nothing else is ever retried here: above all not an order placement after a timeout or a
  5xx, where the router must ask the venue first.
"""

from __future__ import annotations

import http.cookiejar
import logging
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal

import attrs
import httpx
import orjson
import trio

from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.exchange import codec
from spark.exchange.codec import RestRequest, encode
from spark.exchange.credentials import Credentials
from spark.exchange.endpoints import Security
from spark.exchange.errors import (
    ExchangeError,
    IpBanned,
    MalformedResponse,
    RateLimited,
    TimestampError,
    TransportError,
    UnknownExecutionStatus,
    classify,
)
from spark.exchange.hooks import NullObserver, RestObserver
from spark.exchange.inflight import slot
from spark.exchange.models import (
    AccountInfo,
    ExchangeInfo,
    OrderAck,
    OrderResult,
    OrderStatus,
    Trade,
)
from spark.exchange.ratelimit import RateLimitBudget, Ticket
from spark.exchange.responses import (
    parse_account,
    parse_exchange_info,
    parse_listen_key,
    parse_order_response,
    parse_order_status,
    parse_order_statuses,
    parse_server_time,
    parse_trades,
)
from spark.exchange.timesync import ServerTimeOffset
from spark.exchange.transport import Http11Transport, RequestTemplate
from spark.exchange.venues import VenueProfile

__all__ = ["RestClient", "RestConfig"]

log = logging.getLogger("spark.exchange.rest")

Side = Literal["BUY", "SELL"]


@attrs.frozen(slots=True)
class RestConfig:
    """Transport settings (the runtime fills these from ``[exchange]``). ``pool_size`` and
    ``keepalive_expiry_s`` configure the :class:`Http11Transport` pool; the four timeouts reach
    it through ``httpx.Timeout`` on the client (httpx copies them into each request)."""

    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    write_timeout_s: float = 5.0
    pool_timeout_s: float = 2.0
    pool_size: int = 16
    max_in_flight: int = 12
    keepalive_expiry_s: float = 30.0
    recv_window_ms: int | None = 5000
    max_budget_wait_s: float = 30.0
    pool_timeouts_before_reset: int = 2
    share: float = 1.0
    ceiling: float = 0.95

    def __attrs_post_init__(self) -> None:
        if not 0 < self.max_in_flight < self.pool_size:
            raise ValueError("max_in_flight must be positive and smaller than pool_size")
        if self.pool_timeouts_before_reset < 1:
            raise ValueError("pool_timeouts_before_reset must be at least 1")


class _SendTrace:
    """``trace`` callback (httpcore's names, emitted by ``Http11Transport``): did sending
    start, and when was the body on the socket."""

    __slots__ = ("body_sent_at", "started")

    def __init__(self) -> None:
        self.started = False
        self.body_sent_at: float | None = None

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.started"):
            self.started = True
        elif name.endswith("send_request_body.complete"):
            self.body_sent_at = trio.current_time()


class _Prepared:
    """A request sent from a :class:`RequestTemplate`: the template and the body."""

    __slots__ = ("body", "template")

    def __init__(self, template: RequestTemplate, body: bytes) -> None:
        self.template = template
        self.body = body


@attrs.frozen(slots=True)
class _Outcome:
    body: Any
    sent_ms: int
    received_ms: int


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: Binance does not send it
    return seconds if seconds >= 0 else None


class NoCookies(http.cookiejar.CookieJar):
    """The venue client's cookie jar: keeps nothing, sends nothing.

    Binance's API is authenticated per request (key header, signature) and sets no cookies
    it needs back; a cookie an edge proxy might set is state we do not want to relay between
    orders.  httpx still offers every response to the jar — by building an ``email`` message
    of its headers, ~35 µs per response here — unless the jar declines up front."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class RestClient:
    """Async Binance REST client for one venue profile. Use as ``async with`` or call
    :meth:`aclose`. Safe to share between tasks."""

    def __init__(
        self,
        profile: VenueProfile,
        credentials: Credentials | None = None,
        *,
        config: RestConfig | None = None,
        observer: RestObserver | None = None,
        clock: WallClock = SYSTEM_CLOCK,
        budget: RateLimitBudget | None = None,
        time_offset: ServerTimeOffset | None = None,
    ) -> None:
        self.profile = profile
        self.config = config or RestConfig()
        self._credentials = credentials
        self._observer: RestObserver = observer or NullObserver()
        self._clock = clock
        other_key, other_limit = profile.order_limit_other
        self.budget = budget or RateLimitBudget(
            weight_limits={"1M": profile.weight_limit_1m},
            order_limits={"10S": profile.order_limit_10s, other_key: other_limit},
            share=self.config.share,
            ceiling=self.config.ceiling,
        )
        self.time_offset = time_offset or ServerTimeOffset()
        self._limiter = trio.CapacityLimiter(self.config.max_in_flight)
        self._sync_lock = trio.Lock()
        self._pool_timeouts = 0
        self.client_resets = 0
        # (method, path, headers) -> the serialised head; a few endpoints, one key each.
        self._templates: dict[tuple[str, str, tuple[tuple[str, str], ...]],
                              RequestTemplate] = {}
        self._http, self._transport = self._new_http()
        self._timeout = self._http.timeout.as_dict()

    # --- lifecycle --------------------------------------------------------------------------

    def _new_http(self) -> tuple[httpx.AsyncClient, Http11Transport]:
        """The client (its lifecycle, its defaults, ``build_request``) and the transport under
        it, which :meth:`_send` calls directly."""
        c = self.config
        transport = Http11Transport(
            max_connections=c.pool_size,
            max_keepalive_connections=c.pool_size,
            keepalive_expiry=c.keepalive_expiry_s,
        )
        client = httpx.AsyncClient(
            base_url=self.profile.rest_url,
            # httpx copies these into each request's extensions; the transport enforces them.
            timeout=httpx.Timeout(
                connect=c.connect_timeout_s,
                read=c.read_timeout_s,
                write=c.write_timeout_s,
                pool=c.pool_timeout_s,
            ),
            # Pool limits live in the transport (httpx ignores ``limits=`` with a transport).
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            cookies=NoCookies(),
        )
        return client, transport

    async def aclose(self) -> None:
        await self._http.aclose()


    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.aclose()

    async def _reset_http(self) -> None:
        """Replace a client whose pool looks exhausted by leaked slots."""
        old = self._http
        self._http, self._transport = self._new_http()
        self._pool_timeouts = 0
        self.client_resets += 1
        log.warning("recreating the HTTP client after repeated pool timeouts")
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await old.aclose()

    # --- state for the runtime ----------------------------------------------------------------

    def server_now_s(self) -> float:
        """Estimated server wall-clock time in seconds (the budget's time base)."""
        return self.time_offset.server_seconds(self._clock.now_ms())

    @property
    def banned_until(self) -> float | None:
        """While a 418 ban lasts: when it lifts (server epoch seconds); else ``None``."""
        return self.budget.banned_until(self.server_now_s())

    @property
    def blocked_until(self) -> float | None:
        """While a 429 back-off lasts: when it ends; else ``None``."""
        return self.budget.blocked_until(self.server_now_s())

    # --- plumbing ---------------------------------------------------------------------------

    def _notify(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("exchange observer failed (ignored)")

    async def _call(self, request: RestRequest) -> Any:
        """Send ``request`` and return its decoded JSON body, mapping every failure."""
        called_at = trio.current_time()
        signed = request.endpoint.security is Security.SIGNED
        if signed and self.time_offset.needs_sync:
            await self._sync_if_needed()
        try:
            return (await self._attempt(request, called_at)).body
        except TimestampError:
            if not signed:
                raise
            # Binance rejects -1021 before executing: re-measure once and resend once.
            log.warning("%s: -1021, resyncing server time and retrying once",
                        request.endpoint.name)
            self.time_offset.mark_stale()
            await self._sync_if_needed()
            return (await self._attempt(request, called_at)).body

    async def _sync_if_needed(self) -> None:
        async with self._sync_lock:
            if self.time_offset.needs_sync:
                await self.sync_time()

    async def _wait_for_budget(self, weight: int, is_order: bool) -> float:
        waited = 0.0
        while True:
            now = self.server_now_s()
            wait = self.budget.wait_time(now, weight, is_order)
            if wait <= 0:
                return waited
            banned = self.budget.banned_until(now)
            if wait > self.config.max_budget_wait_s - waited:
                if banned is not None:
                    raise IpBanned(banned - now, until=banned)
                raise RateLimited(wait, local=True)
            await trio.sleep(wait)
            waited += wait

    async def _attempt(self, request: RestRequest, called_at: float) -> _Outcome:
        """One attempt: budget, sign, send, classify. Never retries anything itself."""
        endpoint = request.endpoint
        async with slot(self._limiter):
            budget_wait = await self._wait_for_budget(endpoint.weight, endpoint.counts_order)
            # Sign with a fresh timestamp only now, after any wait, so it cannot go stale.
            sent_ms = self._clock.now_ms()
            encoded = encode(
                request,
                self._credentials,
                timestamp_ms=self.time_offset.timestamp(sent_ms)
                if endpoint.security is Security.SIGNED
                else None,
                recv_window_ms=self.config.recv_window_ms,
            )
            trace = _SendTrace()
            http_request = self._build(encoded, trace)
            # Count it only once nothing can fail before the send (so nothing leaks).
            ticket = self.budget.acquire(self.server_now_s(), endpoint.weight,
                                         endpoint.counts_order)
            started = trio.current_time()
            response = await self._send(endpoint.name, http_request, ticket, trace, started)
            received_ms = self._clock.now_ms()
        elapsed = trio.current_time() - started
        if trace.body_sent_at is not None:
            self._notify(self._observer.on_bytes_sent, endpoint.name,
                         trace.body_sent_at - called_at, budget_wait)
        return self._finish(request, ticket, response, elapsed, sent_ms, received_ms)

    def _build(self, encoded: codec.EncodedRequest,
               trace: _SendTrace) -> httpx.Request | _Prepared:
        """What to send for ``encoded``: the same bytes ``build_request`` would make, cheaper.

        ``AsyncClient.build_request`` parses and merges the URL, copies the client's headers and
        cookies on every call, and the transport then serialises that request again (~0.2 ms
        and later still ~60 µs here, a large share of the per-order budget).  A request without
        a query string (every POST: orders carry their parameters in the body) is sent from a
        :class:`RequestTemplate` — its head built by ``build_request`` and serialised once per
        method, path and header set — plus its body.  Requests with a query string take
        ``build_request`` itself.  Cookies are not sent on either path: Binance sets none, and
        the client's jar keeps none.  ``tests/exchange`` checks both paths put the same bytes
        on the wire."""
        if encoded.query:
            return self._http.build_request(
                encoded.method, encoded.target, content=encoded.body or None,
                headers=encoded.headers, extensions={"trace": trace})
        key = (encoded.method, encoded.path, encoded.headers)
        template = self._templates.get(key)
        if template is None:
            try:
                template = RequestTemplate(self._http.build_request(
                    encoded.method, encoded.path, headers=encoded.headers))
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                # A head that cannot be sent safely (a CR in a header value, a bad scheme):
                # nothing left, as when the transport refuses a built request.
                raise TransportError(f"{encoded.endpoint.name}: {type(exc).__name__} before "
                                     f"sending ({exc})") from None
            self._templates[key] = template
        return _Prepared(template, encoded.body or b"")

    async def _send(
        self,
        name: str,
        http_request: httpx.Request | _Prepared,
        ticket: Ticket,
        trace: _SendTrace,
        started: float,
    ) -> httpx.Response:
        """Send through the transport, every failure mapped by whether bytes had left.

        The transport is called directly rather than through ``AsyncClient.send``: the
        client's layers — auth flow, redirect loop, cookie jar, event hooks, request logging —
        do nothing for a venue client (requests are signed here, redirects are refused, cookies
        never kept) but cost ~28 µs a request on the reference box, part of it before the
        bytes leave.  The transport reads the whole body before returning; ``aread`` only
        collects it."""
        try:
            if isinstance(http_request, _Prepared):
                response = await self._transport.send_prepared(
                    http_request.template, http_request.body, self._timeout, trace)
            else:
                response = await self._transport.handle_async_request(http_request)
                response.request = http_request
            await response.aread()
        except httpx.PoolTimeout:
            self.budget.on_no_response(ticket, self.server_now_s(), may_have_been_sent=False)
            self._notify(self._observer.on_response, name, "transport_error",
                         trio.current_time() - started)
            self._pool_timeouts += 1
            if self._pool_timeouts >= self.config.pool_timeouts_before_reset:
                await self._reset_http()
            raise TransportError(f"{name}: connection pool exhausted") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            self.budget.on_no_response(ticket, self.server_now_s(),
                                       may_have_been_sent=trace.started)
            if isinstance(exc, httpx.TimeoutException):
                label = "timeout"
            else:
                label = "unknown" if trace.started else "transport_error"
            self._notify(self._observer.on_response, name, label, trio.current_time() - started)
            kind = type(exc).__name__
            if not trace.started:
                raise TransportError(f"{name}: {kind} before sending") from exc
            raise UnknownExecutionStatus(f"{name}: {kind} after sending") from exc
        except BaseException:
            # Cancelled (or something unexpected) mid-flight: count it on the safe side.
            self.budget.on_no_response(ticket, self.server_now_s(),
                                       may_have_been_sent=trace.started)
            raise
        self._pool_timeouts = 0
        return response

    def _finish(
        self,
        request: RestRequest,
        ticket: Ticket,
        response: httpx.Response,
        elapsed: float,
        sent_ms: int,
        received_ms: int,
    ) -> _Outcome:
        name = request.endpoint.name
        now = self.server_now_s()
        self.budget.on_response(ticket, now, response.headers.multi_items())
        status = response.status_code
        self._notify(self._observer.on_response, name, str(status), elapsed)
        self._notify(self._observer.on_used_weight, self.budget.used_weight(now))
        content = response.content
        body: Any = None
        parsed = False
        if content:
            try:
                body = orjson.loads(content)
                parsed = True
            except orjson.JSONDecodeError:
                body = None
        error: ExchangeError | None = classify(
            status,
            body if isinstance(body, dict) else content,
            retry_after_s=_retry_after(response.headers),
        )
        if isinstance(error, RateLimited):
            self.budget.on_rate_limited(now, error.retry_after_s)
            self._notify(self._observer.on_rate_limit_state, self.budget.blocked_until(now),
                         self.budget.banned_until(now))
        elif isinstance(error, IpBanned):
            error.until = self.budget.on_banned(now, error.retry_after_s)
            self._notify(self._observer.on_rate_limit_state, self.budget.blocked_until(now),
                         self.budget.banned_until(now))
        if error is not None:
            raise error
        if not parsed:
            raise MalformedResponse(f"{name}: HTTP {status} with a body that is not JSON")
        return _Outcome(body, sent_ms, received_ms)

    # --- time and reference data ---------------------------------------------------------------

    def _time_request(self) -> RestRequest:
        return codec.futures_time() if self.profile.product == "futures" else codec.spot_time()

    async def sync_time(self) -> int:
        """Measure the server-time offset (midpoint of the round trip); returns it in ms."""
        outcome = await self._attempt(self._time_request(), trio.current_time())
        server_ms = parse_server_time(outcome.body)
        return self.time_offset.record(outcome.sent_ms, server_ms, outcome.received_ms)

    async def server_time(self) -> int:
        """``GET /time``: the server's clock in epoch ms (also refreshes the offset)."""
        outcome = await self._attempt(self._time_request(), trio.current_time())
        server_ms = parse_server_time(outcome.body)
        self.time_offset.record(outcome.sent_ms, server_ms, outcome.received_ms)
        return server_ms

    async def exchange_info(
        self, symbols: list[str] | None = None, *, apply_rate_limits: bool = True
    ) -> ExchangeInfo:
        """Filters and rate limits; by default the limits replace the budget's defaults."""
        request = (
            codec.futures_exchange_info()
            if self.profile.product == "futures"
            else codec.spot_exchange_info(symbols)
        )
        info = parse_exchange_info(await self._call(request))
        if apply_rate_limits:
            self.budget.configure_from_rules(info.rate_limits)
        return info

    # --- spot ---------------------------------------------------------------------------------

    async def place_order(
        self,
        symbol: str,
        side: Side,
        order_type: str,
        *,
        new_client_order_id: str,
        quantity: Decimal | None = None,
        quote_order_qty: Decimal | None = None,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        stop_price: Decimal | None = None,
        resp_type: Literal["ACK", "RESULT", "FULL"] = "ACK",
    ) -> OrderAck | OrderResult:
        """``POST /api/v3/order``. Never retried except once after -1021.

        Raises :class:`UnknownExecutionStatus` when the outcome is unknown: query
        ``new_client_order_id`` before anything else.
        """
        request = codec.spot_place_order(
            symbol, side, order_type,
            new_client_order_id=new_client_order_id,
            quantity=quantity, quote_order_qty=quote_order_qty, price=price,
            time_in_force=time_in_force, stop_price=stop_price, resp_type=resp_type,
        )
        return parse_order_response(await self._call(request))

    async def query_order(
        self, symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
    ) -> OrderStatus:
        return parse_order_status(await self._call(codec.spot_query_order(
            symbol, orig_client_order_id=orig_client_order_id, order_id=order_id)))

    async def cancel_order(
        self, symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
    ) -> OrderStatus:
        return parse_order_status(await self._call(codec.spot_cancel_order(
            symbol, orig_client_order_id=orig_client_order_id, order_id=order_id)))

    async def open_orders(self, symbol: str | None = None) -> tuple[OrderStatus, ...]:
        return parse_order_statuses(await self._call(codec.spot_open_orders(symbol)))

    async def my_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        order_id: int | None = None,
        limit: int | None = None,
    ) -> tuple[Trade, ...]:
        return parse_trades(await self._call(codec.spot_my_trades(
            symbol, order_id=order_id, from_id=from_id, start_time=start_time,
            end_time=end_time, limit=limit)))

    async def account(self) -> AccountInfo:
        return parse_account(await self._call(codec.spot_account()))

    # --- USD-M futures -----------------------------------------------------------------------

    async def futures_create_listen_key(self) -> str:
        """``POST /fapi/v1/listenKey``: returns the active key (extended) or a new one."""
        return parse_listen_key(await self._call(codec.futures_listen_key_create()))

    async def futures_keepalive_listen_key(self) -> str | None:
        """``PUT /fapi/v1/listenKey``: extends by 60 min. Raises ``UnknownListenKey`` (-1125)
        when the key is gone: create a new one and reconnect."""
        body = await self._call(codec.futures_listen_key_keepalive())
        return body.get("listenKey") if isinstance(body, dict) else None

    async def futures_close_listen_key(self) -> None:
        await self._call(codec.futures_listen_key_close())

    async def futures_place_order(
        self,
        symbol: str,
        side: Side,
        order_type: str,
        *,
        new_client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        stop_price: Decimal | None = None,
        reduce_only: bool | None = None,
        position_side: str | None = None,
        resp_type: Literal["ACK", "RESULT"] = "ACK",
    ) -> OrderAck | OrderResult:
        """``POST /fapi/v1/order``; same no-retry rule as :meth:`place_order`."""
        request = codec.futures_place_order(
            symbol, side, order_type,
            new_client_order_id=new_client_order_id, quantity=quantity, price=price,
            time_in_force=time_in_force, stop_price=stop_price, reduce_only=reduce_only,
            position_side=position_side, resp_type=resp_type,
        )
        return parse_order_response(await self._call(request))

    async def futures_query_order(
        self, symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
    ) -> OrderStatus:
        return parse_order_status(await self._call(codec.futures_query_order(
            symbol, orig_client_order_id=orig_client_order_id, order_id=order_id)))

    async def futures_cancel_order(
        self, symbol: str, *, orig_client_order_id: str | None = None, order_id: int | None = None
    ) -> OrderStatus:
        return parse_order_status(await self._call(codec.futures_cancel_order(
            symbol, orig_client_order_id=orig_client_order_id, order_id=order_id)))

    async def futures_open_orders(self, symbol: str | None = None) -> tuple[OrderStatus, ...]:
        return parse_order_statuses(await self._call(codec.futures_open_orders(symbol)))

    async def futures_user_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        order_id: int | None = None,
        limit: int | None = None,
    ) -> tuple[Trade, ...]:
        return parse_trades(await self._call(codec.futures_user_trades(
            symbol, order_id=order_id, from_id=from_id, start_time=start_time,
            end_time=end_time, limit=limit)))
