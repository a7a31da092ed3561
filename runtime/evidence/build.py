"""``spark-runtime evidence build``: a package from the runtime that a config file names.

The operator points at the *config file*, not at a URL, because that is what they know on the
host: the file says where the control port listens (``[control] host``/``port``) and which
database the runtime writes (``[database] url``, or ``DATABASE_URL``).  Two things the file
cannot say come from the environment:

* ``SPARK_CONTROL_URL`` overrides the control address — a runtime started with ``port = 0``
  (tests, a second instance on one host) is reachable no other way;
* ``SPARK_CONTROL_TOKEN`` is the bearer token; the audit trail is an admin route, so it must be
  an admin token (the same variable ``spark-runtime ctl`` reads).

Trades are read from the database directly (:func:`spark.storage.export.iter_trades_csv`,
streamed) rather than through the control port: the database is the record, and the package
should show what was persisted, not what the process believes.  The database is checked
*before* anything is scraped, so an unreachable database fails fast with its own message
instead of a half-built package.  A SQLite URL whose file does not exist is reported as
unreachable — never created, which is what opening it would otherwise do.

Every known secret (control tokens, the API secret, the database password) is handed to the
package builder's scrubber, on top of the runtime keeping them out of its outputs.

Errors are :class:`~spark.runtime.evidence.errors.EvidenceError` subclasses with a stable
``reason``, so the canary (which reuses all of this) and the CLI map them to exit codes the same
way: a config or environment problem is a usage error (2), an unreachable runtime or database is
a runtime failure (1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from spark.config import ConfigError, Settings, load
from spark.config.schema import SparkConfig
from spark.core.secret import Secret
from spark.runtime.evidence.cli import build_from_control_port
from spark.runtime.evidence.errors import EvidenceError, ScrapeError
from spark.storage import schema
from spark.storage.engine import make_engine, mask_text, mask_url, parse_url, sqlite_path
from spark.storage.errors import StorageError
from spark.storage.export import iter_trades_csv
from spark.storage.migrate import check_schema_current

__all__ = [
    "DatabaseStatus",
    "DatabaseUnreachable",
    "EvidenceTarget",
    "TargetError",
    "build_evidence",
    "build_main",
    "check_database",
    "control_url_from",
    "resolve_target",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

CONTROL_URL_ENV = "SPARK_CONTROL_URL"
CONTROL_TOKEN_ENV = "SPARK_CONTROL_TOKEN"
DB_CONNECT_TIMEOUT_S = 5.0


class TargetError(EvidenceError):
    """The config file or the environment does not say how to reach the runtime (file
    invalid, control port 0 without ``SPARK_CONTROL_URL``, no token): a usage error."""

    reason = "target_unknown"

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class DatabaseUnreachable(EvidenceError):
    """The runtime's database cannot be read: not there, refusing connections, or at a schema
    this release cannot read.  The message never carries the password."""

    reason = "database_unreachable"


@attrs.frozen
class EvidenceTarget:
    """Where the running runtime is, as the config file and the environment say."""

    config_path: str
    settings: Settings
    control_url: str
    token: Secret
    database_url: str

    @property
    def config(self) -> SparkConfig:
        return self.settings.config

    def known_secrets(self) -> list[str | Secret]:
        """Every secret value this process knows, for the package's scrubber: the control
        tokens in the environment, the API secret, the caller's token, the database
        password."""
        values: list[str | Secret] = [self.token, *self.settings.secrets.known_secret_values()]
        try:
            password = make_url(self.database_url).password
        except (ArgumentError, ValueError):
            password = None
        if password:
            values.append(str(password))
        return values

    def source(self) -> dict[str, str]:
        """Where the package's inputs came from (INDEX.md): no secret in any of them."""
        return {
            "config file": self.config_path,
            "control port": self.control_url,
            "database": mask_url(self.database_url),
        }


def control_url_from(config: SparkConfig, env: Mapping[str, str]) -> str:
    """The control port's base URL: ``SPARK_CONTROL_URL`` if set, else ``[control] host/port``.

    A wildcard bind address (``0.0.0.0``, ``::``) is reached through loopback; port 0 cannot be
    reached from the file alone (the kernel picked the port), so it is a usage error that names
    the variable to set.
    """
    override = env.get(CONTROL_URL_ENV, "").strip()
    if override:
        return override.rstrip("/")
    host, port = config.control.host, config.control.port
    if port == 0:
        raise TargetError(f"[control] port is 0 (any free port), so the file cannot say where "
                          f"the runtime listens; set {CONTROL_URL_ENV} to the address in its "
                          "'runtime ready' log line")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def resolve_target(config_path: str | os.PathLike[str],
                   env: Mapping[str, str] | None = None) -> EvidenceTarget:
    """Load the config (environment overrides applied, as the runtime does) and find the
    control URL, the token and the database URL; :class:`TargetError` when one is missing."""
    env = os.environ if env is None else env
    try:
        settings = load(config_path, env)
    except ConfigError as exc:
        raise TargetError(f"{config_path}: invalid configuration",
                          [str(p) for p in exc.problems]) from None
    url = control_url_from(settings.config, env)
    token = env.get(CONTROL_TOKEN_ENV, "").strip()
    if not token:
        raise TargetError(f"{CONTROL_TOKEN_ENV} is not set: the audit trail needs an admin "
                          "token of the runtime (one of its SPARK_CONTROL_TOKENS)")
    return EvidenceTarget(
        config_path=str(config_path),
        settings=settings,
        control_url=url,
        token=Secret(token),
        database_url=settings.config.database.url,
    )


@attrs.frozen
class DatabaseStatus:
    """What :func:`check_database` found: the (masked) URL and the row counts it read."""

    url: str
    backend: str
    counts: Mapping[str, int]

    def describe(self) -> str:
        rows = ", ".join(f"{n} {table}" for table, n in self.counts.items())
        return f"{self.url}: schema current; {rows}"


_COUNTED = (schema.orders, schema.executions, schema.trades)


def check_database(url: str, *, timeout_s: float = DB_CONNECT_TIMEOUT_S) -> DatabaseStatus:
    """Connect, check the schema is this release's, count the order-path rows.

    Read-only on purpose: a SQLite file that is not there is reported, never created (opening
    a SQLite URL creates the file, which would hide a wrong path behind an empty database).
    Raises :class:`DatabaseUnreachable` with a message safe to print.
    """
    masked = mask_url(url)
    try:
        parsed = parse_url(url)
    except StorageError as exc:
        raise DatabaseUnreachable(str(exc)) from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is None:
            raise DatabaseUnreachable(f"{masked}: an in-memory database belongs to one process; "
                                      "the runtime's rows cannot be read from here")
        if not path.is_file():
            raise DatabaseUnreachable(f"{masked}: no database file at {path}")
    engine = make_engine(url, connect_timeout_s=timeout_s)
    try:
        check_schema_current(engine)
        with engine.connect() as conn:
            counts = {
                table.name: int(conn.execute(
                    sa.select(sa.func.count()).select_from(table)).scalar_one())
                for table in _COUNTED
            }
    except StorageError as exc:
        raise DatabaseUnreachable(f"{masked}: {exc}") from None
    except SQLAlchemyError as exc:
        raise DatabaseUnreachable(f"{masked}: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    return DatabaseStatus(masked, parsed.get_backend_name(), counts)


def _first_line(exc: BaseException) -> str:
    """The driver's own message (first line, password masked), without SQLAlchemy's
    background-link footer."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return mask_text(text[0] if text else type(exc).__name__)


def _trades(url: str) -> Iterator[bytes]:
    """The database's trades CSV, with database failures turned into our error."""
    try:
        yield from iter_trades_csv(url)
    except StorageError as exc:
        raise DatabaseUnreachable(f"{mask_url(url)}: reading trades: {exc}") from None
    except SQLAlchemyError as exc:
        raise DatabaseUnreachable(f"{mask_url(url)}: reading trades: {_first_line(exc)}") from None


def build_evidence(
    target: EvidenceTarget,
    out_dir: str | os.PathLike[str],
    *,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Check the database, scrape the runtime, write the package; return its folder.

    ``extra_files`` (plain names) are added to the package and covered by its manifest — the
    canary adds its report this way.  Raises :class:`DatabaseUnreachable` or
    :class:`~spark.runtime.evidence.errors.ScrapeError`.
    """
    check_database(target.database_url)
    return build_from_control_port(
        out_dir,
        control_url=target.control_url,
        token=target.token,
        config=target.config,
        known_secrets=target.known_secrets(),
        trades_csv_chunks=_trades(target.database_url),
        extra_files=extra_files or {},
        source=target.source(),
    )


def build_main(
    config_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``evidence build``: print the package's folder and return 0; or print why not and
    return 2 (config / environment) or 1 (runtime or database unreachable)."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        target = resolve_target(config_path, env)
    except TargetError as exc:
        print(f"spark-runtime evidence build: {exc}", file=stderr)
        for problem in exc.problems:
            print(problem, file=stderr)
        return EXIT_USAGE
    try:
        package = build_evidence(target, out_dir)
    except DatabaseUnreachable as exc:
        print(f"spark-runtime evidence build: cannot read the database: {exc}", file=stderr)
        return EXIT_FAILURE
    except ScrapeError as exc:
        print(f"spark-runtime evidence build: cannot read the runtime at {target.control_url}: "
              f"{exc}", file=stderr)
        return EXIT_FAILURE
    except (EvidenceError, OSError) as exc:
        print(f"spark-runtime evidence build: {type(exc).__name__}: {exc}", file=stderr)
        return EXIT_FAILURE
    print(package, file=stdout)
    return EXIT_OK
