"""A run of orders on the simulated venue, then what the database holds (issue "The writer and
the database": done-when items 1, 2, 5 and the backup/restore part of 6).

One scenario per backend (module-scoped, to start as few runtimes as possible): the venue runs
as its own process; the runtime trades on it, serves the CSV export while running, and is
stopped with SIGTERM.  The tests then read that database, back it up, export it from the CLI,
and finally restart the runtime on the same database and state dir.
"""

from __future__ import annotations

import csv
import io
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from persistence_helpers import (
    Database,
    Desk,
    Snapshot,
    VenueProcess,
    assert_database_matches_venue,
    canonical_row,
    dec,
    kill,
    place_order_mix,
    run_cli,
    settled,
    start_runtime,
    wait_reconciled_and_quiet,
    wait_until,
)
from runtime_harness import ADMIN_TOKEN, RuntimeProcess

from spark.runtime.cli import main as cli_main
from spark.storage import schema
from spark.storage.migrate import check_schema_current

HEADER = ["executionId", "orderId", "clientOrderId", "symbol", "side", "quantity", "price",
          "status", "timestamp", "exchangeOrderId", "commission", "commissionAsset"]
FACT_TABLES = ("orders", "executions", "trades", "risk_decisions")


@attrs.define
class Run:
    kind: str
    tmp: Path
    venue: VenueProcess
    db: Database
    rt_dir: Path
    desk_stats: dict[str, int]
    placed: list[str]
    http_full: str = ""
    http_window: str = ""
    window: tuple[int, int] = (0, 0)
    http_bad_since: int = 0
    http_anonymous: int = 0
    restart: dict[str, Any] = attrs.field(factory=dict)


@pytest.fixture(scope="module")
def run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp(f"run-{backend}")
    venue = VenueProcess(tmp, seed=21)
    db = Database(backend, tmp)
    rt: RuntimeProcess | None = None
    try:
        rt = start_runtime(tmp / "rt", venue, db).wait_ready()
        desk = Desk(rt, venue)
        placed = place_order_mix(desk)
        wait_until(lambda: settled(db, venue), 20, "the database caught up with the venue")
        result = Run(backend, tmp, venue, db, tmp / "rt",
                     {"acked_races": desk.acked_races, "hung_posts": desk.hung_posts}, placed)
        print(f"[{backend}] router ack/event race workaround used: {result.desk_stats}")
        # The HTTP export, while the runtime runs: everything, and a [since, until) window.
        stamps = sorted({t["trade_ms"] for t in db.trades()})
        assert len(stamps) >= 3, stamps
        result.window = (stamps[1], stamps[-1])
        full = desk.trader.get("/api/private/export/trades.csv")
        assert full.status_code == 200, full.text
        assert full.headers["content-type"].startswith("text/csv")
        result.http_full = full.text
        window = desk.trader.get("/api/private/export/trades.csv",
                                 params={"since": iso(stamps[1]), "until": iso(stamps[-1])})
        assert window.status_code == 200, window.text
        result.http_window = window.text
        result.http_bad_since = desk.trader.get("/api/private/export/trades.csv",
                                                params={"since": "yesterday"}).status_code
        with rt.client(None) as anonymous:
            result.http_anonymous = anonymous.get("/api/private/export/trades.csv").status_code
        desk.close()
        rt.signal(signal.SIGTERM)
        assert rt.wait_exit(timeout=30) == 0
        rt.stop()
        rt = None
        db.dispose()
        yield result
    finally:
        if rt is not None:
            rt.stop()
        venue.stop()
        db.drop()


def iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def expected_csv(db: Database, since_ms: int | None = None,
                 until_ms: int | None = None) -> list[list[str]]:
    rows = []
    for t in sorted(db.trades(), key=lambda t: (t["trade_ms"], t["symbol"], t["trade_id"])):
        if since_ms is not None and t["trade_ms"] < since_ms:
            continue
        if until_ms is not None and t["trade_ms"] >= until_ms:
            continue
        rows.append([
            t["execution_id"] or f"{t['symbol']}-{t['trade_id']}", t["client_order_id"],
            t["client_order_id"], t["symbol"], t["side"], dec(t["qty"]), dec(t["price"]),
            t["order_status"] or "", iso(t["trade_ms"]),
            "" if t["venue_order_id"] is None else str(t["venue_order_id"]),
            dec(t["commission"]), t["commission_asset"] or "",
        ])
    return rows


def parse_csv(text: str) -> list[list[str]]:
    assert text.endswith("\n") and "\r" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and rows[0] == HEADER, rows[:1]
    return rows[1:]


def cli_config(run: Run) -> Path:
    """A config for the CLI commands; the database comes from DATABASE_URL."""
    path = run.tmp / "cli.toml"
    path.write_text('[database]\nurl = "sqlite:///unused.db"\n')
    return path


# --- item 1: the database equals the venue ----------------------------------------------------


def test_run_database_equals_the_venue_row_for_row(run: Run) -> None:
    assert_database_matches_venue(Snapshot.take(run.db, run.venue))
    # The scenario really had partial fills and several fills per order.
    executions = run.db.rows_mapping(schema.executions)
    assert any(e["order_status"] == "PARTIALLY_FILLED" for e in executions)
    fills_per_order: dict[str, int] = {}
    for t in run.db.trades():
        fills_per_order[t["client_order_id"]] = fills_per_order.get(t["client_order_id"], 0) + 1
    assert max(fills_per_order.values()) >= 3, fills_per_order
    statuses = {o["status"] for o in run.db.orders()}
    assert {"FILLED", "CANCELED"} <= statuses, statuses
    # One risk decision per order the desk sent (four approved, one refused: max_notional).
    decisions = run.db.rows_mapping(schema.risk_decisions)
    approved = sorted(d["client_order_id"] for d in decisions if d["approved"])
    assert approved == sorted(run.placed)
    assert [d["reason"] for d in decisions if not d["approved"]] == ["max_notional"]
    actions = {a["action"] for a in run.db.rows_mapping(schema.audit_log)}
    assert "POST /api/private/orders" in actions and "order.reject" in actions, actions


# --- item 5: export -----------------------------------------------------------------------------


def test_http_export_streams_the_database_trades(run: Run) -> None:
    full = parse_csv(run.http_full)
    assert full == expected_csv(run.db)
    assert len(full) == len(run.venue.trades())
    since, until = run.window
    window = parse_csv(run.http_window)
    assert window == expected_csv(run.db, since, until)
    assert 0 < len(window) < len(full)
    assert run.http_bad_since == 400
    assert run.http_anonymous == 401


def test_cli_export_equals_the_database_and_a_bad_since_exits_2(
    run: Run, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    config = str(cli_config(run))
    out = run.tmp / "trades.csv"
    # The installed command, as a process: everything into a file.
    to_file = run_cli("export", "trades", "-c", config, "-o", str(out),
                      env={"DATABASE_URL": run.db.url})
    assert to_file.returncode == 0, to_file.stderr
    assert out.read_text() == run.http_full  # byte for byte the same as the HTTP export
    assert parse_csv(out.read_text()) == expected_csv(run.db)
    assert f"exported {len(expected_csv(run.db))} trades" in to_file.stderr
    # The same entry point in this process (saves an interpreter start): a window to stdout,
    # and a bad --since.
    monkeypatch.setenv("DATABASE_URL", run.db.url)
    since, until = run.window
    assert cli_main(["export", "trades", "-c", config, "--since", iso(since),
                     "--until", str(until)]) == 0
    window = capsysbinary.readouterr().out.decode()
    assert parse_csv(window) == expected_csv(run.db, since, until)
    assert window == run.http_window
    assert cli_main(["export", "trades", "-c", config, "--since", "last tuesday"]) == 2
    bad = capsysbinary.readouterr()
    assert bad.out == b"" and b"last tuesday" in bad.err


# --- item 6: backup and restore -------------------------------------------------------------


def test_backup_then_restore_into_an_empty_database_gives_equal_tables(run: Run) -> None:
    if run.kind == "postgresql":
        import shutil

        missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"{', '.join(missing)} not on PATH: PostgreSQL backup needs them")
    config = cli_config(run)
    backup = run.tmp / ("spark.backup" if run.kind == "postgresql" else "spark-backup.db")
    made = run_cli("db", "backup", str(backup), "-c", str(config),
                   env={"DATABASE_URL": run.db.url})
    assert made.returncode == 0, made.stderr
    assert backup.exists() and backup.stat().st_size > 0
    target = run.db.sibling(run.tmp, "restored")
    try:
        if target.path is not None:
            assert not target.path.exists()
        restored = run_cli("db", "restore", str(backup), "-c", str(config),
                           env={"DATABASE_URL": target.url})
        assert restored.returncode == 0, restored.stderr
        assert target.counts() == run.db.counts()
        assert all(run.db.counts()[t] > 0 for t in FACT_TABLES)
        assert target.checksums() == run.db.checksums()
        assert target.table_names() == run.db.table_names()
        check_schema_current(target.engine)  # the runtime would accept it
    finally:
        target.drop()


# --- item 2: a restart on the same database and state dir -----------------------------------


@pytest.fixture(scope="module")
def restarted(run: Run) -> dict[str, Any]:
    """Restart the runtime on the same database and state dir, let it reconcile, stop it."""
    if run.restart:
        return run.restart
    before = snapshot(run.db)
    counts_before = run.db.counts()
    run.db.dispose()
    rt = start_runtime(run.rt_dir, run.venue, run.db)
    try:
        rt.wait_ready()
        wait_reconciled_and_quiet(rt, run.db)
        with rt.client(ADMIN_TOKEN) as admin:
            entries = admin.get("/api/private/reconciliation").json()
        ready = rt.get("/readyz").json()
    finally:
        kill(rt)  # its shutdown is not under test here
    run.restart = {"before": before, "after": snapshot(run.db), "counts_before": counts_before,
                   "counts_after": run.db.counts(), "entries": entries, "ready": ready}
    return run.restart


def snapshot(db: Database) -> dict[str, list[str]]:
    return {t.name: sorted(canonical_row(r) for r in db.rows(t, with_id=False))
            for t in schema.ALL_TABLES}


def test_restart_keeps_every_row_and_adds_no_order_trade_or_decision(
    run: Run, restarted: dict[str, Any]
) -> None:
    before, after = restarted["before"], restarted["after"]
    for name in ("orders", "trades", "risk_decisions"):
        assert after[name] == before[name], name
    for name in ("executions", "audit_log"):
        assert set(before[name]) <= set(after[name]), f"{name}: rows lost or changed"
    assert_database_matches_venue(Snapshot.take(run.db, run.venue), from_reports=False,
                                  one_copy=False)


def test_restart_adds_no_execution_rows(run: Run, restarted: dict[str, Any]) -> None:
    assert restarted["counts_after"]["executions"] == restarted["counts_before"]["executions"], (
        sorted(set(restarted["after"]["executions"]) - set(restarted["before"]["executions"])))


def test_restart_reconciles_without_discrepancies(run: Run, restarted: dict[str, Any]) -> None:
    assert restarted["entries"] == [], restarted["entries"]
    assert restarted["ready"].get("ready") is not False, restarted["ready"]
