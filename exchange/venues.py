"""Venue profiles: where each ``exchange.mode`` lives and what its default limits are.

One :class:`VenueProfile` per mode. The simulated venue serves everything from one origin
(REST ``/api/v3`` and ``/fapi/v1``, WS API ``/ws-api/v3``, market streams ``/ws/…`` and
``/stream?streams=…``, futures user data ``/private/ws``), so its profile is derived from a
single ``http://host:port``.

Overrides (``[exchange] rest_url`` / ``ws_url``): ``rest_url`` replaces the REST origin;
``ws_url`` is a websocket *origin* (``ws://host:port``) from which every websocket endpoint is
derived with the simulated venue's paths. That lets any mode point at a local venue or proxy.
In ``sim`` mode a missing ``ws_url`` is derived from ``rest_url`` (http→ws, https→wss).

USD-M futures split their websockets by tier on 2026-04-23 (unrouted ``/ws`` URLs were
retired): ``/public`` for high-frequency book data (``bookTicker``, ``depth``, ``trade``),
``/market`` for regular market data (``aggTrade``, ``markPrice``, ``kline``), ``/private`` for
user data. Spark reads ``bookTicker``/``trade`` only, so a futures ``market_ws_url`` is the
``/public`` tier; ``/market``-tier streams would need their own origin.
"""

from __future__ import annotations

from typing import Literal, get_args

import attrs

__all__ = ["Mode", "Product", "VenueProfile", "venue_profile"]

Mode = Literal["sim", "spot-testnet", "futures-testnet", "spot", "futures"]
Product = Literal["spot", "futures"]

MODES: tuple[str, ...] = get_args(Mode)

DEFAULT_SIM_URL = "http://127.0.0.1:9400"


@attrs.frozen(slots=True)
class VenueProfile:
    """Where to reach one venue, and its default rate limits until exchangeInfo says otherwise."""

    mode: Mode
    product: Product
    rest_url: str  # origin, no trailing slash
    ws_api_url: str | None  # spot WebSocket API (full URL); None on futures
    market_ws_url: str  # market streams: + "/ws/<stream>" or "/stream?streams=…"
    user_data_ws_url: str | None  # futures user data (full path, query added per key)
    weight_limit_1m: int
    order_limit_10s: int
    order_limit_other: tuple[str, int]  # second order interval: spot ("1D", …), futures ("1M", …)
    live: bool  # real money

    @property
    def is_sim(self) -> bool:
        return self.mode == "sim"


def _strip(url: str) -> str:
    return url.rstrip("/")


def _ws_origin_from_http(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    raise ValueError(f"not an http(s) URL: {url!r}")


def _profile(
    mode: Mode,
    product: Product,
    *,
    rest: str,
    ws_api: str | None,
    market: str,
    user_data: str | None,
    live: bool,
) -> VenueProfile:
    # Binance defaults: spot 6000 weight/min, 100 orders/10 s, 200k orders/day;
    # USD-M futures 2400 weight/min, 300 orders/10 s, 1200 orders/min.
    spot = product == "spot"
    return VenueProfile(
        mode=mode,
        product=product,
        rest_url=_strip(rest),
        ws_api_url=ws_api,
        market_ws_url=_strip(market),
        user_data_ws_url=user_data,
        weight_limit_1m=6000 if spot else 2400,
        order_limit_10s=100 if spot else 300,
        order_limit_other=("1D", 200_000) if spot else ("1M", 1200),
        live=live,
    )


def _from_ws_origin(
    mode: Mode, product: Product, rest_url: str, ws_origin: str, live: bool
) -> VenueProfile:
    return _profile(
        mode,
        product,
        rest=rest_url,
        ws_api=f"{ws_origin}/ws-api/v3" if product == "spot" else None,
        market=ws_origin,
        user_data=f"{ws_origin}/private/ws" if product == "futures" else None,
        live=live,
    )


_REAL: dict[str, VenueProfile] = {
    "spot": _profile(
        "spot",
        "spot",
        rest="https://api.binance.com",
        ws_api="wss://ws-api.binance.com:443/ws-api/v3",
        market="wss://stream.binance.com:9443",
        user_data=None,
        live=True,
    ),
    "spot-testnet": _profile(
        "spot-testnet",
        "spot",
        rest="https://testnet.binance.vision",
        ws_api="wss://ws-api.testnet.binance.vision/ws-api/v3",
        market="wss://stream.testnet.binance.vision",
        user_data=None,
        live=False,
    ),
    "futures": _profile(
        "futures",
        "futures",
        rest="https://fapi.binance.com",
        ws_api=None,
        market="wss://fstream.binance.com/public",
        user_data="wss://fstream.binance.com/private/ws",
        live=True,
    ),
    "futures-testnet": _profile(
        "futures-testnet",
        "futures",
        rest="https://testnet.binancefuture.com",
        ws_api=None,
        market="wss://fstream.binancefuture.com/public",
        user_data="wss://fstream.binancefuture.com/private/ws",
        live=False,
    ),
}


def venue_profile(
    mode: str,
    *,
    rest_url: str | None = None,
    ws_url: str | None = None,
    sim_product: Product = "spot",
) -> VenueProfile:
    """The profile for ``mode`` with the config's overrides applied.

    ``sim_product`` picks which half of the simulated venue (spot or the futures subset)
    this profile drives; the simulated venue serves both on the same origin.
    """
    if mode not in MODES:
        raise ValueError(f"unknown exchange mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "sim":
        rest = _strip(rest_url or DEFAULT_SIM_URL)
        ws = _strip(ws_url) if ws_url else _ws_origin_from_http(rest)
        return _from_ws_origin("sim", sim_product, rest, ws, live=False)
    base = _REAL[mode]
    if ws_url:
        return _from_ws_origin(
            base.mode, base.product, rest_url or base.rest_url, _strip(ws_url), live=base.live
        )
    if rest_url:
        return attrs.evolve(base, rest_url=_strip(rest_url))
    return base
