"""The configuration as it may appear in an evidence package: ``config.redacted.toml``.

The loader already refuses secrets in ``spark.toml`` (they come from the environment), so a
valid config holds none.  This is the second check, for the file as it is on disk or a config
object as the runtime holds it: the text is parsed and re-rendered from the parsed values, so
comments (which no loader checks, and where someone may have "temporarily" noted a password)
never make it into the package; values under secret-looking keys and passwords inside URLs
become ``***``.  Text that is not valid TOML is refused (:class:`ConfigNotRedactable`) rather
than copied, because what cannot be parsed cannot be checked.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from spark.config.schema import SparkConfig
from spark.runtime.evidence.errors import ConfigNotRedactable
from spark.runtime.evidence.scrub import Scrubber

__all__ = ["redact_config", "render_toml"]

HEADER = (
    "# Redacted by spark.runtime.evidence: re-rendered from the parsed values (comments "
    "dropped);\n# values of secret-looking keys and passwords in URLs are replaced by ***.\n"
)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def redact_config(config: str | SparkConfig, scrubber: Scrubber | None = None) -> str:
    """TOML text of ``config`` with nothing secret-looking left in it.

    ``config`` is either TOML text (a ``spark.toml``) or a loaded :class:`SparkConfig`.  A
    ``scrubber`` with the runtime's known secret values also removes those wherever they
    appear; without one, only the key names and URL shapes are used.
    """
    if isinstance(config, SparkConfig):
        document = _config_as_dict(config)
    else:
        try:
            document = tomllib.loads(config)
        except tomllib.TOMLDecodeError as exc:
            # The decoder's message names a line and column, never the offending value.
            raise ConfigNotRedactable(f"not valid TOML: {exc}") from None
    scrub = scrubber if scrubber is not None else Scrubber()
    return HEADER + render_toml(scrub.scrub_tree(document))


def _config_as_dict(config: SparkConfig) -> dict[str, Any]:
    def plain(_inst: Any, _field: Any, value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)  # the loader accepts decimals as strings, like the sample
        if isinstance(value, tuple):
            return list(value)
        return value

    return attrs.asdict(config, value_serializer=plain)


def render_toml(document: Mapping[str, Any]) -> str:
    """TOML text for a parsed document (tables, arrays, strings, numbers, booleans, dates).

    Small on purpose: the standard library reads TOML but does not write it, and the evidence
    package must not depend on a writer library for something this regular.  Nested tables
    become ``[a.b]`` sections; tables inside arrays become inline tables.
    """
    lines: list[str] = []
    _table(document, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    if path:
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    subtables = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            subtables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables:
        _table(value, (*path, key), lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigNotRedactable(f"cannot render a {type(value).__name__} as TOML")
