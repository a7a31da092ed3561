"""Operations against the real runtime: ``spark-runtime run`` as a subprocess with the embedded
simulated venue, driven with the operator's own commands (``canary``, ``evidence build``,
``evidence verify``) as subprocesses, and checked against the venue's ground truth.

One runtime serves the whole module (starting it is the expensive part); it is started with
fake but realistic secrets (control tokens, an API secret, the venue's account secret) so the
package checks can look for them.  The commands run with only ``SPARK_CONTROL_URL`` and
``SPARK_CONTROL_TOKEN`` (an operator's shell), so a secret missing from a package was kept out
by the runtime itself, not only scrubbed by the package builder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from runtime_harness import (
    ADMIN_TOKEN,
    BASE_CONFIG,
    TOKENS,
    TRADER_TOKEN,
    VIEWER_TOKEN,
    RuntimeProcess,
)

from spark.runtime.evidence import MANIFEST, verify_package, verify_zip
from spark.runtime.evidence.build import build_main
from spark.runtime.evidence.metricnames import missing_names, used_metric_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"

FAKE_API_KEY = "opsLiveFakeApiKey0123456789"
FAKE_API_SECRET = "opsLiveFakeApiSecret-7Qx9vLm2PzR4"
FAKE_SIM_SECRET = "opsLiveFakeSimSecret-4Hs8kWq1Nb6T"
SECRETS = (ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN, FAKE_API_SECRET, FAKE_SIM_SECRET)

# The harness config, with control-port rate limits that leave room for a module's worth of
# commands sharing one admin token (the default admin limit is 10 calls a minute).
CONFIG = BASE_CONFIG.replace(
    "[control]\nport = 0\n",
    "[control]\nport = 0\nrate_limit_per_min = 600\nadmin_rate_limit_per_min = 100\n",
)
assert CONFIG != BASE_CONFIG


class Live:
    """The running runtime, plus the operator's shell around it."""

    def __init__(self, rt: RuntimeProcess, tmp: Path) -> None:
        self.rt = rt
        self.tmp = tmp
        assert rt.venue_url is not None
        self.venue = httpx.Client(base_url=rt.venue_url, timeout=10)
        # An operator's shell: where the runtime is and an admin token, nothing else secret.
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SPARK_CONTROL_URL": rt.control_url,
            "SPARK_CONTROL_TOKEN": ADMIN_TOKEN,
        }
        for key in ("HOME", "TMPDIR"):
            if key in os.environ:
                self.env[key] = os.environ[key]

    def cli(self, *args: str, env: dict[str, str] | None = None,
            drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        for key in drop:
            full.pop(key, None)
        return subprocess.run(
            [sys.executable, "-m", "spark.runtime.cli", *args], cwd=self.tmp, env=full,
            capture_output=True, text=True, timeout=120,
        )

    def venue_orders(self) -> list[dict[str, Any]]:
        return list(self.venue.get("/_sim/orders").json())

    def venue_trades(self) -> list[dict[str, Any]]:
        return list(self.venue.get("/_sim/trades").json())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("ops_live")
    rt = RuntimeProcess(tmp, config=CONFIG, env={
        "SPARK_CONTROL_TOKENS": TOKENS,
        "BINANCE_API_KEY": FAKE_API_KEY,
        "BINANCE_API_SECRET": FAKE_API_SECRET,
        "SIM_API_KEY": FAKE_API_KEY,
        "SIM_API_SECRET": FAKE_SIM_SECRET,
    })
    try:
        rt.wait_ready()
        deadline = time.monotonic() + 30
        while rt.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "runtime never became ready to trade"
            time.sleep(0.1)
        live = Live(rt, tmp)
        yield live
        live.venue.close()
    finally:
        rt.stop()


class CanaryRun:
    def __init__(self, result: subprocess.CompletedProcess[str], package: Path) -> None:
        self.result = result
        self.package = package
        self.report = json.loads((package / "canary.json").read_text())


@pytest.fixture(scope="module")
def canary(live: Live) -> CanaryRun:
    """One armed canary on the simulated venue (the whole Day-0 flow)."""
    out = live.tmp / "evidence-canary"
    result = live.cli("canary", "-c", str(live.rt.config_path), "--symbol", "BTCUSDT",
                      "--qty", "0.00012", "--arm", "--confirm", "--execute", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    packages = [p for p in out.iterdir() if p.is_dir()]
    assert len(packages) == 1, packages
    return CanaryRun(result, packages[0])


@pytest.fixture(scope="module")
def built(live: Live, canary: CanaryRun) -> Path:
    """``evidence build`` from a shell that knows every secret the runtime was started with
    (so the builder could scrub them, and must never need to)."""
    out = live.tmp / "evidence-build"
    result = live.cli("evidence", "build", "-c", str(live.rt.config_path), "-o", str(out),
                      env=dict(live.rt.env))
    assert result.returncode == 0, result.stderr
    package = Path(result.stdout.strip())
    assert package.parent == out and package.is_dir()
    return package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- (c) the canary ---------------------------------------------------------------------------


def test_canary_places_one_order_and_reports_go(live: Live, canary: CanaryRun) -> None:
    out = canary.result.stdout
    report = canary.report
    cid = report["clientOrderId"]
    # The venue's ground truth: exactly one order with that id, filled, its trades add up.
    at_venue = [o for o in live.venue_orders() if o["clientOrderId"] == cid]
    assert len(at_venue) == 1 and at_venue[0]["status"] == "FILLED"
    trades = [t for t in live.venue_trades() if t["clientOrderId"] == cid]
    assert sum(Decimal(t["qty"]) for t in trades) == Decimal("0.00012")
    # The report: every checklist line ran and passed, and the verdict says so.
    checklist = [line for line in out.splitlines() if line.strip().startswith("[")]
    assert len(checklist) >= 20
    assert all(line.strip().startswith("[pass]") for line in checklist), out
    assert f"GO: all {len(checklist)} checks passed." in out
    # canary.json went into the package before the package was verified: every check but
    # that last one, all passed.
    assert "evidence package verifies" in checklist[-1]
    assert len(report["checks"]) == len(checklist) - 1
    assert report["go"] is True
    names = {c["check"] for c in report["checks"]}
    for expected in ("order acknowledged by the venue", "order FILLED", "orders row",
                     "executions rows", "trades rows",
                     "spark_live_orders_placed_total incremented",
                     "spark_live_fills_total incremented",
                     "spark_order_place_ack_seconds_count incremented",
                     "place→ACK within the SLO (p95 ≤ 800 ms)"):
        assert expected in names
    # Order evidence: ids, the timeline, the rows, the deltas, the latency.
    assert cid in out and f"venue orderId   {at_venue[0]['orderId']}" in out
    events = [m["event"] for m in report["timeline"]]
    for event in ("sent", "ACK", "NEW", "FILLED"):
        assert event in events, events
    rows = report["database_rows"]
    assert [r["status"] for r in rows["orders"]] == ["FILLED"]
    assert {e["execution_type"] for e in rows["executions"]} >= {"NEW", "TRADE"}
    assert {t["trade_id"] for t in rows["trades"]} == {t["id"] for t in trades}
    for name in ("spark_live_orders_placed_total", "spark_live_fills_total",
                 "spark_order_place_ack_seconds_count"):
        delta = report["metrics"][name]["after"] - report["metrics"][name]["before"]
        assert delta >= 1, name
    assert 0 < report["latency"]["place_ack_ms_runtime"] <= 800
    assert f"Evidence package: {canary.package}" in out


def test_canary_dry_run_places_nothing(live: Live) -> None:
    before = len(live.venue_orders())
    result = live.cli("canary", "-c", str(live.rt.config_path), "--arm", "--confirm")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DRY RUN" in result.stdout
    assert "nothing was placed (missing --execute)" in result.stdout
    assert "GO: all" in result.stdout
    assert len(live.venue_orders()) == before


def test_canary_says_when_the_quantity_is_below_the_venues_minimum(live: Live) -> None:
    before = len(live.venue_orders())
    # ~2.25 USDT at the sim's ~45,000: below BTCUSDT's minimum notional of 5 USDT.
    result = live.cli("canary", "-c", str(live.rt.config_path), "--qty", "0.00005",
                      "--arm", "--confirm", "--execute", "-o", str(live.tmp / "nothing"))
    assert result.returncode == 1
    assert "below the venue's minimum notional 5 USDT for BTCUSDT" in result.stdout
    assert "use at least --qty 0.000" in result.stdout
    assert "order not placed" in result.stdout
    assert len(live.venue_orders()) == before
    assert not (live.tmp / "nothing").exists()


@pytest.mark.parametrize("database", ["missing-sqlite", "closed-port"])
def test_canary_fails_and_places_nothing_when_the_database_is_unreachable(
    live: Live, database: str
) -> None:
    if database == "missing-sqlite":
        url = f"sqlite:///{live.tmp}/no-such-dir/spark.db"
    else:
        pytest.importorskip("psycopg")
        url = f"postgresql+psycopg://spark@127.0.0.1:{free_port()}/spark"
    before = len(live.venue_orders())
    result = live.cli("canary", "-c", str(live.rt.config_path), "--arm", "--confirm",
                      "--execute", env={"DATABASE_URL": url})
    assert result.returncode == 1, result.stdout
    assert "[FAIL] canary can read the runtime's database" in result.stdout
    assert "order not placed" in result.stdout and "NO-GO" in result.stdout
    assert len(live.venue_orders()) == before
    if database == "missing-sqlite":
        assert not (live.tmp / "no-such-dir").exists()  # looked for, never created


# -- (a) every metric a dashboard or alert uses, in a live scrape --------------------------------


def test_live_scrape_exposes_every_dashboard_and_alert_metric(
    live: Live, canary: CanaryRun
) -> None:
    scrape = live.rt.get("/metrics").text
    # The scrape is from after orders were placed and filled.
    assert "spark_live_fills_total 0.0" not in scrape
    assert "spark_live_fills_total" in scrape
    used = used_metric_names(DASHBOARDS, yaml.safe_load)
    files = {where.split(":", 1)[0] for where in used}
    assert {"alerts.yml", "spark-orders.json", "spark-runtime.json", "spark-streams.json",
            "spark-safety.json", "spark-persistence.json"} <= files
    names = set().union(*used.values())
    assert len(names) > 20
    assert missing_names(names, scrape) == []


# -- (b) the package verifies, and any tampered byte fails it -----------------------------------


def test_canary_package_verifies_with_the_cli(live: Live, canary: CanaryRun) -> None:
    result = live.cli("evidence", "verify", str(canary.package))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("OK: ")
    for name in ("trades.csv", "metrics.txt", "audit.json", "health.json",
                 "config.redacted.toml", "slo.json", "INDEX.md", "canary-report.md",
                 "canary.json"):
        assert f"ok       {name}" in result.stdout
    trades = (canary.package / "trades.csv").read_text()
    assert canary.report["clientOrderId"] in trades  # read from the database
    zipped = live.cli("evidence", "verify", f"{canary.package}.zip")
    assert zipped.returncode == 0, zipped.stdout


def _copy(package: Path, into: Path) -> Path:
    into.mkdir()
    shutil.copytree(package, into / package.name)
    shutil.copy2(f"{package}.zip", into / f"{package.name}.zip")
    return into / package.name


def _poke(path: Path, position: int, value: int) -> None:
    """Overwrite one byte in place (rewriting whole files thousands of times is slow)."""
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(bytes([value]))


def _contents(archive: Path) -> dict[str, bytes] | None:
    """Every member's bytes, or None when the zip cannot be read at all."""
    try:
        with zipfile.ZipFile(archive) as z:
            return {info.filename: z.read(info) for info in z.infolist()}
    except Exception:
        return None


def _member_streams(archive: Path) -> list[tuple[int, int]]:
    """``(first, last)`` byte offsets of each member's compressed stream."""
    streams = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            streams.append((start, start + info.compress_size - 1))
    return streams


def test_tampering_any_byte_of_the_package_fails_verification(
    live: Live, canary: CanaryRun, tmp_path: Path
) -> None:
    package = _copy(canary.package, tmp_path / "copy")
    archive = package.with_name(f"{package.name}.zip")
    assert verify_package(package).ok
    # The folder: every file's hash is in the manifest, so any changed byte of any file fails
    # (sampled positions), and so does any changed byte of the manifest itself (all of them).
    # The zip waits aside meanwhile (it is checked on its own below).
    aside = archive.rename(tmp_path / archive.name)
    for path in sorted(package.iterdir()):
        original = path.read_bytes()
        size = len(original)
        positions = (range(size) if path.name == MANIFEST else
                     sorted({0, 1, size // 4, size // 2, (3 * size) // 4, size - 2, size - 1}))
        for position in positions:
            _poke(path, position, original[position] ^ 0x01)
            report = verify_package(package)
            _poke(path, position, original[position])
            assert not report.ok, f"{path.name}[{position}] changed, still verifies"
            if path.name != MANIFEST:
                assert path.name in report.failed_names(), report.render()
        # (The manifest is read as sha256sum reads it: a missing final newline or a binary
        # marker '*' says the same thing and is accepted, see tests/ops; a changed byte is not.)
        for variant in (original + b"\n", original[:-1]) if path.name != MANIFEST else (
                original + b"\n", original + original.splitlines(keepends=True)[0]):
            path.write_bytes(variant)
            assert not verify_package(package).ok, f"{path.name} resized, still verifies"
        path.write_bytes(original)
    assert verify_package(package).ok
    aside.rename(archive)
    assert verify_package(package).ok
    # The zip: every byte outside the members' compressed streams (headers, attributes, the
    # central directory, the end record) fails; inside a stream, a change fails unless it
    # decodes to the very same bytes (deflate has a few don't-care padding bits, which no
    # verifier can tell from the original without recompressing).
    original = archive.read_bytes()
    contents = _contents(archive)
    streams = _member_streams(archive)
    inside = {p for first, last in streams for p in range(first, last + 1)}
    samples = {first + (last - first) * k // 4 for first, last in streams for k in range(5)}
    positions = sorted((set(range(len(original))) - inside) | samples)
    assert len(positions) > 1000
    for position in positions:
        _poke(archive, position, original[position] ^ 0x01)
        ok = verify_zip(archive).ok
        same = ok and _contents(archive) == contents
        _poke(archive, position, original[position])
        if position not in inside:
            assert not ok, f"zip[{position}] changed, still verifies"
        elif ok:
            assert same, f"zip[{position}]: new content verifies"
    assert archive.read_bytes() == original
    for variant in (original + b"\0", original[:-1], b"\0" + original):
        archive.write_bytes(variant)
        assert not verify_zip(archive).ok and not verify_package(package).ok
    archive.write_bytes(original)
    assert verify_package(package).ok
    # The command says so with its exit code.
    (package / "trades.csv").write_bytes((package / "trades.csv").read_bytes() + b"x")
    result = live.cli("evidence", "verify", str(package))
    assert result.returncode == 1
    assert "FAILED   trades.csv: changed" in result.stdout


# -- (d) no secret in any file of a package -------------------------------------------------------


def _spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def _assert_no_secret(package: Path) -> None:
    blobs: dict[str, bytes] = {p.name: p.read_bytes() for p in package.iterdir()}
    archive = package.with_name(f"{package.name}.zip")
    blobs[archive.name] = archive.read_bytes()
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            blobs[f"{archive.name}:{info.filename}"] = z.read(info)
    assert len(blobs) >= 2 * 8 + 1
    for name, data in blobs.items():
        text = data.decode("utf-8", errors="replace")
        for secret in SECRETS:
            for spelling in _spellings(secret):
                assert spelling.encode() not in data and spelling not in text, (
                    f"a secret ({secret[:6]}…) is in {name}")


def test_no_secret_in_any_file_of_the_canary_package(canary: CanaryRun) -> None:
    _assert_no_secret(canary.package)
    # Nothing had to be scrubbed: the runtime's health, metrics, audit and the database held
    # no secret to begin with.
    index = (canary.package / "INDEX.md").read_text()
    assert "0 value(s) were replaced by `***`." in index


def test_no_secret_in_any_file_of_a_package_built_knowing_every_secret(built: Path) -> None:
    _assert_no_secret(built)
    assert verify_package(built).ok
    index = (built / "INDEX.md").read_text()
    assert "0 value(s) were replaced by `***`." in index


# -- evidence build: where it reads from, and its failures ---------------------------------------


def test_evidence_build_reads_the_runtime_and_its_database(built: Path, canary: CanaryRun) -> None:
    health = json.loads((built / "health.json").read_text())
    assert health["status"] == "ok" and health["database"]["ok"] is True
    assert canary.report["clientOrderId"] in (built / "trades.csv").read_text()
    audit = json.loads((built / "audit.json").read_text())
    assert any(e["action"] == "POST /api/private/orders" for e in audit)
    slo = {r["name"]: r for r in json.loads((built / "slo.json").read_text())["results"]}
    assert slo["order_place_ack_p95"]["measured"] is not None
    index = (built / "INDEX.md").read_text()
    assert "- control port: `http://127.0.0.1:" in index
    assert "- database: `sqlite:///" in index


def _build(live: Live, out: str, env: dict[str, str] | None = None,
           drop: tuple[str, ...] = ()) -> tuple[int, str]:
    """``evidence build`` in this process (what the command runs), with its own env."""
    full = {**live.env, **(env or {})}
    for key in drop:
        full.pop(key, None)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = build_main(live.rt.config_path, out, env=full, out=stdout, err=stderr)
    return code, stdout.getvalue() + stderr.getvalue()


def test_evidence_build_fails_clearly(live: Live) -> None:
    cfg = str(live.rt.config_path)
    out = str(live.tmp / "never")
    # Through the real command once: the runtime is not there.
    down = live.cli("evidence", "build", "-c", cfg, "-o", out,
                    env={"SPARK_CONTROL_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.returncode == 1
    assert "cannot read the runtime at http://127.0.0.1:" in down.stderr
    texts = [down.stdout + down.stderr]
    code, text = _build(live, out, {"DATABASE_URL": f"sqlite:///{live.tmp}/gone/spark.db"})
    assert code == 1 and "cannot read the database" in text and "no database file" in text
    assert not (live.tmp / "gone").exists()
    texts.append(text)
    code, text = _build(live, out, drop=("SPARK_CONTROL_URL",))
    assert code == 2 and "SPARK_CONTROL_URL" in text and "port is 0" in text
    texts.append(text)
    code, text = _build(live, out, drop=("SPARK_CONTROL_TOKEN",))
    assert code == 2 and "SPARK_CONTROL_TOKEN is not set" in text
    texts.append(text)
    code, text = _build(live, out, {"SPARK_CONTROL_TOKEN": VIEWER_TOKEN})
    assert code == 1 and "403" in text and "admin token" in text
    texts.append(text)
    assert not (live.tmp / "never").exists()
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
