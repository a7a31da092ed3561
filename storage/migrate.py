"""Schema migrations (Alembic, run in code) and the "is the schema current?" check.

The Alembic ``Config`` is built here with ``script_location`` pointing at the installed
``spark/storage/migrations`` folder, so ``spark-runtime db upgrade`` works from any directory
and from a wheel install.  The same revisions run on SQLite and PostgreSQL.

:func:`check_schema_current` compares the database's ``alembic_version`` with the head revision
shipped in this package; a runtime must not write into a schema older than its code.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine

from spark.storage.engine import make_engine
from spark.storage.errors import SchemaBehind, SchemaUnknown

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_HINT = "run `spark-runtime db upgrade`"
VERSION_TABLE = "alembic_version"  # Alembic's default; our schema_meta


def alembic_config() -> Config:
    """An Alembic config for the shipped migrations (no ini file involved)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """The head revision(s) this code expects (normally exactly one)."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


@functools.cache
def known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Bring the database at ``url`` (or behind ``engine``) up to ``revision``.

    Idempotent: running it on a current database does nothing.  For SQLite the file and its
    folder are created if missing.
    """
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if engine is not url:
            engine.dispose()


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revision(s) recorded in the database (empty for a database never upgraded)."""
    # Read alembic_version directly: MigrationContext would log at INFO on every check.
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return ()
        table = sa.table(VERSION_TABLE, sa.column("version_num"))
        rows = connection.execute(sa.select(table.c.version_num))
        return tuple(sorted(str(row[0]) for row in rows))


def check_schema_current(engine: Engine) -> None:
    """Raise unless the database is at this code's head revision.

    ``SchemaBehind`` (empty or older database; the message tells the operator to run
    ``spark-runtime db upgrade``) or ``SchemaUnknown`` (a revision this code does not know:
    the database was migrated by a newer release).
    """
    current = current_revisions(engine)
    expected = head_revisions()
    if current == expected:
        return
    unknown = [rev for rev in current if rev not in known_revisions()]
    if unknown:
        raise SchemaUnknown(
            f"database schema is at revision {', '.join(unknown)}, which this release does not "
            f"know (it expects {', '.join(expected)}): a newer release migrated it"
        )
    have = ", ".join(current) if current else "none (empty database)"
    raise SchemaBehind(
        f"database schema is behind: at {have}, this release needs {', '.join(expected)}; "
        f"{UPGRADE_HINT}"
    )
