"""README's two newcomer commands exist, and CI runs exactly the test command."""

from __future__ import annotations

import re
from pathlib import Path


def commands(readme: str) -> list[str]:
    return [c.strip() for c in re.findall(r"```sh\n(.*?)```", readme, flags=re.S)]


def test_ci_runs_readmes_test_command(repo: Path) -> None:
    readme = (repo / "README.md").read_text()
    found = commands(readme)
    assert len(found) >= 2
    run_cmd, test_cmd = found[0], found[1]
    assert "pip install ." in run_cmd and "spark-runtime run -c spark.toml" in run_cmd
    assert test_cmd.endswith("pytest")
    ci = (repo / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci, "the test command in .ci/run must be README's, verbatim"
