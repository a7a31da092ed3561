"""The chaos desk: trades through the runtime's control port while the venue misbehaves, then
compares the runtime's view (control port, metrics, database) with the venue's ground truth.

The venue runs with a flat price path (volatility 0) and a thin book (0.0001 BTC per level), so
every fill is one we caused: a MARKET order of 0.0003 walks three levels (three trades, two
``PARTIALLY_FILLED`` reports then ``FILLED``), a LIMIT rests until :meth:`ChaosDesk.cross` moves
the price through it (one maker trade).
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from runtime_harness import ADMIN_TOKEN, TRADER_TOKEN, RuntimeProcess

SYMBOL = "BTCUSDT"
BASE_PRICE = Decimal(45000)
TICK = Decimal("0.01")
MARKET_QTY = "0.0003"
LIMIT_QTY = "0.0004"
CONVERGE_S = 30.0
ROUNDS = 6  # x 5 orders = M = 30 orders per scenario
RETRY_REASONS = ("trading_halted", "no_reference_price")

CHAOS_CONFIG = """
[runtime]
shutdown_grace_s = 10.0
log_level = "INFO"
log_format = "json"
allow_root = true
state_dir = "{{state}}"

[exchange]
mode = "{mode}"
rest_url = "{rest_url}"
ws_url = "{ws_url}"

[control]
port = 0
rate_limit_per_min = 100000
admin_rate_limit_per_min = 100000

[database]
url = "sqlite:///{{state}}/spark.db"

[writer]
spool_dir = "{{state}}/spool"

[risk]
trade_window = "00:00-24:00"
whitelist = ["BTCUSDT"]
max_notional = 50
max_open_orders = 50
max_orders_per_minute = 1000
max_position_notional = 100000

[live]
policy = "auto"

[drift_gate]
enabled = false

[ws]
stall_timeout_s = {stall_timeout_s}
backoff_initial_s = 0.1
backoff_max_s = 1.0

[listenkey]
retry_initial_s = 0.2
retry_max_s = 2.0

[metrics]
loop_lag_interval_s = 0.1

[venue]
port = 0
seed = {seed}

[venue.symbols.BTCUSDT]
price = "45000"
step_size = "0.00001"
min_qty = "0.00001"
depth_qty = "0.0001"
depth_levels = 50
volatility = 0.0
{extra}"""


def chaos_config(*, seed: int = 7, mode: str = "sim", rest_url: str = "", ws_url: str = "",
                 stall_timeout_s: float = 30.0, extra: str = "") -> str:
    """A runtime config (``{state}`` is filled in by the harness); ``extra`` is appended (more
    ``[venue.*]`` tables)."""
    return CHAOS_CONFIG.format(seed=seed, mode=mode, rest_url=rest_url, ws_url=ws_url,
                               stall_timeout_s=stall_timeout_s, extra=extra)


def wait_until(predicate: Callable[[], bool], timeout: float = CONVERGE_S,
               what: str = "", interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {what}")


class VenueProcess:
    """``spark-runtime venue`` on port 0; its URL is the first line it prints."""

    def __init__(self, home: Path, *, seed: int) -> None:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "venue.toml"
        # The venue takes [venue] from a full spark.toml; rest_url keeps the whitelist check off.
        config.write_text(chaos_config(seed=seed, rest_url="http://127.0.0.1:1")
                          .format(state=home))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spark.runtime.cli", "venue", "--port", "0",
             "--seed", str(seed), "-c", str(config)],
            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        found = re.search(r"(http://[0-9.]+:\d+)", first)
        assert found, f"venue did not start: {first!r}"
        self.url = found.group(1)
        self.ws_url = "ws" + self.url[len("http"):]
        # Keep draining its output so it never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._drain.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def every(n: int, action: Callable[[], None]) -> Callable[[str], None]:
    """A :meth:`ChaosDesk.round` hook that runs ``action`` after every ``n``-th order."""
    count = 0
    lock = threading.Lock()

    def hook(cid: str) -> None:
        nonlocal count
        with lock:
            count += 1
            due = count % n == 0
        if due:
            action()

    return hook


def logged(rt: RuntimeProcess, pattern: str) -> int:
    """How many of the runtime's log lines match the regular expression ``pattern``."""
    found = re.compile(pattern).search
    return sum(1 for line in list(rt.lines) if found(line))


def logged_more(rt: RuntimeProcess, pattern: str, than: int) -> Callable[[], bool]:
    """A predicate: more than ``than`` log lines match ``pattern``."""
    return lambda: logged(rt, pattern) > than


def log_digest(rt: RuntimeProcess, lines: int = 80) -> str:
    """The runtime's own log lines (no audit, no HTTP access), newest last: for failures."""
    out = []
    for record in rt.records():
        logger = str(record.get("logger", ""))
        if logger.startswith("spark.") and "audit" not in logger and "http" not in logger:
            out.append(f"{str(record.get('ts', ''))[11:]} {record.get('level')} {logger} "
                       f"{str(record.get('msg'))[:300]}")
    return "\n".join(out[-lines:])


def and_resubscribed(rt: RuntimeProcess, fault: Callable[[], None],
                     marker: str = "subscribed on connection") -> Callable[[], None]:
    """``fault``, then wait until the user-data stream is back (one fault at a time, so each
    one costs the runtime its own reconnect while the other orders of the round go on)."""
    lock = threading.Lock()

    def run() -> None:
        with lock:
            before = logged(rt, marker)
            fault()
            wait_until(logged_more(rt, marker, before), what=f"user data back ({marker})")

    return run


def _num(value: Any) -> Decimal:
    return Decimal(str(value)).normalize()


OrderView = dict[str, tuple[str, Decimal]]


class ChaosDesk:
    """A trader and an operator at the control port, plus the venue's ground truth."""

    def __init__(self, rt: RuntimeProcess, venue_url: str, *, product: str = "spot") -> None:
        self.rt = rt
        self.product = product
        self.venue = httpx.Client(base_url=venue_url, timeout=10)
        self.trader = rt.client(TRADER_TOKEN)
        self.admin = rt.client(ADMIN_TOKEN)
        self.placed: list[str] = []
        self.fills_before = 0  # trades a previous runtime stored (this one does not count them)
        # Orders a previous runtime stored as final: a restarted router leaves them out of its
        # table (GET /api/private/orders), the database keeps them.
        self.stored_final: OrderView = {}
        self.acked: Counter[str] = Counter()  # reconciliation entry kinds acknowledged
        self.price = BASE_PRICE
        self._pool = ThreadPoolExecutor(max_workers=5)
        self._lock = threading.Lock()
        wait_until(self._ready, 60.0, "ready to trade")

    def _ready(self) -> bool:
        r = self.rt.get("/readyz")
        if r.status_code == 200:
            return True
        if r.json().get("reason") == "halted":
            # What the startup reconciliation found (fills while we were down) is the
            # operator's to confirm.
            self.ack_pending()
        return False

    def close(self) -> None:
        self._pool.shutdown()
        self.venue.close()
        self.trader.close()
        self.admin.close()

    # -- the venue ---------------------------------------------------------------------------

    def sim(self, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.venue.post(f"/_sim/{path}", json=body or {})
        assert r.status_code == 200, r.text
        return r.json()

    def faults(self, **faults: Any) -> None:
        self.sim("faults", faults)

    def clear_faults(self) -> None:
        assert self.venue.delete("/_sim/faults").status_code == 200

    def set_price(self, price: Decimal) -> None:
        self.sim("price", {"symbol": SYMBOL, "price": str(price)})
        self.price = price

    def venue_orders(self) -> OrderView:
        rows = self.venue.get("/_sim/orders").json()
        return {o["clientOrderId"]: (o["status"], _num(o["executedQty"]))
                for o in rows if o["market"] == self.product}

    def venue_trades(self) -> list[dict[str, Any]]:
        rows = self.venue.get("/_sim/trades").json()
        return [t for t in rows if t["market"] == self.product]

    # -- the runtime -------------------------------------------------------------------------

    def place(self, side: str, qty: str, price: Decimal | None = None) -> str:
        """Place through the control port; acknowledge reconciliation items that halt trading
        (an operator's job after a reconnect with missed fills) and try again; wait for the
        first reference price (``/readyz`` does not)."""
        body: dict[str, Any] = {"symbol": SYMBOL, "side": side, "quantity": qty,
                                "type": "LIMIT" if price is not None else "MARKET"}
        if price is not None:
            body["price"] = str(price)
            body["timeInForce"] = "GTC"
        deadline = time.monotonic() + CONVERGE_S
        while True:
            r = self.trader.post("/api/private/orders", json=body)
            if r.status_code == 200:
                cid = str(r.json()["clientOrderId"])
                self.placed.append(cid)
                return cid
            reason = r.json().get("reason") if r.status_code == 422 else None
            assert reason in RETRY_REASONS and time.monotonic() < deadline, \
                f"order refused: {r.status_code} {r.text}"
            if reason == "trading_halted":
                self.ack_pending()
            time.sleep(0.05)

    def cancel(self, cid: str) -> None:
        r = self.trader.delete(f"/api/private/orders/{cid}")
        assert r.status_code in (200, 409), r.text

    def pending(self) -> list[dict[str, Any]]:
        return list(self.admin.get("/api/private/reconciliation").json())

    def ack_pending(self) -> None:
        for entry in self.pending():
            r = self.admin.post(f"/api/private/reconciliation/{entry['id']}/ack")
            if r.status_code == 200:
                with self._lock:
                    self.acked[entry["kind"]] += 1

    def runtime_orders(self) -> OrderView:
        rows = self.trader.get("/api/private/orders").json()
        return {o["clientOrderId"]: (o["status"], _num(o["executedQty"])) for o in rows}

    def fills_metric(self) -> int:
        text = self.rt.get("/metrics").text
        found = re.search(r"^spark_live_fills_total (\S+)$", text, re.MULTILINE)
        assert found, "spark_live_fills_total missing from /metrics"
        return int(float(found.group(1)))

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        total = 0.0
        for line in self.rt.get("/metrics").text.splitlines():
            found = re.fullmatch(rf"{re.escape(name)}(?:{{(.*)}})? (\S+)", line)
            if found and all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
                total += float(found.group(2))
        return total

    # -- trading -----------------------------------------------------------------------------

    def cross(self, side: str, limit: Decimal) -> None:
        """Move the price through a resting ``side`` order at ``limit``, far enough that the
        book beyond it fills the order at once (one maker trade at ``limit``)."""
        self.set_price(limit - 12 * TICK if side == "BUY" else limit + 12 * TICK)

    def round(self, hook: Callable[[str], None] = lambda cid: None) -> None:
        """Five orders at once: MARKET BUY and SELL (three trades each), a LIMIT BUY and a LIMIT
        SELL that rest and then fill when the price moves through them, and a LIMIT that is
        cancelled. ``hook`` runs after each order is placed (that is where the faults go)."""
        p = self.price
        buy_at = (p * Decimal("0.98")).quantize(TICK)
        sell_at = (p * Decimal("1.02")).quantize(TICK)
        doomed_at = (p * Decimal("0.97")).quantize(TICK)
        orders = [("BUY", MARKET_QTY, None), ("SELL", MARKET_QTY, None),
                  ("BUY", LIMIT_QTY, buy_at), ("SELL", LIMIT_QTY, sell_at),
                  ("BUY", LIMIT_QTY, doomed_at)]

        def one(order: tuple[str, str, Decimal | None]) -> str:
            cid = self.place(*order)
            hook(cid)
            return cid

        # Concurrent, as a strategy would send them: the router sees batches, not a queue.
        cids = list(self._pool.map(one, orders))
        self.cancel(cids[-1])
        self.cross("BUY", buy_at)
        self.cross("SELL", sell_at)
        self.set_price(p)

    # -- the verdict ---------------------------------------------------------------------------

    def differences(self) -> list[str]:
        """What still differs between the runtime and the venue (empty: converged)."""
        problems: list[str] = []
        venue = self.venue_orders()
        ours = self.runtime_orders()
        for cid, truth in sorted(venue.items()):
            mine = ours.get(cid)
            if mine is None and self.stored_final.get(cid) == truth:
                continue  # final before a restart: in the database, no longer in the table
            if mine != truth:
                problems.append(f"{cid}: runtime {mine}, venue {truth}")
        for cid in sorted(set(ours) - set(venue)):
            problems.append(f"{cid}: runtime {ours[cid]}, unknown at the venue")
        missing = set(self.placed) - set(venue)
        if missing:
            problems.append(f"placed but not at the venue: {sorted(missing)}")
        fills, trades = self.fills_metric(), len(self.venue_trades())
        if fills != trades - self.fills_before:
            problems.append(f"spark_live_fills_total {fills}, venue trades {trades}, of which "
                            f"{self.fills_before} were stored before this process started")
        return problems

    def converge(self, timeout: float = CONVERGE_S) -> None:
        """Wait until the runtime's view equals the venue's; fail with the differences."""
        deadline = time.monotonic() + timeout
        while True:
            problems = self.differences()
            if not problems:
                return
            if time.monotonic() > deadline:
                raise AssertionError("runtime and venue disagree:\n" + "\n".join(problems))
            time.sleep(0.2)


# -- the database, read after the runtime has stopped ------------------------------------------


@contextmanager
def database(state: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(state / "spark.db")
    try:
        yield conn
    finally:
        conn.close()


FINAL = ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED")


def stored_orders(state: Path) -> OrderView:
    """The ``orders`` table: status and executed quantity per client order id."""
    with database(state) as db:
        return {c: (s, _num(q)) for c, s, q in db.execute(
            "SELECT client_order_id, status, executed_qty FROM orders")}


def check_database(state: Path, venue_trades: list[dict[str, Any]], venue_orders: OrderView,
                   *, orders_table: bool = True, trade_executions_once: bool = True,
                   ) -> list[str]:
    """Trades rows equal the venue's trades exactly, once each; executions hold each report
    once (by execution id, and each trade id once among TRADE reports); the orders table
    agrees with the venue."""
    problems: list[str] = []
    with database(state) as db:
        rows = db.execute("SELECT symbol, trade_id, client_order_id, qty, price FROM trades")
        trades = [(s, int(t), c, _num(q), _num(p)) for s, t, c, q, p in rows]
        executions = db.execute(
            "SELECT execution_id, symbol, trade_id, execution_type FROM executions").fetchall()
    orders = stored_orders(state)
    keys = Counter((s, t) for s, t, *_ in trades)
    twice = sorted(k for k, n in keys.items() if n > 1)
    if twice:
        problems.append(f"trades stored twice: {twice}")
    truth = {(t["symbol"], int(t["id"])): (t["clientOrderId"], _num(t["qty"]), _num(t["price"]))
             for t in venue_trades}
    stored = {(s, t): (c, q, p) for s, t, c, q, p in trades}
    if stored != truth:
        lost = sorted(set(truth) - set(stored))
        extra = sorted(set(stored) - set(truth))
        wrong = sorted(k for k in set(truth) & set(stored) if truth[k] != stored[k])
        problems.append(f"trades table != venue trades: missing {lost}, extra {extra}, "
                        f"different {wrong}")
    ids = Counter(e for e, *_ in executions)
    dup_ids = sorted(e for e, n in ids.items() if n > 1)
    if dup_ids:
        problems.append(f"executions stored twice: {dup_ids}")
    per_trade = Counter((s, t) for _, s, t, x in executions if x == "TRADE" and t is not None)
    dup_trades = {k: n for k, n in per_trade.items() if n > 1}
    if dup_trades and trade_executions_once:
        sample = sorted(dup_trades)[:5]
        detail = {k: [e for e, s, t, x in executions if (s, t) == k] for k in sample}
        problems.append(f"{len(dup_trades)} trades have more than one TRADE execution: "
                        f"{json.dumps({f'{s}:{t}': v for (s, t), v in detail.items()})}")
    if orders_table:
        for cid, truth_state in sorted(venue_orders.items()):
            if orders.get(cid) != truth_state:
                problems.append(f"orders table {cid}: {orders.get(cid)}, venue {truth_state}")
    return problems


TRADE_EXECUTIONS_ONCE = True
"""Whether :func:`finish` also requires each trade to be stored as one TRADE execution (it
was off while the router stored a trade learned twice — socket and reconciliation — as two)."""


def finish(desk: ChaosDesk, *, orders: int, trade_executions_once: bool = TRADE_EXECUTIONS_ONCE,
           ) -> None:
    """Converge, stop the runtime cleanly, then check what it stored; the venue must hold
    exactly ``orders`` orders. ``trade_executions_once``: see :data:`TRADE_EXECUTIONS_ONCE`
    (a scenario without reconnects can ask for it already)."""
    desk.clear_faults()
    desk.converge()
    venue_orders, venue_trades = desk.venue_orders(), desk.venue_trades()
    assert len(venue_orders) == orders, f"{len(venue_orders)} orders at the venue, not {orders}"
    assert venue_trades, "no trades: the scenario did not trade"
    print(f"chaos: {len(venue_orders)} orders, {len(venue_trades)} trades; reconciliation items "
          f"acknowledged: {dict(desk.acked) or 'none'}")
    rt = desk.rt
    desk.close()
    rt.stop()
    assert rt.proc.returncode == 0, "\n".join(rt.lines[-30:])
    problems = check_database(rt.state, venue_trades, venue_orders,
                              trade_executions_once=trade_executions_once)
    assert not problems, "\n".join(problems)
