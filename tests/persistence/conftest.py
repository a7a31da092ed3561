"""Persistence fixtures: the integration harness (via sys.path), databases on both backends."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from persistence_helpers import Database, pg_base_url

DB_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "postgresql":
        pg_base_url()  # skips with the reason when SPARK_TEST_DATABASE_URL is unset
    return kind


@pytest.fixture(scope="module", params=DB_KINDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of a module-scoped scenario (one runtime scenario per backend)."""
    kind: str = request.param
    if kind == "postgresql":
        pg_base_url()
    return kind


@pytest.fixture
def database(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database (no tables) of ``db_kind``, dropped afterwards."""
    db = Database(db_kind, tmp_path)
    try:
        yield db
    finally:
        db.drop()
