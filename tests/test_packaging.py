"""The import namespace: everything lives under `spark.`; bare `runtime`/`config` never import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_spark_namespace_imports(tmp_path: Path) -> None:
    result = python("import spark.runtime, spark.config, spark.actors, spark.supervision", tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["runtime", "config", "actors", "supervision"])
def test_bare_names_do_not_import(name: str, tmp_path: Path, repo: Path) -> None:
    # Neither from elsewhere (nothing top-level in site-packages) ...
    assert python(f"import {name}", tmp_path).returncode != 0
    # ... nor from a checkout, where the folder is on sys.path.
    result = python(f"import {name}", repo)
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr
