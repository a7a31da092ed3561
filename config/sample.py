"""Render the commented sample ``spark.toml`` from the schema's own docs and defaults.

The root ``spark.toml`` is this output with the sample's few deliberate choices (``SAMPLE_VALUES``)
applied; a test keeps the two in step, so the sample documents every key the loader accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from spark.config.schema import SparkConfig, VenueSymbolConfig

HEADER = """\
# spark.toml — the Spark runtime's configuration (the commented sample).
#
# Runs the built-in simulated Binance venue in the same process and stores everything in SQLite
# under var/.  Every key is optional: a missing key takes the default shown here.  Unknown keys are
# errors.  Secrets never go in this file: BINANCE_API_KEY, BINANCE_API_SECRET (or
# BINANCE_PRIVATE_KEY_FILE), SPARK_CONTROL_TOKENS, DATABASE_URL with a password, SIM_API_SECRET all
# come from the environment.  Environment overrides: SPARK_EXCHANGE_MODE, DATABASE_URL, LIVE_POLICY,
# EXECUTE, SPARK_KILL_SWITCH.  Check a file with `spark-runtime check-config -c FILE`.
"""

# Values the sample sets differently from the schema default, and why.
SAMPLE_VALUES: Mapping[str, tuple[Any, str]] = {
    "live.policy": ("auto", "the simulated venue trades without confirmations"),
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f'"{value}"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))  # pragma: no cover


def _section(lines: list[str], name: str, obj: Any, doc: str) -> None:
    lines.append("")
    lines.append(f"# {doc}")
    lines.append(f"[{name}]")
    nested: list[tuple[str, Any, str]] = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        fdoc = field.metadata.get("doc", "")
        dotted = f"{name}.{field.name}"
        if attrs.has(type(value)):
            nested.append((dotted, value, fdoc))
            continue
        if isinstance(value, Mapping) and value and all(
            isinstance(v, VenueSymbolConfig) for v in value.values()
        ):
            for key, item in value.items():
                nested.append((f"{dotted}.{key}", item, f"{fdoc} ({key})"))
            continue
        if dotted in SAMPLE_VALUES:
            sample, why = SAMPLE_VALUES[dotted]
            lines.append(f"# {fdoc} Default {_toml_value(value)}; here: {why}.")
            lines.append(f"{field.name} = {_toml_value(sample)}")
        else:
            lines.append(f"# {fdoc}")
            lines.append(f"{field.name} = {_toml_value(value)}")
    for dotted, value, fdoc in nested:
        _section(lines, dotted, value, fdoc)


def render_sample() -> str:
    config = SparkConfig()
    lines = [HEADER.rstrip("\n")]
    for field in attrs.fields(SparkConfig):
        _section(lines, field.name, getattr(config, field.name), field.metadata["doc"])
    return "\n".join(lines) + "\n"
