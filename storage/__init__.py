"""spark.storage — see docs/ARCHITECTURE.md."""

if __name__ != "spark.storage":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.storage'; import it under that name")

# The package's public surface, imported lazily so that `spark.storage.records` (used by every
# actor) does not pull in SQLAlchemy and Alembic:
#   records:   spark.storage.records (OrderUpdate, ExecutionRecord, TradeRecord, ...)
#   settings:  DatabaseSettings, WriterSettings
#   commands:  db_upgrade, db_check, db_backup, db_restore, export_trades
#   errors:    StorageError and subclasses (spark.storage.errors)
from typing import Any

_LAZY = {
    "DatabaseSettings": "spark.storage.settings",
    "WriterSettings": "spark.storage.settings",
    "db_upgrade": "spark.storage.commands",
    "db_check": "spark.storage.commands",
    "db_backup": "spark.storage.commands",
    "db_restore": "spark.storage.commands",
    "export_trades": "spark.storage.commands",
    "make_engine": "spark.storage.engine",
    "mask_url": "spark.storage.engine",
    "check_schema_current": "spark.storage.migrate",
    "upgrade": "spark.storage.migrate",
    "StorageError": "spark.storage.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spark.storage' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
