"""Shared fixtures: paths, and PostgreSQL availability from SPARK_TEST_DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("SPARK_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SPARK_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    return url
