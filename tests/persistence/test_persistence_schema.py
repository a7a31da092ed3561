"""Schema versions at the command line (done-when item 6, with backup/restore in
test_persistence_run.py): ``db upgrade`` on a fresh database, and a runtime refusing a database
that is behind its schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from persistence_helpers import RUNTIME_CONFIG, Database, run_cli
from runtime_harness import TOKENS

from spark.storage import schema
from spark.storage.migrate import alembic_config, current_revisions, head_revisions, upgrade


def test_db_upgrade_on_a_fresh_database_prints_the_revision(
    database: Database, tmp_path: Path
) -> None:
    config = tmp_path / "cli.toml"
    config.write_text('[database]\nurl = "sqlite:///unused.db"\n')
    done = run_cli("db", "upgrade", "-c", str(config), env={"DATABASE_URL": database.url})
    assert done.returncode == 0, done.stderr
    (revision,) = head_revisions()
    assert done.stdout.strip() == f"database at revision {revision}"
    assert current_revisions(database.engine) == (revision,)
    assert set(database.table_names()) == {t.name for t in schema.ALL_TABLES} | {
        "alembic_version"}


def test_run_refuses_a_database_behind_the_schema(database: Database, tmp_path: Path) -> None:
    # A database that was migrated once and then taken back to before the first revision:
    # Alembic's version table is there, the schema is not.
    upgrade(database.url)
    with database.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    database.dispose()
    assert current_revisions(database.engine) == ()
    assert database.table_names() == ["alembic_version"]
    database.dispose()
    state = tmp_path / "var"
    state.mkdir()
    config_path = tmp_path / "spark.toml"
    # Unreachable venue on purpose: the runtime must stop before it ever talks to one.
    config_path.write_text(RUNTIME_CONFIG.format(venue_url="http://127.0.0.1:9").format(
        state=state))
    done = run_cli("run", "-c", str(config_path), cwd=tmp_path,
                   env={"DATABASE_URL": database.url, "SPARK_CONTROL_TOKENS": TOKENS})
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "spark-runtime db upgrade" in done.stderr, done.stderr[-2000:]
    assert "behind" in done.stderr
    # It did not migrate on its own, nor write anything.
    assert current_revisions(database.engine) == ()
    with database.engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
