"""Building engines from ``[database]`` settings, and rendering URLs without their password.

SQLite specifics, and why:

* a relative path (``sqlite:///var/spark.db``) is relative to the current directory, and its
  parent folder is created, so a fresh checkout runs without setup;
* WAL journal (readers — the export, the control port — never block the writer) with
  ``synchronous=FULL`` (a commit is on disk when it returns: the writer deletes spool segments
  after a commit, so "committed" must survive a power cut too);
* ``busy_timeout`` = ``connect_timeout_s``: a locked database fails the write after that long
  and the writer goes degraded (spools) instead of hanging;
* ``check_same_thread=False``: engines are used from trio worker threads, which may differ from
  one call to the next (access is serialised by the callers' capacity limiters).

PostgreSQL: ``connect_timeout`` from the settings, ``pool_pre_ping`` (by default) so a connection
the server dropped (restart, ``pg_terminate_backend``) is replaced before use.  The writer turns
pre-ping off (a round trip per batch) and retries once on a fresh connection instead.

Every engine is built with ``hide_parameters=True`` so that row values never end up in exception
texts or logs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from spark.storage.errors import UnsupportedDatabase
from spark.storage.settings import DatabaseSettings

DEFAULT_URL = "sqlite:///var/spark.db"


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL; ``UnsupportedDatabase`` unless it is SQLite or PostgreSQL."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except sa.exc.ArgumentError:
        raise UnsupportedDatabase(f"not a database URL: {mask_text(str(url))}") from None
    except ValueError:
        raise UnsupportedDatabase("not a database URL") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UnsupportedDatabase(
            f"unsupported database {backend!r} in {mask_url(parsed)}: use sqlite or postgresql"
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (safe for logs and messages)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def mask_text(text: str) -> str:
    """Best effort: strip a ``user:password@`` from any URL-looking text."""
    import re

    return re.sub(r"(//[^:/@\s]+:)[^@\s]*@", r"\1***@", text)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (absolute), or ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).absolute()


def make_engine(
    url: str | URL | DatabaseSettings,
    *,
    connect_timeout_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine configured as described in the module docstring.

    ``url`` may be a :class:`DatabaseSettings` (then its ``connect_timeout_s`` applies unless
    given explicitly).  Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    if isinstance(url, DatabaseSettings):
        if connect_timeout_s is None:
            connect_timeout_s = url.connect_timeout_s
        url = url.url
    timeout = 5.0 if connect_timeout_s is None else float(connect_timeout_s)
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
        connect_args = {"check_same_thread": False, "timeout": timeout}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = sa.create_engine(
            parsed, connect_args=connect_args, hide_parameters=True, **kwargs
        )
        busy_ms = max(1, int(timeout * 1000))

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if path is not None:
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            finally:
                cursor.close()

        return engine

    connect_args = {"connect_timeout": max(1, math.ceil(timeout))}
    connect_args.update(kwargs.pop("connect_args", {}))
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, connect_args=connect_args, hide_parameters=True, **kwargs)
