"""The order path end to end: real runtime process, simulated venue over loopback (issue 5)."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_harness import ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN, RuntimeProcess

from spark.actors.intent_log import IntentLog, LoggedIntent

Start = Callable[..., RuntimeProcess]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met in time: {what}")


class Desk:
    """A trader at the control port, plus the venue's ground truth."""

    def __init__(self, rt: RuntimeProcess) -> None:
        self.rt = rt
        assert rt.venue_url is not None
        self.venue = httpx.Client(base_url=rt.venue_url, timeout=10)
        self.trader = rt.client(TRADER_TOKEN)
        self.admin = rt.client(ADMIN_TOKEN)
        wait_until(lambda: rt.get("/readyz").status_code == 200, what="ready to trade")

    def order(self, symbol: str = "BTCUSDT", side: str = "BUY", qty: str = "0.0002",
              price: str | None = None, **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {"symbol": symbol, "side": side, "quantity": qty,
                                "type": "LIMIT" if price else "MARKET", **extra}
        if price:
            body["price"] = price
            body.setdefault("timeInForce", "GTC")
        return self.trader.post("/api/private/orders", json=body)

    def venue_orders(self) -> list[dict[str, Any]]:
        return list(self.venue.get("/_sim/orders").json())

    def venue_trades(self) -> list[dict[str, Any]]:
        return list(self.venue.get("/_sim/trades").json())

    def faults(self, **faults: Any) -> None:
        assert self.venue.post("/_sim/faults", json=faults).status_code == 200

    def price(self, symbol: str = "BTCUSDT") -> Decimal:
        r = self.venue.get("/api/v3/ticker/bookTicker", params={"symbol": symbol}).json()
        return (Decimal(r["bidPrice"]) + Decimal(r["askPrice"])) / 2

    def get_order(self, cid: str) -> dict[str, Any]:
        return dict(self.trader.get(f"/api/private/orders/{cid}").json())

    def close(self) -> None:
        self.venue.close()
        self.trader.close()
        self.admin.close()


@pytest.fixture
def desk(start_runtime: Start) -> Desk:
    d = Desk(start_runtime().wait_ready())
    yield d
    d.close()


def test_market_and_limit_orders_are_acknowledged_and_filled(desk: Desk) -> None:
    market = desk.order()
    assert market.status_code == 200, market.text
    cid = market.json()["clientOrderId"]
    assert market.json()["orderId"] is not None
    wait_until(lambda: desk.get_order(cid)["status"] == "FILLED", what="market filled")
    below = (desk.price() * Decimal("0.97")).quantize(Decimal("0.01"))
    limit = desk.order(price=str(below))
    assert limit.status_code == 200, limit.text
    assert limit.json()["status"] == "NEW"
    venue = {o["clientOrderId"]: o for o in desk.venue_orders()}
    assert venue[cid]["status"] == "FILLED"
    assert venue[limit.json()["clientOrderId"]]["status"] == "NEW"
    # A viewer reads but cannot trade.
    with desk.rt.client(VIEWER_TOKEN) as viewer:
        assert viewer.get(f"/api/private/orders/{cid}").status_code == 200
        assert viewer.post("/api/private/orders", json={}).status_code == 403
    # A duplicate client id is answered with the existing order, never sent twice.
    again = desk.order(clientOrderId=cid)
    assert again.status_code == 200 and again.json()["clientOrderId"] == cid
    assert sum(1 for o in desk.venue_orders() if o["clientOrderId"] == cid) == 1
    # Cancel the resting limit.
    lcid = limit.json()["clientOrderId"]
    assert desk.trader.delete(f"/api/private/orders/{lcid}").status_code == 200
    wait_until(lambda: desk.get_order(lcid)["status"] == "CANCELED", what="canceled")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"symbol": "XRPUSDT"}, "symbol_not_whitelisted"),
        ({"qty": "0.01"}, "max_notional"),  # ~450 USDT > 20
        ({"qty": "0.000001"}, "min_qty"),
        ({"qty": "0.000123456"}, "step_size"),
        ({"price": "1000.00"}, "price_band"),
        ({"price": "44000.001"}, "tick_size"),
        ({"qty": "0.00005"}, "min_notional"),  # ~2.25 USDT < 5
    ],
)
def test_each_risk_rule_rejects_and_nothing_reaches_the_venue(
    desk: Desk, kwargs: dict[str, Any], reason: str
) -> None:
    before = len(desk.venue_orders())
    r = desk.order(**kwargs)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == reason
    assert len(desk.venue_orders()) == before
    metrics = desk.rt.get("/metrics").text
    assert f'spark_order_rejections_total{{reason="{reason}"}} 1.0' in metrics


def test_trade_window_open_orders_and_rate_limits(start_runtime: Start) -> None:
    rt = start_runtime(extra_config="").wait_ready()
    desk = Desk(rt)
    try:
        below = (desk.price() * Decimal("0.97")).quantize(Decimal("0.01"))
        # max_orders_per_minute = 30 in the harness config is generous; the open-orders cap is 10.
        for _ in range(10):
            assert desk.order(price=str(below)).status_code == 200
        r = desk.order(price=str(below))
        assert r.status_code == 422 and r.json()["reason"] == "max_open_orders"
    finally:
        desk.close()


def test_breaker_forced_open_rejects_and_close_accepts(desk: Desk) -> None:
    assert desk.admin.post("/api/private/circuit-breaker/open").status_code == 200
    assert desk.rt.health()["circuit_breaker"]["state"] == "FORCED_OPEN"
    before = len(desk.venue_orders())
    r = desk.order()
    assert r.status_code == 422 and r.json()["reason"] == "circuit_breaker_open"
    assert len(desk.venue_orders()) == before
    # Traders may read the breaker but not force it.
    assert desk.trader.get("/api/private/circuit-breaker").status_code == 200
    assert desk.trader.post("/api/private/circuit-breaker/close").status_code == 403
    assert desk.admin.post("/api/private/circuit-breaker/close").status_code == 200
    assert desk.order().status_code == 200


def test_operator_closes_and_reopens_the_drift_gate(desk: Desk) -> None:
    r = desk.admin.post("/api/private/drift-gate/close")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "closed" and r.json()["forced"] is True
    assert desk.rt.health()["drift_gate"]["state"] == "closed"
    assert desk.rt.health()["trading_state"] != "ACTIVE"
    before = len(desk.venue_orders())
    r = desk.order()
    assert r.status_code == 422 and r.json()["reason"] == "drift_gate"
    assert len(desk.venue_orders()) == before
    # Traders may read the gate but not move it.
    assert desk.trader.get("/api/private/drift-gate").json()["state"] == "closed"
    assert desk.trader.post("/api/private/drift-gate/open").status_code == 403
    r = desk.admin.post("/api/private/drift-gate/open")
    assert r.status_code == 200 and r.json() | {"state": "open", "forced": False} == r.json()
    wait_until(lambda: desk.rt.health()["trading_state"] == "ACTIVE", what="trading resumes")
    assert desk.order().status_code == 200
    audit = desk.admin.get("/api/private/audit").json()
    moves = [a for a in audit if a["action"] == "drift_gate.transition"]
    assert [m["result"] for m in moves][-2:] == ["closed", "open"]
    assert all(m["actor"].startswith("admin") for m in moves[-2:]), moves


def test_failure_storm_trips_the_breaker_and_half_open_probes_close_it(
    start_runtime: Start,
) -> None:
    rt = start_runtime(extra_config="""
[circuit_breaker]
window_s = 30.0
min_calls = 3
failure_rate_threshold = 0.5
open_cooldown_s = 1.0
half_open_probes = 2
""").wait_ready()
    desk = Desk(rt)
    try:
        desk.faults(http_5xx=1.0)
        for _ in range(3):
            desk.order()
        wait_until(lambda: rt.health()["circuit_breaker"]["state"] in ("OPEN", "HALF_OPEN"),
                   what="breaker tripped")
        assert "spark_circuit_breaker_trips_total 1.0" in rt.get("/metrics").text
        desk.venue.delete("/_sim/faults")
        time.sleep(1.2)  # cooldown
        for _ in range(2):
            r = desk.order()
            assert r.status_code == 200, r.text
        wait_until(lambda: rt.health()["circuit_breaker"]["state"] == "CLOSED",
                   what="probes closed the breaker")
    finally:
        desk.close()


def test_kill_switch_signal_cancels_open_orders_and_rejects_new_ones(desk: Desk) -> None:
    below = (desk.price() * Decimal("0.97")).quantize(Decimal("0.01"))
    cids = [desk.order(price=str(below)).json()["clientOrderId"] for _ in range(2)]
    desk.rt.signal(signal.SIGUSR1)
    wait_until(lambda: all(desk.get_order(c)["status"] == "CANCELED" for c in cids),
               what="open orders canceled")
    venue = {o["clientOrderId"]: o["status"] for o in desk.venue_orders()}
    assert all(venue[c] == "CANCELED" for c in cids)
    r = desk.order()
    assert r.status_code == 422 and r.json()["reason"] == "kill_switch"
    desk.rt.signal(signal.SIGUSR2)
    wait_until(lambda: desk.rt.health()["kill_switch"] is False)
    assert desk.order().status_code == 200


def test_confirm_required_parks_until_confirmed_and_expires_otherwise(
    start_runtime: Start,
) -> None:
    rt = start_runtime(extra_config="", env={"LIVE_POLICY": "confirm_required"}).wait_ready()
    desk = Desk(rt)
    try:
        parked = desk.order()
        assert parked.status_code == 200 and parked.json()["status"] == "PARKED"
        cid = parked.json()["clientOrderId"]
        assert all(o["clientOrderId"] != cid for o in desk.venue_orders())
        confirmed = desk.trader.post(f"/api/private/orders/{cid}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        wait_until(lambda: desk.get_order(cid)["status"] == "FILLED", what="confirmed fills")
        assert sum(1 for o in desk.venue_orders() if o["clientOrderId"] == cid) == 1
    finally:
        desk.close()


def test_parked_orders_expire(start_runtime: Start) -> None:
    rt = start_runtime(extra_config="", env={"LIVE_POLICY": "confirm_required"})
    rt.config_path.write_text(rt.config_path.read_text().replace(
        'policy = "auto"', 'policy = "auto"\nconfirm_timeout_s = 1.0'))
    rt.stop()
    rt = start_runtime(config=rt.config_path.read_text().replace("{", "{{").replace("}", "}}"),
                       env={"LIVE_POLICY": "confirm_required"}).wait_ready()
    desk = Desk(rt)
    try:
        cid = desk.order().json()["clientOrderId"]
        wait_until(lambda: desk.get_order(cid)["status"] == "EXPIRED", what="parked expired")
        r = desk.trader.post(f"/api/private/orders/{cid}/confirm")
        assert r.status_code == 409
        assert all(o["clientOrderId"] != cid for o in desk.venue_orders())
    finally:
        desk.close()


def test_503_after_placing_ends_with_exactly_one_order_at_the_venue(desk: Desk) -> None:
    desk.faults(unknown_status=1.0)
    r = desk.order()
    desk.venue.delete("/_sim/faults")
    assert r.status_code == 200, r.text
    cid = r.json()["clientOrderId"]
    wait_until(lambda: desk.get_order(cid)["status"] == "FILLED", what="unknown resolved")
    assert sum(1 for o in desk.venue_orders() if o["clientOrderId"] == cid) == 1
    trades = [t for t in desk.venue_trades() if t["clientOrderId"] == cid]
    assert trades
    assert Decimal(desk.get_order(cid)["executedQty"]) == sum(Decimal(t["qty"]) for t in trades)


def test_clock_skew_triggers_a_time_resync_and_the_order_goes_through(desk: Desk) -> None:
    desk.faults(clock_skew_ms=-5000)  # venue 5 s behind: our timestamps look 5 s ahead
    r = desk.order()
    assert r.status_code == 200, r.text
    cid = r.json()["clientOrderId"]
    wait_until(lambda: desk.get_order(cid)["status"] == "FILLED")
    assert sum(1 for o in desk.venue_orders() if o["clientOrderId"] == cid) == 1


def test_a_429_storm_is_ridden_out_without_a_418(desk: Desk) -> None:
    desk.faults(rate_limit_storm_s=1.5)
    during = [desk.order() for _ in range(4)]
    # Each order either waited out the storm (Retry-After) or was refused as rate limited;
    # none was sent into an IP ban.
    for r in during:
        assert r.status_code == 200 or r.json()["reason"].startswith("venue_rate_limited"), r.text
    time.sleep(1.6)
    r = desk.order()
    assert r.status_code == 200, r.text
    metrics = desk.rt.get("/metrics").text
    assert 'status="429"' in metrics
    assert 'status="418"' not in metrics


def test_fills_reported_before_the_rest_ack_do_not_confuse_the_router(desk: Desk) -> None:
    # The venue answers REST late while the user-data stream reports at once: the router sees
    # NEW/TRADE/FILLED before the ACK, as often happens on Binance.
    desk.faults(latency_ms=400)
    cids = []
    for _ in range(3):
        r = desk.order()
        assert r.status_code == 200, r.text
        cids.append(r.json()["clientOrderId"])
    desk.venue.delete("/_sim/faults")
    for cid in cids:
        wait_until(lambda cid=cid: desk.get_order(cid)["status"] == "FILLED", what=cid)
    health = desk.rt.health()
    assert health["trading_state"] == "ACTIVE", health
    assert desk.admin.get("/api/private/reconciliation").json() == []
    assert desk.order().status_code == 200
    # Every ACK is counted once, even those that arrived after the order's fills.
    wait_until(lambda: "spark_live_orders_placed_total 4.0" in desk.rt.get("/metrics").text,
               what="4 ACKs counted")


def test_intents_are_logged_at_intake_and_rejected_ones_voided(desk: Desk) -> None:
    """The write-ahead record starts before the guard decides; a rejected intent's record is
    voided with the next write, so a restart has nothing to ask the venue about it."""
    rejected = desk.order(qty="0.01", clientOrderId="intake-rejected-1")
    assert rejected.status_code == 422, rejected.text
    placed = desk.order(clientOrderId="intake-placed-1")
    assert placed.status_code == 200, placed.text
    wait_until(lambda: desk.get_order("intake-placed-1")["status"] == "FILLED", what="filled")
    desk.rt.stop()
    log = IntentLog(desk.rt.state)
    assert [i.client_order_id for i in log.read()] == ["intake-placed-1"]
    # The intake write is an AIO submit; on the thread path nothing is written before the wait.
    if any("intent log appends: kernel AIO" in line for line in desk.rt.lines):
        assert b"intake-rejected-1" in log.path.read_bytes()


def test_an_intent_logged_before_a_crash_is_never_sent_by_the_next_process(
        tmp_path: Path) -> None:
    """A record the previous process left (logged at intake, then killed before the send,
    or rejected by its guard): the venue does not have it, so it ends EXPIRED, not resent."""
    cid = "spk-crashed-000001"
    state = tmp_path / "rt" / "var"
    state.mkdir(parents=True)
    IntentLog(state).rewrite([LoggedIntent(
        client_order_id=cid, symbol="BTCUSDT", side="BUY", type="MARKET",
        quantity=Decimal("0.0002"), price=None, time_in_force=None,
        created_ms=int(time.time() * 1000) - 60_000, source="trader")])
    rt = RuntimeProcess(tmp_path / "rt")
    try:
        desk = Desk(rt.wait_ready())
        # The venue cannot have it only once a request sent just before the "crash" could no
        # longer be placed (recvWindow + a margin after the restart): asked about slowly.
        deadline = time.monotonic() + 30.0
        while desk.get_order(cid).get("status") != "EXPIRED":
            assert time.monotonic() < deadline, f"not ended: {desk.get_order(cid)}"
            time.sleep(0.5)
        assert desk.get_order(cid)["reason"] == "not_sent_before_restart"
        assert desk.venue_orders() == []
        assert any("never reached the venue" in line for line in rt.lines)
        desk.close()
    finally:
        rt.stop()
    with sqlite3.connect(state / "spark.db") as db:
        row = db.execute("SELECT status FROM orders WHERE client_order_id = ?",
                         (cid,)).fetchone()
    assert row == ("EXPIRED",)
