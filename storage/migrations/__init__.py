"""Alembic migrations of the Spark database, shipped inside the package.

Run them with :func:`spark.storage.migrate.upgrade` (``spark-runtime db upgrade``); the Alembic
``Config`` is built in code with ``script_location`` pointing at this folder, so no ``alembic.ini``
is needed at run time.  ``alembic.ini`` here is only for developers writing a new revision::

    DATABASE_URL=sqlite:///var/dev.db alembic -c storage/migrations/alembic.ini \\
        revision --autogenerate -m "what changed"

Revision files live in ``versions/`` and are named ``v<NNNN>_<slug>.py`` (valid module names, so
type checkers accept them); every revision must work on SQLite and PostgreSQL (use
``op.batch_alter_table`` for ALTERs — SQLite cannot alter most things in place).
"""
