"""Fixtures for the operations tests: the dashboards folder, promtool, the runtime's exposition,
and a freshly built evidence package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ops_helpers import make_package

from spark.runtime.metrics import Metrics

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


@pytest.fixture
def dashboards() -> Path:
    return DASHBOARDS


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); "
                    "the alert rules were not checked")
    return path


@pytest.fixture(scope="session")
def exposition() -> str:
    """What the runtime exposes: every declared metric plus the process collector's."""
    return Metrics(process=True).exposition().decode()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return make_package(tmp_path / "evidence")
