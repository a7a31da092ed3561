"""Start the real ``spark-runtime run`` as a subprocess and talk to it like an operator.

The runtime binds port 0 for its control port (and its venue in sim mode) and logs the bound
addresses in its JSON ``runtime ready`` line on stderr; the harness reads stderr on a thread,
keeps every line for assertions, and parses that one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "admin-token-0123456789abcdef"
TRADER_TOKEN = "trader-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
TOKENS = f"admin:{ADMIN_TOKEN},trader:{TRADER_TOKEN},viewer:{VIEWER_TOKEN}"

BASE_CONFIG = """
[runtime]
shutdown_grace_s = 10.0
log_level = "INFO"
log_format = "json"
allow_root = true
state_dir = "{state}"

[control]
port = 0

[venue]
port = 0

[database]
url = "sqlite:///{state}/spark.db"

[writer]
spool_dir = "{state}/spool"

[risk]
trade_window = "00:00-24:00"

[live]
policy = "auto"

[metrics]
loop_lag_interval_s = 0.1
"""


class RuntimeProcess:
    """A running ``spark-runtime`` (or a script that builds a Runtime) under test."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        config: str | None = None,
        extra_config: str = "",
        env: Mapping[str, str] | None = None,
        script: str | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.state = tmp_path / "var"
        self.state.mkdir(exist_ok=True)
        text = (config if config is not None else BASE_CONFIG).format(state=self.state)
        self.config_path = tmp_path / "spark.toml"
        self.config_path.write_text(text + "\n" + extra_config)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SPARK_CONTROL_TOKENS": TOKENS,
            **(env or {}),
        }
        for key in ("SPARK_TEST_DATABASE_URL", "HOME", "TMPDIR"):
            if key in os.environ and key not in self.env:
                self.env[key] = os.environ[key]
        if script is not None:
            script_path = tmp_path / "runtime_script.py"
            script_path.write_text(script)
            argv = [sys.executable, str(script_path), str(self.config_path)]
        else:
            argv = [sys.executable, "-m", "spark.runtime.cli", "run", "-c", str(self.config_path)]
        self.proc = subprocess.Popen(
            argv, cwd=tmp_path, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.control_url = ""
        self.venue_url: str | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for a JSON log record matching ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            records = self.records()
            for record in records[seen:]:
                if predicate(record):
                    return record
            seen = len(records)
            if self.proc.poll() is not None and self._queue.empty():
                break
            time.sleep(0.02)
        raise AssertionError(
            f"no matching log record within {timeout}s; exit={self.proc.poll()}\n"
            + "\n".join(self.lines[-40:])
        )

    def wait_ready(self, timeout: float = 60.0) -> RuntimeProcess:
        record = self.wait_for(lambda r: r.get("msg") == "runtime ready", timeout)
        host, port = record["control"]
        self.control_url = f"http://{host}:{port}"
        self.venue_url = record.get("venue")
        return self

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.control_url, headers=headers, timeout=10.0)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        with self.client(token) as c:
            return c.get(path)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/public/health").json()
        return result

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
