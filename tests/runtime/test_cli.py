"""The CLI's exit codes and messages, run as a real subprocess like an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spark.runtime.cli import build_parser


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spark.runtime.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_check_config_accepts_the_sample(repo: Path) -> None:
    result = run_cli("check-config", "-c", str(repo / "spark.toml"))
    assert result.returncode == 0, result.stderr
    assert "ok (exchange sim, database sqlite" in result.stdout


def test_check_config_reports_each_problem_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[risk]\nmax_notional = -1\ntrade_window = "25:00-26:00"\n[exchange]\nmodee = "sim"\n'
    )
    result = run_cli("check-config", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("exchange.modee: unknown key")
    assert lines[1].startswith("risk.max_notional: must be > 0")
    assert lines[2].startswith("risk.trade_window: ")


def test_usage_errors_exit_2() -> None:
    assert run_cli().returncode == 2
    assert run_cli("no-such-command").returncode == 2
    assert run_cli("ctl", "order", "BTCUSDT", "HOLD", "1").returncode == 2


def _leaf_commands() -> list[list[str]]:
    """Every command path of the parser, e.g. ['db', 'backup']."""
    import argparse

    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            paths.append(prefix)
            return
        for name, child in subs[0].choices.items():
            walk(child, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("path", _leaf_commands(), ids=" ".join)
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*path, "--help"])
    assert info.value.code == 0
    assert "usage: spark-runtime" in capsys.readouterr().out
