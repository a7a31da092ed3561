"""``/_sim/…`` admin routes: ground truth and fault injection (loopback clients only).

These have no Binance equivalent; tests, benchmarks and demos use them to see what the venue
really did and to make it misbehave on purpose.  Anything not from a loopback address gets 403.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spark.venue.errors import BadSymbol
from spark.venue.faults import FaultError
from spark.venue.host import VenueHost
from spark.venue.numbers import at, plain


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "localhost")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


class Admin:
    """The admin routes of one :class:`~spark.venue.host.VenueHost`."""

    def __init__(self, venue: VenueHost) -> None:
        self.venue = venue

    def routes(self) -> list[Route]:
        guard = self._guard
        return [
            Route("/_sim/orders", guard(self.orders), methods=["GET"]),
            Route("/_sim/trades", guard(self.trades), methods=["GET"]),
            Route("/_sim/state", guard(self.state), methods=["GET"]),
            Route("/_sim/ws/drop", guard(self.drop), methods=["POST"]),
            Route("/_sim/ws/stall", guard(self.stall), methods=["POST", "DELETE"]),
            Route("/_sim/listenkeys/expire", guard(self.expire), methods=["POST"]),
            Route("/_sim/faults", guard(self.faults), methods=["GET", "POST", "DELETE"]),
            Route("/_sim/price", guard(self.price), methods=["POST"]),
            Route("/_sim/step", guard(self.step), methods=["POST"]),
            Route("/_sim/server-shutdown", guard(self.server_shutdown), methods=["POST"]),
        ]

    def _guard(self, handler: Any) -> Any:
        async def guarded(request: Request) -> Response:
            host = request.client.host if request.client else ""
            if not is_loopback(host):
                return _json({"error": "admin routes are loopback only"}, 403)
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except (ValueError, FaultError, orjson.JSONDecodeError) as exc:
                return _json({"error": str(exc)}, 400)

        guarded.__name__ = handler.__name__
        return guarded

    def _now(self) -> int:
        return self.venue.core.now(self.venue.now_ms())

    async def orders(self, request: Request) -> Response:
        return _json(self.venue.core.truth_orders())

    async def trades(self, request: Request) -> Response:
        return _json(self.venue.core.truth_trades())

    async def state(self, request: Request) -> Response:
        core = self.venue.core
        return _json({
            "url": self.venue.url,
            "steps": core.steps,
            "prices": {s: plain(m.last) for s, m in core.markets.items()},
            "faults": core.faults.snapshot(),
            "stalled": self.venue.hub.stall.stalled,
            "connections": len(self.venue.hub.connections),
            "balances": {a: {"free": plain(f), "locked": plain(lk)}
                         for a, f, lk in core.balances.rows()},
        })

    async def drop(self, request: Request) -> Response:
        return _json({"dropped": self.venue.hub.drop_all()})

    async def stall(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.venue.hub.stall.resume()
            return _json({"stalled": False})
        body = await _body(request)
        duration = body.get("duration_s")
        if duration is not None and (isinstance(duration, bool)
                                     or not isinstance(duration, int | float) or duration <= 0):
            raise ValueError("duration_s must be a positive number")
        self.venue.stall(float(duration) if duration is not None else None)
        return _json({"stalled": True, "duration_s": duration})

    async def expire(self, request: Request) -> Response:
        venue = self.venue
        keys = venue.core.expire_listen_keys(venue.now_ms(), everything=True)
        terminated = venue.hub.terminate_subscriptions(self._now())
        venue.flush()
        return _json({"listenKeys": len(keys), "subscriptions": terminated})

    async def faults(self, request: Request) -> Response:
        core = self.venue.core
        if request.method == "DELETE":
            core.faults.clear()
            core.limiter.clear_faults()
        elif request.method == "POST":
            one_shot = core.faults.update(await _body(request))
            now = self._now()
            if "rate_limit_storm_s" in one_shot:
                core.limiter.storm(one_shot["rate_limit_storm_s"], now)
            if "ban_s" in one_shot:
                core.limiter.ban_all(one_shot["ban_s"], now)
        return _json(core.faults.snapshot())

    async def price(self, request: Request) -> Response:
        body = await _body(request)
        symbol = body.get("symbol")
        try:
            price = Decimal(str(body.get("price")))
        except InvalidOperation:
            raise ValueError("price must be a decimal number") from None
        if not isinstance(symbol, str) or not price.is_finite() or price <= 0:
            raise ValueError("need {\"symbol\": \"BTCUSDT\", \"price\": \"45000.50\"}")
        venue = self.venue
        try:
            venue.core.set_price(symbol, price, venue.now_ms())
        except BadSymbol:
            return _json({"error": f"unknown symbol {symbol}"}, 404)
        venue.flush()
        market = venue.core.markets[symbol]
        return _json({"symbol": symbol, "price": at(market.last, market.spec.tick_size)})

    async def step(self, request: Request) -> Response:
        body = await _body(request)
        count = body.get("n", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10000:
            raise ValueError("n must be an integer between 1 and 10000")
        venue = self.venue
        for _ in range(count):
            venue.core.step(venue.now_ms())
            venue.flush()
        return _json({"steps": venue.core.steps})

    async def server_shutdown(self, request: Request) -> Response:
        return _json({"connections": self.venue.hub.server_shutdown(self._now())})
