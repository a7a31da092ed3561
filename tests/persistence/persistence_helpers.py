"""Helpers for the persistence tests: databases, the venue as its own process, runtimes, checks.

* :class:`Database` — a fresh SQLite file or a uniquely named PostgreSQL database (created with
  an autocommit connection on the server in ``SPARK_TEST_DATABASE_URL`` and dropped with FORCE
  afterwards: other engineers share that server), with ways to make it unavailable to the
  runtime and to bring it back.
* :class:`VenueProcess` — ``spark-runtime venue --port 0`` as its own process, so it survives a
  SIGKILL of the runtime and a restart sees the same trades.
* :func:`start_runtime` — the real ``spark-runtime run`` through the integration harness's
  :class:`RuntimeProcess`, pointed at that venue (``[exchange] rest_url``) and at the database
  through ``DATABASE_URL``.
* :class:`Desk` — a trader at the control port plus the venue's ground truth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from runtime_harness import ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN, RuntimeProcess
from sqlalchemy.engine import Engine, make_url

from spark.storage import schema
from spark.storage.engine import make_engine

PG_ENV = "SPARK_TEST_DATABASE_URL"
CLI = [sys.executable, "-m", "spark.runtime.cli"]

# A distinctive venue API secret: like the control tokens, it must never reach a table.
SIM_API_SECRET = "sim-secret-persistence-7c1f0e9b2a4d"
SECRETS = (ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN, SIM_API_SECRET)

# The venue: no random walk (prices move only when a test says so) and a thin BTCUSDT book
# (0.0001 per level), so a 0.0003 market order takes three levels = three fills, and a resting
# limit crossed by one level only fills partially.
VENUE_CONFIG = """
[venue]
step_interval_ms = 250.0

[venue.symbols.BTCUSDT]
price = 45000
step_size = 0.00001
min_qty = 0.00001
depth_qty = 0.0001
volatility = 0.0

[venue.symbols.ETHUSDT]
price = 2500
step_size = 0.0001
min_qty = 0.0001
depth_qty = 5
volatility = 0.0

[venue.symbols.BNBUSDT]
price = 600
step_size = 0.001
min_qty = 0.001
depth_qty = 20
volatility = 0.0
"""

# The runtime ({state} is filled in by the harness; the database URL comes from DATABASE_URL).
# Short database timeouts and retries so that an outage is noticed, and the end of it, quickly.
RUNTIME_CONFIG = """
[runtime]
shutdown_grace_s = 10.0
log_level = "INFO"
log_format = "json"
allow_root = true
state_dir = "{{state}}"

[exchange]
rest_url = "{venue_url}"

[control]
port = 0

[database]
url = "sqlite:///{{state}}/unused.db"
connect_timeout_s = 1.0

[writer]
spool_dir = "{{state}}/spool"
retry_initial_s = 0.2
retry_max_s = 1.0

[risk]
trade_window = "00:00-24:00"

[live]
policy = "auto"

[metrics]
loop_lag_interval_s = 0.1
"""


# An order POST normally answers well within a second; see Desk.order for why not longer.
POST_TIMEOUT_S = 5.0


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s: {what}")


# --- databases --------------------------------------------------------------------------------


def pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (no PostgreSQL for this run)")
    return url


class Database:
    """One test database; ``url`` is what the runtime gets as ``DATABASE_URL``."""

    def __init__(self, kind: str, tmp_path: Path, name: str = "spark") -> None:
        self.kind = kind
        self.name = ""
        self.path: Path | None = None
        self._lock: sqlite3.Connection | None = None
        self._engine: Engine | None = None
        if kind == "sqlite":
            self.path = tmp_path / f"{name}.db"
            self.url = f"sqlite:///{self.path}"
            return
        base = make_url(pg_base_url())
        self.name = f"spark_persist_{uuid.uuid4().hex[:12]}"
        self._admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    # -- lifecycle ----------------------------------------------------------------------------

    def drop(self) -> None:
        self.make_available()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self.kind == "postgresql":
            with self._admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()

    def sibling(self, tmp_path: Path, name: str) -> Database:
        """Another empty database of the same kind."""
        return Database(self.kind, tmp_path, name)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- outages ------------------------------------------------------------------------------

    def make_unavailable(self) -> None:
        """Writes fail from now on until :meth:`make_available`.

        SQLite: this test holds ``BEGIN EXCLUSIVE`` (in WAL mode readers still read, every
        writer gets "database is locked" after its busy timeout).  PostgreSQL: the database
        stops accepting connections and every backend on it is terminated.
        """
        self.dispose()  # our own pooled connections must not be what keeps it alive
        if self.kind == "sqlite":
            assert self.path is not None and self._lock is None
            lock = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            lock.execute("BEGIN EXCLUSIVE")
            self._lock = lock
            return
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            # A connection that was being opened while we flipped the switch may still get in:
            # terminate until none is left.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                killed = conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": self.name},
                ).scalar_one()
                if not killed:
                    break
                time.sleep(0.05)

    def make_available(self) -> None:
        if self.kind == "sqlite":
            if self._lock is not None:
                self._lock.rollback()
                self._lock.close()
                self._lock = None
            return
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))

    # -- reading ------------------------------------------------------------------------------

    def rows(self, table: sa.Table, *, with_id: bool = True) -> list[tuple[Any, ...]]:
        cols = [c for c in table.columns if with_id or c.name != "id"]
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(*cols))]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in schema.ALL_TABLES
            }

    def table_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())

    def checksums(self) -> dict[str, str]:
        """A SHA-256 per table (alembic_version too) over its rows, ids included, in a
        canonical order."""
        out = {}
        with self.engine.connect() as conn:
            for name in sorted(sa.inspect(conn).get_table_names()):
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                rows = sorted(canonical_row(tuple(r)) for r in conn.execute(sa.select(table)))
                out[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return out

    def all_text(self) -> str:
        """Every value of every table (including alembic_version) as text."""
        parts: list[str] = []
        with self.engine.connect() as conn:
            for name in sa.inspect(conn).get_table_names():
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                for row in conn.execute(sa.select(table)):
                    parts.extend(str(v) for v in row)
        return "\n".join(parts)

    def rows_mapping(self, table: sa.Table) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]

    def trades(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(schema.trades))]

    def orders(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(schema.orders))]


def canonical_row(row: tuple[Any, ...]) -> str:
    out = []
    for value in row:
        if isinstance(value, Decimal):
            value = dec(value)
        out.append(repr(value))
    return "|".join(out)


def dec(value: Any) -> str:
    """An exact decimal as canonical text (``0.00010000`` and ``1E-4`` both give ``0.0001``)."""
    if value is None:
        return ""
    d = Decimal(str(value))
    return "0" if d == 0 else format(d.normalize(), "f")


# --- the venue as its own process -------------------------------------------------------------


class VenueProcess:
    """``spark-runtime venue --port 0 --seed N``; the URL is on its first stdout line."""

    def __init__(self, tmp_path: Path, seed: int = 11) -> None:
        folder = tmp_path / "venue"
        folder.mkdir(exist_ok=True)
        config = folder / "venue.toml"
        config.write_text(VENUE_CONFIG)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SIM_API_SECRET": SIM_API_SECRET}
        self.proc = subprocess.Popen(
            [*CLI, "venue", "--port", "0", "--seed", str(seed), "-c", str(config)],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+)", line)
        if found is None:
            self.stop()
            raise AssertionError(f"venue did not report its URL: {line!r}")
        self.url = found.group(1)
        # Keep draining stdout so the venue never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def trades(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_sim/trades").json())

    def orders(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_sim/orders").json())

    def book(self, symbol: str = "BTCUSDT") -> tuple[Decimal, Decimal]:
        r = self.http.get("/api/v3/ticker/bookTicker", params={"symbol": symbol}).json()
        return Decimal(r["bidPrice"]), Decimal(r["askPrice"])

    def set_price(self, price: Decimal | str, symbol: str = "BTCUSDT") -> None:
        r = self.http.post("/_sim/price", json={"symbol": symbol, "price": str(price)})
        assert r.status_code == 200, r.text

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- runtimes ---------------------------------------------------------------------------------


def start_runtime(folder: Path, venue: VenueProcess, db: Database) -> RuntimeProcess:
    """``spark-runtime run`` in ``folder`` (its state dir is ``folder/var``; reused if there)."""
    folder.mkdir(parents=True, exist_ok=True)
    return RuntimeProcess(
        folder,
        config=RUNTIME_CONFIG.format(venue_url=venue.url),
        env={"DATABASE_URL": db.url, "SIM_API_SECRET": SIM_API_SECRET},
    )


def kill(rt: RuntimeProcess) -> None:
    """SIGKILL: no shutdown code runs."""
    rt.proc.send_signal(signal.SIGKILL)
    rt.proc.wait(timeout=10)
    rt.stop()  # closes the pipes


def wait_reconciled_and_quiet(rt: RuntimeProcess, db: Database, timeout: float = 20.0) -> None:
    """After a start: until the router has reconciled with the venue and whatever that made
    reached the database (no spool, row counts steady)."""
    rt.wait_for(lambda r: str(r.get("msg", "")).startswith(
        "reconciled with the venue (startup)"), timeout)
    last: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.4)
        try:
            now = db.counts()
        except sa.exc.OperationalError:
            continue
        if now == last and rt.health()["database"]["spooled_events"] == 0:
            return
        last = now
    raise AssertionError("the database did not settle after the start")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    return subprocess.run([*CLI, *args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


class Desk:
    """A trader at the control port, plus the venue's ground truth."""

    def __init__(self, rt: RuntimeProcess, venue: VenueProcess) -> None:
        self.rt = rt
        self.venue = venue
        self.trader = rt.client(TRADER_TOKEN)
        self.admin = rt.client(ADMIN_TOKEN)
        self.cids: list[str] = []
        self.rejected: list[str] = []
        self.acked_races = 0
        self.hung_posts = 0
        wait_until(lambda: rt.get("/readyz").status_code == 200, 30, "ready to trade")
        # /readyz does not wait for reference prices: an order placed before the first
        # bookTicker frames is refused with no_reference_price.  Two venue steps' worth of
        # frames (one per symbol and step) before trading.
        wait_until(lambda: self.market_frames() >= 6, 20, "market data flowing")

    def market_frames(self) -> float:
        found = re.search(r'^spark_ws_messages_total\{stream="market"\} (\S+)$',
                          self.rt.get("/metrics").text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def order(self, side: str = "BUY", qty: str = "0.0002", price: Decimal | str | None = None,
              symbol: str = "BTCUSDT", expect: int = 200) -> dict[str, Any]:
        """Place an order with our own ``spk-…`` client id (so it is known even without an
        answer); returns the order as the control port shows it."""
        cid = f"spk-t{uuid.uuid4().hex[:20]}"
        body: dict[str, Any] = {"symbol": symbol, "side": side, "quantity": qty,
                                "clientOrderId": cid,
                                "type": "LIMIT" if price is not None else "MARKET"}
        if price is not None:
            body["price"] = str(price)
            body["timeInForce"] = "GTC"
        self.clear_ack_race()
        try:
            # A refusal never waits for the venue: only placements get the short timeout.
            r = self.trader.post("/api/private/orders", json=body,
                                 timeout=POST_TIMEOUT_S if expect == 200 else 30.0)
        except httpx.ReadTimeout:
            # The router's ack/event race (see clear_ack_race) leaves the POST unanswered for
            # ANSWER_TIMEOUT_S (15 s); the order itself is placed.  Don't wait for it.
            assert expect == 200
            self.hung_posts += 1
            wait_until(lambda: self.get_order(cid).get("status") not in (None, "PENDING"),
                       what=f"order {cid} placed")
            self.clear_ack_race()
            self.cids.append(cid)
            return self.get_order(cid)
        assert r.status_code == expect, f"{r.text}\nhealth: {self.rt.health()}"
        data: dict[str, Any] = r.json()
        if expect == 200:
            assert data["clientOrderId"] == cid
            self.cids.append(cid)
        else:
            self.rejected.append(cid)
        return data

    def get_order(self, cid: str) -> dict[str, Any]:
        r = self.trader.get(f"/api/private/orders/{cid}")
        return dict(r.json()) if r.status_code == 200 else {}

    def clear_ack_race(self) -> None:
        """The router once halted trading when an execution report beat the REST answer (it
        re-stored an unchanged order and the table refused it as "not newer").  Fixed in the
        router; this guards against it coming back: any such conflict fails the test."""
        for entry in self.admin.get("/api/private/reconciliation").json():
            assert not (entry["kind"] == "status_conflict"
                        and "is not newer than" in str(entry["detail"])), entry

    def health(self) -> dict[str, Any]:
        return self.rt.health()

    def close(self) -> None:
        self.trader.close()
        self.admin.close()


def place_order_mix(desk: Desk) -> list[str]:
    """Market orders (filled over two and three book levels), a limit filled after
    ``POST /_sim/price`` (its first fill partial: one 0.0001 level at the limit), a limit left
    resting and canceled, and one order the risk guard refuses.  Returns the client ids that
    reached the venue."""
    venue = desk.venue
    cids = [desk.order("BUY", "0.0002")["clientOrderId"],  # 2 levels: 2 fills
            desk.order("SELL", "0.0003")["clientOrderId"]]  # 3 levels: 3 fills
    # A BUY limit resting one dollar below the bid; the ask then comes down to the limit,
    # where the book offers one level (0.0001): a partial fill.  A lower price fills the rest
    # (if the venue's next step, which replenishes the book, has not already).
    bid, _ask = venue.book()
    limit = bid - Decimal("1.00")
    part = desk.order("BUY", "0.0002", price=limit)
    assert part["status"] == "NEW", part
    cids.append(part["clientOrderId"])
    venue.set_price(limit - Decimal("0.01"))  # spread one tick: ask == limit
    wait_until(lambda: desk.get_order(part["clientOrderId"])["status"]
               in ("PARTIALLY_FILLED", "FILLED"), what="limit (partially) filled")
    venue.set_price(limit - Decimal("5.00"))
    wait_until(lambda: desk.get_order(part["clientOrderId"])["status"] == "FILLED",
               what="limit filled")
    # A resting SELL limit far above the market, canceled.
    _bid, ask = venue.book()
    rest = desk.order("SELL", "0.0002", price=(ask * Decimal("1.02")).quantize(Decimal("0.01")))
    cids.append(rest["clientOrderId"])
    r = desk.trader.delete(f"/api/private/orders/{rest['clientOrderId']}")
    assert r.status_code == 200, r.text
    wait_until(lambda: desk.get_order(rest["clientOrderId"])["status"] == "CANCELED",
               what="limit canceled")
    # Refused by the risk guard (max_notional): a risk decision, nothing at the venue.
    desk.order("BUY", "0.01", expect=422)
    return cids


# --- checks -----------------------------------------------------------------------------------


def venue_trade_rows(venue_trades: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (t["symbol"], int(t["id"]), t["clientOrderId"], int(t["orderId"]), t["side"],
         dec(t["price"]), dec(t["qty"]), dec(t["commission"]), t["commissionAsset"])
        for t in venue_trades
    )


def db_trade_rows(db_trades: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (t["symbol"], int(t["trade_id"]), t["client_order_id"], t["venue_order_id"], t["side"],
         dec(t["price"]), dec(t["qty"]), dec(t["commission"]), t["commission_asset"])
        for t in db_trades
    )


def execution_fact(e: dict[str, Any]) -> tuple[Any, ...]:
    """What makes an execution report unique whatever its id: a fill is its trade; any other
    report (NEW, CANCELED, EXPIRED, REJECTED) happens once per order."""
    if e["execution_type"] == "TRADE":
        return ("TRADE", e["symbol"], e["trade_id"])
    return (e["execution_type"], e["client_order_id"])


def repeated_executions(executions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Executions stored more than once under different ids (see :func:`execution_fact`)."""
    facts = [execution_fact(e) for e in executions]
    return sorted({f for f in facts if facts.count(f) > 1}, key=repr)


def settled(db: Database, venue: VenueProcess) -> bool:
    """The database has caught up with the venue: same trades, same final order states."""
    try:
        if db_trade_rows(db.trades()) != venue_trade_rows(venue.trades()):
            return False
        orders = {o["client_order_id"]: o for o in db.orders()}
        return all(
            o["clientOrderId"] in orders
            and orders[o["clientOrderId"]]["status"] == o["status"]
            for o in venue.orders()
        )
    except sa.exc.OperationalError:
        return False


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The venue's ground truth and every table, taken at one moment."""

    venue_trades: list[dict[str, Any]]
    venue_orders: list[dict[str, Any]]
    tables: dict[str, list[dict[str, Any]]]
    text: str

    @classmethod
    def take(cls, db: Database, venue: VenueProcess) -> Snapshot:
        return cls(venue.trades(), venue.orders(),
                   {t.name: db.rows_mapping(t) for t in schema.ALL_TABLES}, db.all_text())

    def decisions_for(self, cid: str) -> list[dict[str, Any]]:
        return [d for d in self.tables["risk_decisions"] if d["client_order_id"] == cid]


def assert_database_matches_venue(snap: Snapshot, *, from_reports: bool = True,
                                  one_copy: bool = True) -> None:
    """Item 1 of the issue: trades row for row, one order row per client id with the venue's
    final status and quantity, no duplicate execution ids, decisions and audit rows present,
    no secret anywhere.  ``from_reports``: every fill came with its execution report (not
    learned from REST); ``one_copy``: no execution stored twice under different ids."""
    trades = snap.tables["trades"]
    assert snap.venue_trades, "the venue has no trades: the scenario did not trade"
    assert db_trade_rows(trades) == venue_trade_rows(snap.venue_trades)
    orders = snap.tables["orders"]
    by_cid = {o["client_order_id"]: o for o in orders}
    assert len(by_cid) == len(orders)
    for vo in snap.venue_orders:
        row = by_cid.get(vo["clientOrderId"])
        assert row is not None, f"no orders row for {vo['clientOrderId']}"
        assert row["status"] == vo["status"], (row, vo)
        assert dec(row["executed_qty"]) == dec(vo["executedQty"]), (row, vo)
        assert row["venue_order_id"] == vo["orderId"], (row, vo)
    executions = snap.tables["executions"]
    ids = [e["execution_id"] for e in executions]
    assert len(ids) == len(set(ids)), "duplicate execution ids"
    if one_copy:
        assert not repeated_executions(executions), "an execution stored twice"
    # Every fill has the execution report that carried it (the ids differ in form: the
    # executions table prefixes "<product>:<symbol>:", the trades table keeps the venue's).
    fills = {(e["symbol"], e["trade_id"]): e for e in executions if e["execution_type"] == "TRADE"}
    for trade in trades:
        report = fills.get((trade["symbol"], trade["trade_id"]))
        assert report is not None, f"no execution report for trade {trade}"
        assert report["client_order_id"] == trade["client_order_id"]
        if trade["execution_id"] is not None:
            assert report["execution_id"].endswith(":" + trade["execution_id"]), (report, trade)
        elif from_reports:
            raise AssertionError(f"trade {trade} was not learned from its execution report")
    assert snap.tables["risk_decisions"] and snap.tables["audit_log"]
    for secret in SECRETS:
        assert secret not in snap.text, "a secret reached the database"
