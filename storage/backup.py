"""Backup and restore (``spark-runtime db backup FILE`` / ``db restore FILE``).

* **SQLite**: the sqlite3 online backup API, so a backup is consistent even while the runtime
  writes (readers and the writer are not stopped).  The backup file is itself a SQLite database;
  it is written to ``FILE.partial`` and renamed, so ``FILE`` is never half-written.  A restore
  checks the file (header and ``PRAGMA quick_check``) and then copies it over the target,
  page by page, under SQLite's lock.
* **PostgreSQL**: ``pg_dump -Fc`` (custom format) and ``pg_restore --clean --if-exists
  --single-transaction`` of the whole database named in the URL, when those tools are on PATH;
  otherwise ``BackupToolMissing`` names the missing tool.  The password is handed over in the
  ``PGPASSWORD`` environment variable, never on the command line (which ``ps`` shows).

Restore replaces the target's Spark tables: stop the runtime first.  A file of the wrong kind
(a pg_dump archive for a SQLite URL or the other way round) is refused with
``BackupFormatMismatch`` before anything is touched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import URL

from spark.storage.engine import mask_text, mask_url, parse_url, sqlite_path
from spark.storage.errors import (
    BackupFailed,
    BackupFormatMismatch,
    BackupToolMissing,
    RestoreFailed,
)

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


def backup(url: str | URL, file: str | os.PathLike[str]) -> Path:
    """Write a backup of the database at ``url`` to ``file``; returns the file's path."""
    parsed = parse_url(url)
    target = Path(file)
    if parsed.get_backend_name() == "sqlite":
        _sqlite_backup(parsed, target)
    else:
        _pg_dump(parsed, target)
    return target


def restore(url: str | URL, file: str | os.PathLike[str]) -> None:
    """Replace the contents of the database at ``url`` with the backup in ``file``."""
    parsed = parse_url(url)
    source = Path(file)
    try:
        with source.open("rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise RestoreFailed(f"cannot read backup {source}: {exc.strerror}") from None
    if parsed.get_backend_name() == "sqlite":
        if not magic.startswith(SQLITE_MAGIC):
            raise BackupFormatMismatch(f"{source} is not a SQLite backup (a pg_dump archive?)")
        _sqlite_restore(parsed, source)
    else:
        if not magic.startswith(PGDUMP_MAGIC):
            raise BackupFormatMismatch(
                f"{source} is not a pg_dump custom-format archive (a SQLite backup?)"
            )
        _pg_restore(parsed, source)


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite_file(url: URL) -> Path:
    path = sqlite_path(url)
    if path is None:
        raise BackupFailed(f"cannot back up or restore an in-memory database ({mask_url(url)})")
    return path


def _sqlite_backup(url: URL, target: Path) -> None:
    path = _sqlite_file(url)
    if not path.exists():
        raise BackupFailed(f"no database at {path}")
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            dest = sqlite3.connect(partial)
            try:
                source.backup(dest)
            finally:
                dest.close()
        finally:
            source.close()
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"SQLite backup of {path} to {target} failed: {exc}") from None


def _sqlite_restore(url: URL, source_file: Path) -> None:
    path = _sqlite_file(url)
    try:
        source = sqlite3.connect(f"{source_file.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RestoreFailed(f"cannot open backup {source_file}: {exc}") from None
    try:
        try:
            check = source.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as exc:
            raise RestoreFailed(f"backup {source_file} is damaged: {exc}") from None
        if not check or check[0] != "ok":
            raise RestoreFailed(f"backup {source_file} is damaged: {check}")
        path.parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(path, timeout=5.0)
        try:
            source.backup(dest)
        except sqlite3.Error as exc:
            raise RestoreFailed(f"restore into {path} failed: {exc}") from None
        finally:
            dest.close()
    finally:
        source.close()


# --- PostgreSQL -----------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupToolMissing(
            f"{name} is not on PATH: install the PostgreSQL client tools "
            f"(e.g. `apt-get install postgresql-client`) matching the server's major version"
        )
    return found


def _libpq(url: URL) -> tuple[list[str], dict[str, str]]:
    """``--dbname`` conninfo (no password) and the environment carrying the password."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, str] = {}
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = str(url.port)
    if url.username:
        params["user"] = url.username
    if url.database:
        params["dbname"] = url.database
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return ["--dbname", make_conninfo("", **params)], env


def _run(args: list[str], env: dict[str, str], error: type[Exception], what: str) -> None:
    completed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = " | ".join(completed.stderr.strip().splitlines()[-5:])
        raise error(f"{what} failed (exit {completed.returncode}): {mask_text(tail)}")


def _pg_dump(url: URL, target: Path) -> None:
    tool = _tool("pg_dump")
    dbname, env = _libpq(url)
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [tool, "--format=custom", "--no-owner", "--file", str(partial), *dbname],
            env,
            BackupFailed,
            f"pg_dump of {mask_url(url)}",
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _pg_restore(url: URL, source: Path) -> None:
    tool = _tool("pg_restore")
    dbname, env = _libpq(url)
    _run(
        [
            tool,
            "--no-owner",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            *dbname,
            str(source),
        ],
        env,
        RestoreFailed,
        f"pg_restore into {mask_url(url)}",
    )
