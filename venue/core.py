"""The whole simulated venue without I/O: markets, engines, credentials, limits, listenKeys and
faults, driven by calls that carry the host's wall-clock ms.

The server calls :meth:`VenueCore.step` on a timer and hands REST / WebSocket-API requests to
:class:`spark.venue.rest.RestApi` / :class:`spark.venue.wsapi.WsApiSession`, both of which
work on this object; after every call it drains :attr:`VenueCore.outbox` to the websockets.
Injected clock skew is applied here, once: every ``host_ms`` becomes venue time
``host_ms + clock_skew_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spark.config.schema import VenueConfig
from spark.core.secret import Secret
from spark.venue.accounts import Balances, Credential
from spark.venue.auth import load_ed25519_public_key
from spark.venue.book import Market
from spark.venue.errors import BadSymbol, RejectedApiKey
from spark.venue.events import book_ticker, listen_key_expired
from spark.venue.faults import Faults
from spark.venue.futures import MARGIN_ASSET, FuturesEngine
from spark.venue.listenkeys import ListenKeys
from spark.venue.orders import Ids
from spark.venue.outbox import ListenKeyEnded, MarketEvent, Outbox
from spark.venue.pricepath import PricePath, RandomWalk, Replay, read_price_csv
from spark.venue.ratelimit import RateLimiter
from spark.venue.shapes import truth_order, truth_trade
from spark.venue.spot import SpotEngine
from spark.venue.symbols import SymbolSpec

ACCOUNT = "main"
FUTURES_FIRST_ORDER_ID = 1_000_000_000
"""Futures ids start far from spot's so ground-truth rows of both markets never collide."""


class VenueCore:
    """One account, its spot and futures engines, and the venue's rules."""

    def __init__(
        self,
        config: VenueConfig,
        *,
        api_secret: str | Secret | None,
        ed25519_public_key: Ed25519PublicKey | None = None,
        prices: Mapping[str, Sequence[Decimal]] | None = None,
    ) -> None:
        self.config = config
        seed = config.seed
        if prices is None and config.price_csv:
            prices = read_price_csv(config.price_csv)
        self.markets: dict[str, Market] = {}
        for symbol, cfg in config.symbols.items():
            spec = SymbolSpec.from_config(symbol, cfg)
            path: PricePath
            if prices is not None and symbol in prices:
                path = Replay(list(prices[symbol]), spec.tick_size)
            else:
                path = RandomWalk(seed=seed, symbol=symbol, price=cfg.price, tick=spec.tick_size,
                                  volatility=cfg.volatility, drift=cfg.drift)
            self.markets[symbol] = Market(spec, path, cfg)

        if ed25519_public_key is None and config.ed25519_public_key_file:
            ed25519_public_key = load_ed25519_public_key(config.ed25519_public_key_file)
        secret = Secret(api_secret) if isinstance(api_secret, str) else api_secret
        self.credentials: dict[str, Credential] = {}
        self.add_key(config.api_key, secret=secret, ed25519=ed25519_public_key)

        self.outbox = Outbox()
        self.balances = Balances(config.balances)
        self.spot = SpotEngine(markets=self.markets, balances=self.balances, ids=Ids(seed),
                               commission_rate=config.commission_rate, emit=self.outbox.put,
                               account=ACCOUNT)
        self.futures = FuturesEngine(
            markets=self.markets,
            wallet=Decimal(config.balances.get(MARGIN_ASSET, Decimal(0))),
            ids=Ids(seed + 1, first_order_id=FUTURES_FIRST_ORDER_ID,
                    first_trade_id=FUTURES_FIRST_ORDER_ID),
            commission_rate=config.commission_rate,
            emit=self.outbox.put,
            account=ACCOUNT,
        )
        self.limiter = RateLimiter(
            weight_limit=config.weight_limit_1m,
            order_limit_10s=config.order_limit_10s,
            order_limit_1d=config.order_limit_1d,
            ban_after_429s=config.ban_after_429s,
            ban_ms=int(config.ban_s * 1000),
        )
        self.listen_keys = ListenKeys(seed)
        self.faults = Faults(seed, config.chaos)
        self.steps = 0

    def start(self, host_ms: int) -> None:
        """Begin the timed faults the config asks for from the start (``rate_limit_storm_s``)."""
        storm = self.config.chaos.rate_limit_storm_s
        if storm > 0:
            self.limiter.storm(storm, self.now(host_ms))

    # -- time -------------------------------------------------------------------------------
    def now(self, host_ms: int) -> int:
        """Venue time: the host's wall clock plus any injected skew."""
        return host_ms + self.faults.settings.clock_skew_ms

    # -- credentials ------------------------------------------------------------------------
    def add_key(self, api_key: str, *, secret: Secret | str | None = None,
                ed25519: Ed25519PublicKey | None = None) -> Credential:
        """Register an API key of the account (tests add Ed25519-only keys this way)."""
        if isinstance(secret, str):
            secret = Secret(secret)
        credential = Credential(api_key=api_key, secret=secret, ed25519=ed25519, account=ACCOUNT)
        self.credentials[api_key] = credential
        return credential

    def credential(self, api_key: str) -> Credential:
        try:
            return self.credentials[api_key]
        except KeyError:
            raise RejectedApiKey() from None

    # -- market -----------------------------------------------------------------------------
    def market(self, symbol: str) -> Market:
        try:
            return self.markets[symbol]
        except KeyError:
            raise BadSymbol() from None

    def step(self, host_ms: int) -> None:
        """One price step of every symbol: fill what the move crosses, expire listenKeys."""
        now = self.now(host_ms)
        self.steps += 1
        for symbol, market in self.markets.items():
            market.step()
            self.spot.on_market_move(symbol, now)
            self.futures.on_market_move(symbol, now)
            self.outbox.put(MarketEvent(f"{symbol.lower()}@bookTicker", book_ticker(market)))
        self.expire_listen_keys(host_ms)

    def set_price(self, symbol: str, price: Decimal, host_ms: int) -> None:
        """Move ``symbol`` to ``price`` now and fill the resting orders it crosses."""
        now = self.now(host_ms)
        market = self.market(symbol)
        market.set_price(price)
        self.spot.on_market_move(symbol, now)
        self.futures.on_market_move(symbol, now)
        self.outbox.put(MarketEvent(f"{symbol.lower()}@bookTicker", book_ticker(market)))

    # -- listenKeys -------------------------------------------------------------------------
    def expire_listen_keys(self, host_ms: int, *, everything: bool = False) -> list[str]:
        now = self.now(host_ms)
        keys = self.listen_keys.expire_all() if everything else self.listen_keys.expire_due(now)
        for key in keys:
            self.outbox.put(ListenKeyEnded(key, expired=True,
                                           payload=listen_key_expired(now, key)))
        return keys

    # -- ground truth -----------------------------------------------------------------------
    def truth_orders(self) -> list[dict[str, Any]]:
        rows = [truth_order(o, "spot") for o in self.spot.orders.values()]
        rows += [truth_order(o, "futures") for o in self.futures.orders.values()]
        return rows

    def truth_trades(self) -> list[dict[str, Any]]:
        rows = [truth_trade(t, "spot") for t in self.spot.trades]
        rows += [truth_trade(t, "futures") for t in self.futures.trades]
        return rows
