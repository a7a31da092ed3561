"""The storage package's errors: one small hierarchy, each class with a stable ``reason`` code.

Callers (the CLI, the control port, the writer's health) branch on the class or on ``reason``;
the message is for humans.  No message ever contains a secret: database URLs are rendered with
:func:`spark.storage.engine.mask_url` before they are put into a message.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by ``spark.storage``."""

    reason: str = "storage_error"


class UnsupportedDatabase(StorageError):
    """The URL names a database other than SQLite or PostgreSQL."""

    reason = "unsupported_database"


class SchemaError(StorageError):
    """The database schema does not match what this code expects."""

    reason = "schema_error"


class SchemaBehind(SchemaError):
    """The database is empty or at an older migration: the operator must run ``db upgrade``."""

    reason = "schema_behind"


class SchemaUnknown(SchemaError):
    """The database is at a migration this code does not know (a newer release wrote it)."""

    reason = "schema_unknown"


class AmountOutOfRange(StorageError, ValueError):
    """An amount does not fit ``NUMERIC(36,18)`` exactly (or is not a finite ``Decimal``)."""

    reason = "amount_out_of_range"


class RecordDecodeError(StorageError, ValueError):
    """A spooled line or JSON document is not a valid record."""

    reason = "record_decode"


class SpoolError(StorageError):
    """The spool directory cannot be used (not writable, a segment cannot be read...)."""

    reason = "spool_error"


class InvalidTimeBound(StorageError, ValueError):
    """An export bound is neither ISO 8601 nor epoch milliseconds."""

    reason = "invalid_time_bound"


class BackupError(StorageError):
    """Base of the backup and restore failures."""

    reason = "backup_error"


class BackupToolMissing(BackupError):
    """``pg_dump`` or ``pg_restore`` is not on PATH."""

    reason = "backup_tool_missing"


class BackupFailed(BackupError):
    """The backup could not be written."""

    reason = "backup_failed"


class RestoreFailed(BackupError):
    """The restore did not complete (the target may be partially restored; see the message)."""

    reason = "restore_failed"


class BackupFormatMismatch(BackupError):
    """The backup file is not of the kind the target database needs (SQLite vs pg_dump)."""

    reason = "backup_format_mismatch"
