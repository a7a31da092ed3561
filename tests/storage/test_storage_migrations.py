"""Migrations on an empty database, the schema check, and shipping the migration files."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from setuptools import find_packages

from spark.storage import commands, migrate, schema
from spark.storage.engine import make_engine, mask_url, parse_url
from spark.storage.errors import SchemaBehind, SchemaUnknown, UnsupportedDatabase


def test_upgrade_empty_database_then_schema_is_current(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaBehind) as info:
            migrate.check_schema_current(engine)
        assert "spark-runtime db upgrade" in str(info.value)
        assert info.value.reason == "schema_behind"

        assert commands.db_upgrade(db_url) == migrate.head_revisions()
        migrate.check_schema_current(engine)
        commands.db_check(db_url)
        migrate.upgrade(db_url)  # idempotent
        migrate.check_schema_current(engine)

        names = set(sa.inspect(engine).get_table_names())
        assert {t.name for t in schema.ALL_TABLES} | {"alembic_version"} <= names
        # The migrations build exactly what schema.py describes.
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, schema.metadata) == []
    finally:
        engine.dispose()


def test_unknown_revision_is_reported(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaUnknown, match="ffff_future"):
            migrate.check_schema_current(engine)
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    from alembic import command

    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert not {t.name for t in schema.ALL_TABLES} & set(sa.inspect(engine).get_table_names())
        with pytest.raises(SchemaBehind):
            migrate.check_schema_current(engine)
        migrate.upgrade(engine)
        migrate.check_schema_current(engine)
    finally:
        engine.dispose()


def test_relative_sqlite_path_is_relative_to_cwd_and_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate.upgrade("sqlite:///var/nested/spark.db")
    assert (tmp_path / "var" / "nested" / "spark.db").is_file()


def test_urls_are_masked_and_unsupported_databases_refused() -> None:
    url = "postgresql+psycopg://spark:s3cr3t@db.example:5432/spark"
    assert "s3cr3t" not in mask_url(url)
    assert "***" in mask_url(url)
    with pytest.raises(UnsupportedDatabase) as info:
        parse_url("mysql://root:hunter2@localhost/x")
    assert "hunter2" not in str(info.value)
    assert info.value.reason == "unsupported_database"


def test_migration_files_are_packages_so_installs_ship_them() -> None:
    storage = Path(migrate.__file__).parent
    assert {"migrations", "migrations.versions"} <= set(find_packages(where=str(storage)))
    shipped = {p.name for p in (storage / "migrations").iterdir()}
    assert {"env.py", "script.py.mako", "alembic.ini", "__init__.py"} <= shipped
    assert any(p.name.startswith("v0001_") for p in (storage / "migrations" / "versions").iterdir())
