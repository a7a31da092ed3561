"""Backup then restore into an empty database: same rows, same checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from storage_helpers import fresh_database, one_of_each

from spark.storage import commands, schema
from spark.storage.engine import make_engine
from spark.storage.errors import BackupFormatMismatch, BackupToolMissing, RestoreFailed
from spark.storage.migrate import check_schema_current
from spark.storage.sink import Sink


def fingerprint(engine: Engine) -> dict[str, tuple[int, str]]:
    """Per table: row count and a sha256 over the rows in key order (surrogate ids included)."""
    out: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for table in schema.ALL_TABLES:
            key = list(table.primary_key.columns)
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute(sa.select(table).order_by(*key)):
                digest.update(repr(tuple(row)).encode())
                count += 1
            out[table.name] = (count, digest.hexdigest())
    return out


def test_backup_then_restore_into_an_empty_database(
    migrated_url: str, db_kind: str, tmp_path: Path
) -> None:
    source = make_engine(migrated_url)
    try:
        Sink(source).write([rec for n in range(1, 51) for rec in one_of_each(n)])
        before = fingerprint(source)
    finally:
        source.dispose()
    assert all(count == 50 for count, _ in before.values())

    backup_file = tmp_path / "backups" / "spark.backup"
    commands.db_backup(migrated_url, backup_file)
    assert backup_file.stat().st_size > 0
    assert not list(backup_file.parent.glob("*.partial"))

    with fresh_database(db_kind, tmp_path, name="restored") as target_url:
        commands.db_restore(target_url, backup_file)
        target = make_engine(target_url)
        try:
            assert fingerprint(target) == before
            check_schema_current(target)  # alembic_version came along
            # Restoring again over a populated database replaces it (no duplicates).
            commands.db_restore(target_url, backup_file)
            assert fingerprint(target) == before
        finally:
            target.dispose()


def test_wrong_kind_of_backup_is_refused(migrated_url: str, db_kind: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.backup"
    wrong.write_bytes(b"PGDMP fake" if db_kind == "sqlite" else b"SQLite format 3\x00fake")
    with pytest.raises(BackupFormatMismatch) as info:
        commands.db_restore(migrated_url, wrong)
    assert info.value.reason == "backup_format_mismatch"


def test_damaged_sqlite_backup_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(RestoreFailed):
        commands.db_restore(f"sqlite:///{tmp_path / 'target.db'}", damaged)


def test_missing_pg_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no pg_dump, no pg_restore
    url = "postgresql+psycopg://spark:hunter2@127.0.0.1:1/spark"
    with pytest.raises(BackupToolMissing, match="pg_dump") as info:
        commands.db_backup(url, tmp_path / "x.backup")
    assert info.value.reason == "backup_tool_missing"
    assert "hunter2" not in str(info.value)
    archive = tmp_path / "y.backup"
    archive.write_bytes(b"PGDMP...")
    with pytest.raises(BackupToolMissing, match="pg_restore"):
        commands.db_restore(url, archive)
