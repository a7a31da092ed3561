"""The hardened process, run for real: `spark-runtime run` as a subprocess on ephemeral ports."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from runtime_harness import ADMIN_TOKEN, TRADER_TOKEN, VIEWER_TOKEN, RuntimeProcess

Start = Callable[..., RuntimeProcess]


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in (labels or {}).items()):
                return float(sample.value)
    return None


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_health_metrics_and_graceful_stop(start_runtime: Start) -> None:
    rt = start_runtime().wait_ready()
    response = rt.get("/api/public/health")
    assert response.status_code == 200
    health = response.json()
    assert set(health) >= {"status", "actors", "circuit_breaker", "kill_switch", "trading_state",
                           "drift_gate", "venue", "database"}
    assert health["status"] in ("ok", "degraded")
    assert health["kill_switch"] is False
    assert health["actors"]["ops.control_port"] == {"state": "running", "restarts": 0}
    assert rt.get("/healthz").status_code == 200

    for path in ("/metrics", "/api/public/metrics/prom"):
        text = rt.get(path).text
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"spark_kill_switch_engaged", "spark_loop_lag_seconds", "spark_actor_up",
                "process_resident_memory_bytes"} <= families
    assert metric_value(rt.get("/metrics").text, "spark_actor_up",
                        {"actor": "ops.control_port"}) == 1.0

    started = time.monotonic()
    rt.signal(signal.SIGTERM)
    assert rt.wait_exit(timeout=15) == 0
    assert time.monotonic() - started < 10.0  # runtime.shutdown_grace_s
    assert any(r.get("msg") == "runtime stopped" and r.get("exit_code") == 0
               for r in rt.records())


def test_kill_switch_by_signal_is_published_counted_and_audited(start_runtime: Start) -> None:
    rt = start_runtime().wait_ready()
    rt.signal(signal.SIGUSR1)
    wait_until(lambda: rt.health()["kill_switch"] is True)
    assert rt.health()["trading_state"] == "HALTED"
    assert metric_value(rt.get("/metrics").text, "spark_kill_switch_engaged") == 1.0
    rt.signal(signal.SIGUSR2)
    wait_until(lambda: rt.health()["kill_switch"] is False)
    assert metric_value(rt.get("/metrics").text, "spark_kill_switch_engaged") == 0.0
    audit = rt.get("/api/private/audit", ADMIN_TOKEN).json()
    entries = audit if isinstance(audit, list) else audit["entries"]
    actions = [(e["actor"], e["action"]) for e in entries]
    assert ("signal:SIGUSR1", "kill_switch.engage") in actions
    assert ("signal:SIGUSR2", "kill_switch.release") in actions


def test_kill_switch_over_http_needs_admin(start_runtime: Start) -> None:
    rt = start_runtime().wait_ready()
    url = "/api/private/kill-switch"
    with rt.client(None) as c:
        r = c.post(url, json={"engaged": True})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
    with rt.client(VIEWER_TOKEN) as c:
        assert c.post(url, json={"engaged": True}).status_code == 403
    with rt.client(TRADER_TOKEN) as c:
        assert c.post(url, json={"engaged": True}).status_code == 403
    with rt.client(ADMIN_TOKEN) as c:
        r = c.post(url, json={"engaged": True})
        assert r.status_code == 200, r.text
    assert rt.health()["kill_switch"] is True
    assert ADMIN_TOKEN not in "\n".join(rt.lines)


def test_admin_rate_limit_answers_429_with_retry_after(start_runtime: Start) -> None:
    rt = start_runtime(extra_config="").wait_ready()
    statuses = []
    with rt.client(ADMIN_TOKEN) as c:
        for _ in range(12):
            r = c.get("/api/private/audit")
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["content-type"].startswith("application/problem+json")
    assert statuses[:10] == [200] * 10
    assert 429 in statuses[10:]


def test_sighup_with_a_broken_file_keeps_the_old_config(start_runtime: Start) -> None:
    rt = start_runtime().wait_ready()
    good = rt.config_path.read_text()
    rt.config_path.write_text(good.replace(
        'trade_window = "00:00-24:00"',
        'trade_window = "00:00-24:00"\nmax_notional = -1\ncolour = "red"'))
    rt.signal(signal.SIGHUP)
    rt.wait_for(lambda r: r.get("msg", "").startswith("reload rejected: risk.max_notional"))
    rt.wait_for(lambda r: "reload rejected" in r.get("msg", "") and "colour" in r["msg"])
    assert rt.proc.poll() is None
    assert rt.health()["status"] in ("ok", "degraded")
    # A valid change is applied.
    rt.config_path.write_text(good.replace('trade_window = "00:00-24:00"',
                                           'trade_window = "00:00-24:00"\nmax_notional = 15'))
    rt.signal(signal.SIGHUP)
    rt.wait_for(lambda r: r.get("msg") == "reload: applied risk")


CRASHER = """
import sys, trio
from spark.config import load
from spark.runtime.process import Runtime
from spark.runtime.logs import configure
from spark.supervision import ChildSpec

CRASH_AFTER_S = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3

async def crasher(ctx, *, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    await trio.sleep({delay})
    raise RuntimeError("test actor crashed on purpose")

settings = load(sys.argv[1])
configure("INFO", "json")
runtime = Runtime(settings, extra_children=[ChildSpec(name="crasher", entry=crasher)])
sys.exit(trio.run(runtime.main))
"""

SUPERVISION = """
[supervision]
max_restarts = {max_restarts}
within_s = 60.0
backoff_initial_s = 0.05
backoff_max_s = 0.2
"""


def test_crashing_actor_is_restarted_and_counted(start_runtime: Start) -> None:
    rt = start_runtime(script=CRASHER.format(delay=1.0),
                       extra_config=SUPERVISION.format(max_restarts=1000)).wait_ready()

    def restarts() -> float:
        return metric_value(rt.get("/metrics").text, "spark_actor_restarts_total",
                            {"actor": "trading.crasher"}) or 0.0

    wait_until(lambda: restarts() >= 2)
    assert rt.health()["actors"]["trading.crasher"]["restarts"] >= 2
    assert rt.proc.poll() is None
    assert any(r.get("msg", "").startswith("actor trading.crasher crashed: RuntimeError")
               for r in rt.records())


def test_crashes_past_the_intensity_limit_stop_the_process_with_exit_1(
    start_runtime: Start,
) -> None:
    rt = start_runtime(script=CRASHER.format(delay=0.05),
                       extra_config=SUPERVISION.format(max_restarts=3))
    assert rt.wait_exit(timeout=30) == 1
    assert any(r.get("level") == "CRITICAL" and "gave up" in r.get("msg", "")
               for r in rt.records())


def test_refuses_a_public_bind_without_tokens(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "s.toml"
    config.write_text('[runtime]\nallow_root = true\n[control]\nhost = "0.0.0.0"\nport = 0\n')
    result = subprocess.run([sys.executable, "-m", "spark.runtime.cli", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "token" in result.stderr.lower()


def test_ctl_status_and_kill_switch(start_runtime: Start) -> None:
    import json
    import subprocess
    import sys

    rt = start_runtime().wait_ready()
    env = {"PATH": "/usr/bin:/bin", "SPARK_CONTROL_URL": rt.control_url,
           "SPARK_CONTROL_TOKEN": ADMIN_TOKEN}

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spark.runtime.cli", "ctl", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    status = ctl("status")
    assert status.returncode == 0, status.stderr
    assert "kill_switch: no" in status.stdout and "ops.control_port" in status.stdout
    assert ctl("kill-switch", "on").returncode == 0
    data = json.loads(ctl("status", "--json").stdout)
    assert data["kill_switch"] is True
    assert json.loads(ctl("--json", "kill-switch", "off").stdout)["engaged"] is False
    denied = subprocess.run([sys.executable, "-m", "spark.runtime.cli", "ctl", "kill-switch", "on"],
                            capture_output=True, text=True, timeout=60,
                            env={**env, "SPARK_CONTROL_TOKEN": "nope-nope-nope-nope"})
    assert denied.returncode == 1 and "401" in denied.stderr
    unreachable = subprocess.run([sys.executable, "-m", "spark.runtime.cli", "ctl", "status"],
                                 capture_output=True, text=True, timeout=60,
                                 env={**env, "SPARK_CONTROL_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


def test_sim_mode_runs_the_venue_in_process(start_runtime: Start) -> None:
    import httpx

    rt = start_runtime().wait_ready()
    health = rt.health()
    url = health["venue"]["url"]
    assert url.startswith("http://127.0.0.1:") and url == rt.venue_url
    assert health["actors"]["sim.venue"]["state"] == "running"
    ping = httpx.get(f"{url}/api/v3/ping", timeout=10)
    assert ping.status_code == 200 and ping.json() == {}
    assert "x-mbx-used-weight-1m" in ping.headers


def test_venue_command_serves_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "spark.runtime.cli", "venue", "--port", "0",
                             "--seed", "7"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        info = httpx.get(f"{url}/api/v3/exchangeInfo", timeout=10).json()
        assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_an_engaged_kill_switch_survives_a_restart(start_runtime: Start) -> None:
    rt = start_runtime().wait_ready()
    rt.signal(signal.SIGUSR1)
    wait_until(lambda: rt.health()["kill_switch"] is True)
    rt.proc.kill()  # a crash: no graceful stop
    rt.wait_exit(timeout=10)
    # The same config file text names the first runtime's state dir and database.
    same = rt.config_path.read_text().replace("{", "{{").replace("}", "}}")
    again = start_runtime(config=same).wait_ready()
    assert again.health()["kill_switch"] is True
    assert any("stays engaged" in r.get("msg", "") for r in again.records())
    again.signal(signal.SIGUSR2)
    wait_until(lambda: again.health()["kill_switch"] is False)
