"""A venue on an ephemeral port and a tiny Binance REST client, written for these tests alone.

Signing is done here (HMAC-SHA256 hex over the exact query string), independently of the venue's
own code, so a signing bug in the venue cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import attrs
import httpx
import trio

from spark.config.schema import VenueConfig
from spark.core.clock import WallClock
from spark.venue import Venue

KEY = "sim-key"
SECRET = "sim-secret"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(query: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def signed_query(params: dict[str, Any], secret: str = SECRET) -> str:
    query = urlencode(params)
    return f"{query}&signature={sign(query, secret)}"


def quiet_config(**changes: Any) -> VenueConfig:
    """Port 0 and a price path that only moves when a test steps it."""
    return attrs.evolve(VenueConfig(port=0, step_interval_ms=3_600_000.0), **changes)


@attrs.define
class Client:
    """Signed and unsigned calls to one running venue."""

    http: httpx.AsyncClient
    url: str
    key: str = KEY
    secret: str = SECRET

    @property
    def ws_api(self) -> str:
        """The spot WebSocket API's URL."""
        return self.url.replace("http://", "ws://", 1) + "/ws-api/v3"

    async def call(self, method: str, path: str, *, signed: bool = True,
                   **params: Any) -> httpx.Response:
        if signed:
            params.setdefault("timestamp", now_ms())
            query = signed_query(params, self.secret)
        else:
            query = urlencode(params)
        return await self.http.request(method, f"{path}?{query}" if query else path,
                                       headers={"X-MBX-APIKEY": self.key})

    async def ok(self, method: str, path: str, *, signed: bool = True, **params: Any) -> Any:
        response = await self.call(method, path, signed=signed, **params)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
        return response.json()

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running(config: VenueConfig | None = None, *,
                  clock: WallClock | None = None) -> AsyncIterator[Client]:
    """A venue served on 127.0.0.1:0 for the duration of the block."""
    venue = Venue(config if config is not None else quiet_config(), clock=clock)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(venue.run)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Client(http, url)
        nursery.cancel_scope.cancel()
