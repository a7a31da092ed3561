"""``evidence verify`` and the scrape of a running runtime's control port (a real control app
served on an ephemeral port, with the control tests' in-memory backend behind it)."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))
from control_double import ADMIN_TOKEN, TOKENS, VIEWER_TOKEN, BackendDouble

from spark.config.schema import ControlConfig
from spark.runtime.control import build_app, serve
from spark.runtime.evidence import ScrapeError, verify_package
from spark.runtime.evidence.cli import (
    build_from_control_port,
    scrape,
    stream_trades_csv,
    verify_main,
)


def run_verify(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = verify_main(path, out=out)
    return code, out.getvalue()


def test_verify_main_ok(package: Path) -> None:
    code, text = run_verify(package)
    assert code == 0
    assert text.splitlines()[-1] == "OK: 7 file(s) checked"
    assert "  ok       trades.csv" in text


def test_verify_main_names_the_changed_file(package: Path) -> None:
    with open(package / "audit.json", "ab") as f:
        f.write(b" ")
    code, text = run_verify(package)
    assert code == 1
    assert "FAILED   audit.json: changed" in text
    assert "FAILED (1 problem(s))" in text


def test_verify_main_on_the_zip(package: Path) -> None:
    archive = package.parent / f"{package.name}.zip"
    assert run_verify(archive)[0] == 0
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(f"{package.name}/smuggled.txt", "x")
    code, text = run_verify(archive)
    assert code == 1 and "smuggled.txt: extra" in text


def test_verify_main_on_nothing(tmp_path: Path) -> None:
    code, text = run_verify(tmp_path / "absent")
    assert code == 2 and "not an evidence package" in text


def test_scrape_of_an_unreachable_port_names_the_route() -> None:
    with pytest.raises(ScrapeError) as caught:
        scrape("http://127.0.0.1:9", ADMIN_TOKEN, timeout_s=2)
    assert caught.value.what == "GET /api/public/health"
    assert ADMIN_TOKEN not in str(caught.value)


@pytest.fixture
async def control_url(nursery: trio.Nursery) -> tuple[str, BackendDouble]:
    backend = BackendDouble()
    note = f"curl -H 'Authorization: Bearer {ADMIN_TOKEN}'"  # planted by a careless operator
    backend.record_audit("admin:fp-1a2b", "POST /api/private/kill-switch", "kill_switch", "200",
                         {"engaged": True, "note": note})
    backend.metrics.order_place_ack_seconds.observe(0.12)
    backend.metrics.ws_connected.labels("user").set(1)
    app = build_app(backend, TOKENS, ControlConfig())
    host, port = await nursery.start(serve, app, "127.0.0.1", 0)
    return f"http://{host}:{port}", backend


async def test_scrape_reads_health_metrics_and_audit(
        control_url: tuple[str, BackendDouble]) -> None:
    url, backend = control_url
    health, metrics_text, audit = await trio.to_thread.run_sync(scrape, url, ADMIN_TOKEN)
    assert health["status"] == "ok" and health["kill_switch"] is False
    assert "spark_order_place_ack_seconds_bucket" in metrics_text
    assert audit[0]["action"] == "POST /api/private/kill-switch"

    backend.status = "down"  # 503, and still evidence
    health, _, _ = await trio.to_thread.run_sync(scrape, url, ADMIN_TOKEN)
    assert health["status"] == "down"


async def test_scrape_with_a_token_lacking_admin(control_url: tuple[str, BackendDouble]) -> None:
    url, _ = control_url
    for token in (VIEWER_TOKEN, "not-a-token"):
        with pytest.raises(ScrapeError) as caught:
            await trio.to_thread.run_sync(scrape, url, token)
        assert caught.value.what == "GET /api/private/audit"
        assert "refused" in str(caught.value) and token not in str(caught.value)


async def test_trades_stream(control_url: tuple[str, BackendDouble]) -> None:
    url, backend = control_url
    backend.export_rows = 5
    chunks = await trio.to_thread.run_sync(lambda: list(stream_trades_csv(url, ADMIN_TOKEN)))
    assert b"".join(chunks).count(b"BTCUSDT") == 5


async def test_build_from_the_control_port(control_url: tuple[str, BackendDouble],
                                           tmp_path: Path) -> None:
    url, _ = control_url
    folder = await trio.to_thread.run_sync(lambda: build_from_control_port(
        tmp_path, control_url=url, token=ADMIN_TOKEN, config="[exchange]\nmode = \"sim\"\n"))
    assert verify_package(folder).ok
    assert (folder / "trades.csv").read_bytes().count(b"BTCUSDT") == 3
    slo = {r["name"]: r for r in json.loads((folder / "slo.json").read_text())["results"]}
    assert slo["order_place_ack_p95"]["passed"] is True
    assert slo["websocket_connected"]["passed"] is True
    for path in folder.iterdir():
        assert ADMIN_TOKEN.encode() not in path.read_bytes(), path.name
    assert url in (folder / "INDEX.md").read_text()
