"""The plain functions behind ``spark-runtime db …`` and ``export trades``.

Synchronous and blocking (the CLI calls them directly; trio code must use a worker thread or,
for the export, :func:`spark.storage.export.aiter_trades_csv`).  Each raises a
:class:`~spark.storage.errors.StorageError` subclass with a stable ``reason`` and a message that
is safe to print (passwords masked): the CLI prints it and exits 1.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import IO

from sqlalchemy.engine import URL

from spark.runtime.metrics import Metrics
from spark.storage import backup as _backup
from spark.storage import migrate
from spark.storage.engine import make_engine
from spark.storage.export import ExportStats
from spark.storage.export import export_trades as _export_trades


def db_upgrade(url: str | URL) -> tuple[str, ...]:
    """Migrate to the newest schema (idempotent); returns the revision(s) now current."""
    migrate.upgrade(url)
    return migrate.head_revisions()


def db_check(url: str | URL) -> None:
    """Raise ``SchemaBehind`` / ``SchemaUnknown`` unless the schema is current."""
    engine = make_engine(url)
    try:
        migrate.check_schema_current(engine)
    finally:
        engine.dispose()


def db_backup(url: str | URL, file: str | os.PathLike[str]) -> None:
    """Back the database up into ``file`` (SQLite file copy or ``pg_dump -Fc`` archive)."""
    _backup.backup(url, file)


def db_restore(url: str | URL, file: str | os.PathLike[str]) -> None:
    """Replace the database's contents with the backup in ``file``; stop the runtime first."""
    _backup.restore(url, file)


def export_trades(
    url: str | URL,
    since: str | int | datetime | None,
    until: str | int | datetime | None,
    out_stream: IO[bytes],
    *,
    metrics: Metrics | None = None,
) -> ExportStats:
    """Stream the trades CSV into ``out_stream`` (binary); returns rows and bytes written."""
    return _export_trades(url, since, until, out_stream, metrics=metrics)
