"""Test-side Binance client pieces, written independently of the venue's own code.

The tests sign requests themselves (HMAC-SHA256 hex over the exact query string; WS-API: sorted
``k=v`` params; Ed25519 base64), so a signing bug in the venue cannot hide behind the same bug
in the test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import httpx
import trio
import trio_websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spark.config.schema import VenueConfig
from spark.core.clock import WallClock
from spark.venue import Venue

KEY = "sim-key"
SECRET = "sim-secret"
SPOT_API_YAML = Path(__file__).resolve().parents[3] / "shared" / "binance" / "spot_api.yaml"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signed_query(params: dict[str, Any], secret: str = SECRET) -> str:
    query = urlencode(params)
    return f"{query}&signature={hmac_hex(secret, query)}"


def ws_payload(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def ws_signed(params: dict[str, Any], *, secret: str | None = SECRET,
              private_key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    payload = ws_payload(params)
    if private_key is not None:
        signature = base64.b64encode(private_key.sign(payload.encode())).decode()
    else:
        assert secret is not None
        signature = hmac_hex(secret, payload)
    return {**params, "signature": signature}


def quiet_config(**changes: Any) -> VenueConfig:
    """Default venue, port 0, and a price path that does not move unless a test moves it."""
    base = VenueConfig(port=0, step_interval_ms=3_600_000.0)
    return attrs.evolve(base, **changes)


@attrs.define
class Signed:
    """A tiny Binance REST client over httpx."""

    http: httpx.AsyncClient
    clock: Callable[[], int] = now_ms
    key: str = KEY
    secret: str = SECRET

    async def call(self, method: str, path: str, *, sign: bool = True, key: str | None = None,
                   **params: Any) -> httpx.Response:
        if sign:
            params.setdefault("timestamp", self.clock())
            query = signed_query(params, self.secret)
        else:
            query = urlencode(params)
        headers = {"X-MBX-APIKEY": key if key is not None else self.key}
        return await self.http.request(method, f"{path}?{query}" if query else path,
                                       headers=headers)

    async def ok(self, method: str, path: str, **params: Any) -> Any:
        response = await self.call(method, path, **params)
        assert response.status_code == 200, response.text
        return response.json()


@attrs.define
class Running:
    venue: Venue
    url: str
    http: httpx.AsyncClient
    client: Signed

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running(config: VenueConfig | None = None, *, clock: WallClock | None = None,
                  **venue_kw: Any) -> AsyncIterator[Running]:
    venue = Venue(config or quiet_config(), clock=clock, **venue_kw)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(venue.run)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            stamp = clock.now_ms if clock is not None else now_ms
            yield Running(venue, url, http, Signed(http, clock=stamp))
        nursery.cancel_scope.cancel()


async def subscribe_user_data(ws: trio_websocket.WebSocketConnection, *, timestamp: int,
                              request_id: int = 1) -> int:
    params = ws_signed({"apiKey": KEY, "timestamp": timestamp})
    await ws.send_message(json.dumps({"id": request_id,
                                      "method": "userDataStream.subscribe.signature",
                                      "params": params}))
    reply = json.loads(await ws.get_message())
    assert reply["status"] == 200, reply
    return int(reply["result"]["subscriptionId"])


async def next_json(ws: trio_websocket.WebSocketConnection, timeout: float = 5.0) -> Any:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def events(ws: trio_websocket.WebSocketConnection, count: int,
                 timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` user-data events (unwrapped from ``{"subscriptionId", "event"}``)."""
    out = []
    for _ in range(count):
        frame = await next_json(ws, timeout)
        out.append(frame.get("event", frame))
    return out


async def no_message(ws: trio_websocket.WebSocketConnection, wait: float = 0.3) -> bool:
    with trio.move_on_after(wait):
        await ws.get_message()
        return False
    return True


def d(text: str) -> Decimal:
    return Decimal(text)
