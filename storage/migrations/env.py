"""Alembic environment: runs the revisions on a connection given in code, or on ``DATABASE_URL``.

:func:`spark.storage.migrate.upgrade` passes an open connection in
``config.attributes["connection"]`` (so the URL, which may carry a password, never goes through
Alembic's config parser or its log lines).  The ``DATABASE_URL`` fallback is for developers
running the ``alembic`` command with ``alembic.ini``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from spark.storage.schema import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from spark.storage.engine import make_engine

    url = os.environ.get("DATABASE_URL", "sqlite:///var/spark.db")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


def run_offline() -> None:
    url = os.environ.get("DATABASE_URL", "sqlite:///var/spark.db")
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
