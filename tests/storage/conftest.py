"""Storage fixtures: a fresh database per test on SQLite, and on PostgreSQL when available."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from storage_helpers import fresh_database, pg_base_url

from spark.storage.engine import make_engine
from spark.storage.migrate import upgrade

DB_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "postgresql":
        pg_base_url()
    return kind


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables)."""
    with fresh_database(db_kind, tmp_path) as url:
        yield url


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """A database at the current schema."""
    upgrade(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


