"""Load ``spark.toml``: parse, apply environment overrides, structure strictly, validate.

Why a small structurer of our own rather than cattrs' generic one: the contract asks for one
line per problem, ``dotted.key.path: what is wrong``, for *every* problem at once, including
range checks that attrs validators would only report one at a time from inside ``__init__``.
Walking the attrs fields directly gives exactly that with a few dozen lines.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from spark.config.errors import ConfigError, Problem
from spark.config.schema import SparkConfig
from spark.config.secrets import Secrets, secret_hint, secrets_from_env

# Environment variable -> (dotted key, parser). CONTRACT §3: they override the file.
_TRUE = ("1", "true", "yes", "on")


def _env_bool_strict(value: str) -> bool:
    return value.strip().lower() == "true"


def _env_flag(value: str) -> bool:
    return value.strip().lower() in _TRUE


ENV_OVERRIDES: Mapping[str, tuple[str, typing.Callable[[str], Any]]] = {
    "SPARK_EXCHANGE_MODE": ("exchange.mode", str.strip),
    "DATABASE_URL": ("database.url", str.strip),
    "LIVE_POLICY": ("live.policy", str.strip),
    # CONTRACT: `true` arms live sending; anything else keeps the runtime from sending.
    "EXECUTE": ("live.execute", _env_bool_strict),
    "SPARK_KILL_SWITCH": ("runtime.kill_switch", _env_flag),
}


@attrs.frozen
class Settings:
    """Everything the runtime needs to start: the validated file, the secrets, where from."""

    config: SparkConfig
    secrets: Secrets
    source: Path | None
    overridden: tuple[str, ...] = ()


def load(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate; raise :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = Path(path) if path is not None else None
    if source is not None:
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([Problem(str(source), "file not found")]) from None
        except OSError as exc:
            raise ConfigError([Problem(str(source), f"cannot read: {exc.strerror}")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([Problem(str(source), f"not valid TOML: {exc}")]) from None
        except UnicodeDecodeError:
            raise ConfigError([Problem(str(source), "not UTF-8 text")]) from None
    secrets, secret_problems = secrets_from_env(env)
    config, overridden = _validate(raw, env, secret_problems)
    return Settings(config=config, secrets=secrets, source=source, overridden=overridden)


def _validate(
    raw: dict[str, Any], env: Mapping[str, str], env_problems: Sequence[Problem] = ()
) -> tuple[SparkConfig, tuple[str, ...]]:
    """Secrets check, environment overrides, strict structuring and cross checks of a parsed
    document; raises :class:`ConfigError` with every problem (``env_problems`` included)."""
    problems: list[Problem] = _find_secrets(raw, "")
    overridden = _apply_env(raw, env, problems)
    config = _structure(SparkConfig, raw, "", problems)
    problems.extend(env_problems)
    if isinstance(config, SparkConfig):
        problems.extend(cross_checks(config))
    if problems:
        raise ConfigError(_name_env_sources(problems, env))
    assert isinstance(config, SparkConfig)
    return config, overridden


def _name_env_sources(problems: list[Problem], env: Mapping[str, str]) -> list[Problem]:
    """Say which environment variable set a bad value, so the operator looks in the right place."""
    by_path = {dotted: var for var, (dotted, _) in ENV_OVERRIDES.items() if var in env}
    return [
        Problem(p.path, f"{p.message} (set by {by_path[p.path]})") if p.path in by_path else p
        for p in problems
    ]


def loads(text: str, env: Mapping[str, str] | None = None) -> SparkConfig:
    """Validate TOML text (handy in tests); environment overrides apply as in :func:`load`."""
    env = {} if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("<text>", f"not valid TOML: {exc}")]) from None
    return _validate(raw, env)[0]


def _find_secrets(raw: Mapping[str, Any], prefix: str) -> list[Problem]:
    found: list[Problem] = []
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.extend(_find_secrets(value, f"{path}."))
            continue
        hint = secret_hint(str(key))
        if hint is not None and path != "venue.api_key":
            found.append(Problem(path, f"secrets must not be in the config file; set {hint} "
                                       "in the environment instead"))
    db = raw.get("database")
    if isinstance(db, Mapping) and isinstance(db.get("url"), str):
        try:
            if make_url(db["url"]).password:
                found.append(Problem("database.url", "contains a password; set DATABASE_URL in "
                                     "the environment (or use a .pgpass file) instead"))
        except ArgumentError:
            pass  # reported by the URL check below
    return found


def _apply_env(
    raw: dict[str, Any], env: Mapping[str, str], problems: list[Problem]
) -> tuple[str, ...]:
    applied: list[str] = []
    for var, (dotted, parse) in ENV_OVERRIDES.items():
        if var not in env:
            continue
        section_name, key = dotted.split(".")
        section = raw.setdefault(section_name, {})
        if not isinstance(section, dict):
            continue  # the section's own type error is reported by the structurer
        section[key] = parse(env[var])
        applied.append(f"{var} -> {dotted}")
    return tuple(applied)


_MISSING = object()


def _structure(cls: type, raw: Any, prefix: str, problems: list[Problem]) -> Any:
    """Build an attrs instance of ``cls`` from ``raw``, appending every problem found."""
    where = prefix.rstrip(".") or "<file>"
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, f"must be a table, got {_kind(raw)}"))
        return _MISSING
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in raw:
        # A secret-looking key already has its own, more useful message.
        quiet = secret_hint(str(key)) is not None and f"{prefix}{key}" != "venue.api_key"
        if key not in fields and not quiet:
            problems.append(Problem(f"{prefix}{key}", _unknown_key_message(key, fields)))
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for name, field in fields.items():
        if name not in raw:
            continue
        value = _convert(hints[name], raw[name], f"{prefix}{name}", problems)
        if value is _MISSING:
            continue
        check = field.metadata.get("check")
        if check is not None:
            message = check(value)
            if message:
                problems.append(Problem(f"{prefix}{name}", message))
                continue
        kwargs[name] = value
    if len(problems) != before:
        return _MISSING
    return cls(**kwargs)


def _unknown_key_message(key: str, fields: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}"


def _convert(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if attrs.has(tp):
        return _structure(tp, value, f"{path}.", problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
        return _bad(path, "a boolean (true/false)", value, problems)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return _bad(path, "an integer", value, problems)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _bad(path, "a number", value, problems)
    if tp is str:
        if isinstance(value, str):
            return value
        return _bad(path, "a string", value, problems)
    if tp is Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return _bad(path, "a decimal number (e.g. 20 or \"0.001\")", value, problems)
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return _bad(path, "a decimal number (e.g. 20 or \"0.001\")", value, problems)
        if not number.is_finite():
            return _bad(path, "a finite decimal number", value, problems)
        return number
    if origin is tuple:
        if not isinstance(value, list):
            return _bad(path, "a list", value, problems)
        items = [_convert(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(value, Mapping):
            return _bad(path, "a table", value, problems)
        out = {}
        for k, v in value.items():
            out[k] = _convert(args[1], v, f"{path}.{k}", problems)
        return _MISSING if any(v is _MISSING for v in out.values()) else out
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported union at {path}")  # pragma: no cover - schema bug
    raise TypeError(f"unsupported type {tp!r} at {path}")  # pragma: no cover - schema bug


def _bad(path: str, expected: str, value: Any, problems: list[Problem]) -> Any:
    problems.append(Problem(path, f"must be {expected}, got {_kind(value)}"))
    return _MISSING


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def cross_checks(config: SparkConfig) -> list[Problem]:
    """Checks that involve more than one key."""
    problems: list[Problem] = []
    try:
        url = make_url(config.database.url)
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            problems.append(
                Problem("database.url", "must be a sqlite:/// or postgresql+psycopg:// URL")
            )
    except ArgumentError:
        problems.append(Problem("database.url", "is not an SQLAlchemy URL "
                                "(e.g. sqlite:///var/spark.db)"))
    for section_name in ("ws", "listenkey", "writer"):
        section = getattr(config, section_name)
        low = getattr(section, "backoff_initial_s", getattr(section, "retry_initial_s", None))
        high = getattr(section, "backoff_max_s", getattr(section, "retry_max_s", None))
        if low is not None and high is not None and low > high:
            problems.append(Problem(f"{section_name}", "the initial delay exceeds the maximum"))
    if config.supervision.backoff_initial_s > config.supervision.backoff_max_s:
        problems.append(Problem("supervision.backoff_initial_s", "exceeds backoff_max_s"))
    if config.exchange.mode == "sim":
        missing = [s for s in config.risk.whitelist if s not in config.venue.symbols]
        if missing and not config.exchange.rest_url:
            problems.append(Problem("risk.whitelist", f"{', '.join(missing)} not listed by the "
                                    "simulated venue ([venue.symbols])"))
    return problems
