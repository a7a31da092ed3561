"""Binance's own clients trade on the simulated venue unchanged.

``binance-sdk-spot`` (the official Python SDK, REST ``base_path`` pointed at the venue) and
``ccxt.binance`` (every ``urls['api']`` entry pointed at the venue, spot routes only) each place a
market and a limit order, query, list, cancel and read their trades; a plain ``websockets``
client subscribes to the user data with ``userDataStream.subscribe.signature`` and must receive
the ``executionReport`` of every step of those orders.

The clients are synchronous (requests underneath), so the venue runs in a background thread with
its own ``trio.run`` and the clients are called from the test's thread.  These tests need the
optional extra (``pip install -e '.[interop]'``) and skip without it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from spark.config.schema import VenueConfig
from spark.venue import Venue

pytestmark = pytest.mark.interop

_EXTRA = "needs the optional interop extra: pip install -e '.[interop]'"
sdk_spot = pytest.importorskip("binance_sdk_spot.spot", reason=_EXTRA)
sdk_models = pytest.importorskip("binance_sdk_spot.rest_api.models", reason=_EXTRA)
ccxt = pytest.importorskip("ccxt", reason=_EXTRA)
ws_client = pytest.importorskip("websockets.sync.client", reason="needs websockets (test extra)")

KEY = "sim-key"
SECRET = "sim-secret"


class ThreadedVenue:
    """A venue served by its own ``trio.run`` in a daemon thread."""

    def __init__(self, config: VenueConfig) -> None:
        self.venue = Venue(config)
        self.url = ""
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="venue", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread by start()/stop()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            self.url = await nursery.start(self.venue.run)
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the venue did not start within 10 s"
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the venue did not stop within 10 s"
        if self._failure is not None:
            raise self._failure

    def truth(self, what: str) -> list[dict[str, Any]]:
        """``GET /_sim/orders`` or ``/_sim/trades``: what the venue really did."""
        response = httpx.get(f"{self.url}/_sim/{what}", timeout=5)
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows


@pytest.fixture
def venue() -> Iterator[ThreadedVenue]:
    running = ThreadedVenue(VenueConfig(port=0, step_interval_ms=3_600_000.0))
    running.start()
    try:
        yield running
    finally:
        running.stop()


class UserData:
    """A plain ``websockets`` client on ``/ws-api/v3`` with one user-data subscription."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        params: dict[str, Any] = {"apiKey": KEY, "timestamp": time.time_ns() // 1_000_000}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(SECRET.encode(), payload.encode(),
                                       hashlib.sha256).hexdigest()
        self.ws.send(json.dumps({"id": "subscribe",
                                 "method": "userDataStream.subscribe.signature",
                                 "params": params}))
        reply = json.loads(self.ws.recv(timeout=5))
        assert reply["id"] == "subscribe" and reply["status"] == 200, reply
        self.subscription = reply["result"]["subscriptionId"]
        self.reports: list[dict[str, Any]] = []

    def until(self, expected: dict[int, list[str]], timeout: float = 5.0,
              ) -> dict[int, list[dict[str, Any]]]:
        """Read until each order id in ``expected`` has had exactly those execution types."""
        deadline = time.monotonic() + timeout

        def by_order() -> dict[int, list[dict[str, Any]]]:
            out: dict[int, list[dict[str, Any]]] = {i: [] for i in expected}
            for report in self.reports:
                if report["i"] in out:
                    out[report["i"]].append(report)
            return out

        while {i: [r["x"] for r in rs] for i, rs in by_order().items()} != expected:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = {i: [r["x"] for r in rs] for i, rs in by_order().items()}
                raise AssertionError(f"execution reports: expected {expected}, got {seen}")
            frame = json.loads(self.ws.recv(timeout=left))
            assert frame["subscriptionId"] == self.subscription, frame
            if frame["event"]["e"] == "executionReport":
                self.reports.append(frame["event"])
        return by_order()


@pytest.fixture
def user_data(venue: ThreadedVenue) -> Iterator[UserData]:
    url = venue.url.replace("http://", "ws://", 1) + "/ws-api/v3"
    with ws_client.connect(url, proxy=None, open_timeout=5, close_timeout=2) as ws:
        yield UserData(ws)


def _check_reports(reports: dict[int, list[dict[str, Any]]], trades: list[dict[str, Any]],
                   ) -> None:
    """Each TRADE report carries one of the venue's trades: id, price, qty, commission."""
    fills = {(r["t"], r["L"], r["l"], r["n"], r["N"]) for rs in reports.values()
             for r in rs if r["x"] == "TRADE"}
    truth = {(t["id"], t["price"], t["qty"], t["commission"], t["commissionAsset"])
             for t in trades}
    normalized = {(t, _plain(p), _plain(q), _plain(n), a) for t, p, q, n, a in fills}
    assert normalized == truth


def _plain(text: str) -> str:
    """``45000.01000000`` -> ``45000.01`` (the admin routes print plain decimals)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _no_model_fallbacks(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK logs a warning when a reply does not fit its pydantic model; none may appear."""
    complaints = [r.getMessage() for r in caplog.records
                  if "did not match" in r.getMessage() or "Failed to parse" in r.getMessage()]
    assert complaints == []


# -- binance-sdk-spot -------------------------------------------------------------------------
def test_binance_sdk_spot_trades_on_the_venue(venue: ThreadedVenue, user_data: UserData,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    side, kind, tif = (sdk_models.NewOrderSideEnum, sdk_models.NewOrderTypeEnum,
                       sdk_models.NewOrderTimeInForceEnum)
    config = sdk_spot.ConfigurationRestAPI(api_key=KEY, api_secret=SECRET, base_path=venue.url,
                                           timeout=5000, retries=0)
    api = sdk_spot.Spot(config_rest_api=config).rest_api

    assert api.ping().status == 200
    assert abs(api.time().data().server_time - time.time() * 1000) < 5000
    info = api.exchange_info(symbol="BTCUSDT").data()
    assert [s.symbol for s in info.symbols] == ["BTCUSDT"]

    market = api.new_order(symbol="BTCUSDT", side=side.BUY, type=kind.MARKET, quantity=0.6,
                           new_client_order_id="sdk-market").data()
    assert (market.status, market.executed_qty) == ("FILLED", "0.60000000")
    assert [f.price for f in market.fills] == ["45000.01000000", "45000.02000000"]
    limit = api.new_order(symbol="BTCUSDT", side=side.SELL, type=kind.LIMIT,
                          time_in_force=tif.GTC, quantity=0.25, price=46000.0,
                          new_client_order_id="sdk-limit").data()
    assert (limit.status, limit.fills) == ("NEW", [])

    queried = api.get_order(symbol="BTCUSDT", orig_client_order_id="sdk-limit").data()
    assert (queried.order_id, queried.status, queried.price) == (
        limit.order_id, "NEW", "46000.00000000")
    assert [o.order_id for o in api.get_open_orders(symbol="BTCUSDT").data()] == [limit.order_id]
    cancelled = api.delete_order(symbol="BTCUSDT", order_id=limit.order_id).data()
    assert (cancelled.status, cancelled.orig_client_order_id) == ("CANCELED", "sdk-limit")
    assert api.get_open_orders(symbol="BTCUSDT").data() == []
    history = api.all_orders(symbol="BTCUSDT").data()
    assert [(o.client_order_id, o.status) for o in history] == [
        ("sdk-market", "FILLED"), ("sdk-limit", "CANCELED")]

    trades = api.my_trades(symbol="BTCUSDT").data()
    assert [t.id for t in trades] == [f.trade_id for f in market.fills]
    assert all(t.order_id == market.order_id and t.is_buyer for t in trades)
    balances = {b.asset: b for b in api.get_account(omit_zero_balances=True).data().balances}
    assert balances["BTC"].free == "10.59940000"  # 0.6 bought, 0.1% commission in BTC

    reports = user_data.until({market.order_id: ["NEW", "TRADE", "TRADE"],
                               limit.order_id: ["NEW", "CANCELED"]})
    assert reports[market.order_id][-1]["X"] == "FILLED"
    assert reports[limit.order_id][-1]["C"] == "sdk-limit"
    _check_reports(reports, venue.truth("trades"))
    _no_model_fallbacks(caplog)


# -- ccxt -------------------------------------------------------------------------------------
def _ccxt_on(url: str) -> Any:
    exchange = ccxt.binance({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False,
                             "timeout": 5000})
    api = exchange.urls["api"]
    for name, address in list(api.items()):
        api[name] = re.sub(r"^https?://[^/]+", url, address)
    assert all(address.startswith(url) for address in api.values())
    exchange.options["fetchMarkets"] = {"types": ["spot"]}
    exchange.options["fetchCurrencies"] = False
    exchange.options["fetchMargins"] = False
    return exchange


def test_ccxt_trades_on_the_venue(venue: ThreadedVenue, user_data: UserData) -> None:
    exchange = _ccxt_on(venue.url)
    markets = exchange.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "BNB/USDT"} <= set(markets)
    btc = markets["BTC/USDT"]
    assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 1e-05)
    assert btc["limits"]["cost"]["min"] == 5.0

    market = exchange.create_order("ETH/USDT", "market", "buy", 6)
    assert (market["status"], market["filled"]) == ("closed", 6.0)
    limit = exchange.create_order("ETH/USDT", "limit", "buy", 1.5, 2400)
    assert limit["status"] == "open"
    assert exchange.fetch_order(limit["id"], "ETH/USDT")["status"] == "open"
    assert [o["id"] for o in exchange.fetch_open_orders("ETH/USDT")] == [limit["id"]]
    cancelled = exchange.cancel_order(limit["id"], "ETH/USDT")
    assert cancelled["status"] == "canceled"
    assert exchange.fetch_open_orders("ETH/USDT") == []

    trades = exchange.fetch_my_trades("ETH/USDT")
    assert [t["order"] for t in trades] == [market["id"], market["id"]]  # 5 + 1 at two levels
    assert [t["price"] for t in trades] == [2500.01, 2500.02]
    assert sum(t["amount"] for t in trades) == pytest.approx(6.0)
    assert {t["fee"]["currency"] for t in trades} == {"ETH"}
    balance = exchange.fetch_balance()
    assert balance["ETH"]["free"] == pytest.approx(100 + 6 * 0.999)
    quotes = exchange.fetch_bids_asks(["ETH/USDT"])
    assert quotes["ETH/USDT"]["bid"] < quotes["ETH/USDT"]["ask"]

    market_id, limit_id = int(market["id"]), int(limit["id"])
    reports = user_data.until({market_id: ["NEW", "TRADE", "TRADE"],
                               limit_id: ["NEW", "CANCELED"]})
    assert reports[market_id][0]["c"] == market["clientOrderId"]
    _check_reports(reports, venue.truth("trades"))
    truth = {o["orderId"]: o["status"] for o in venue.truth("orders")}
    assert truth == {market_id: "FILLED", limit_id: "CANCELED"}
