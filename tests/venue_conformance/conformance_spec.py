"""Binance's official spot OpenAPI spec turned into strict JSON Schemas for the conformance tests.

The spec (``../shared/binance/spot_api.yaml``, OpenAPI 3.0.2, last updated 2024-10) is read at
test time; a checkout without it skips the tests that need it.  :func:`response_schema` takes an
operation's response schema, inlines every ``$ref`` and converts the OpenAPI 3.0 dialect to JSON
Schema (2020-12), tightening it where the spec lists properties:

* ``required`` is kept, and a listed property must have its listed type (``integer`` means a
  JSON integer, never ``1.0`` or ``true``; ``int32``/``int64`` bound the range);
* an object whose properties the spec lists gets ``additionalProperties: false`` (so a
  misspelt field such as ``cumulativeQuoteQty`` fails), except for the few fields Binance sends
  today that the 2024-10 spec predates (:data:`EXTRA_FIELDS`);
* a string property whose example is a decimal number (``"0.00100000"``) must be a plain decimal
  string (no exponent, no sign, no spaces), as Binance's numbers are;
* ``nullable: true`` becomes ``type: [T, "null"]``; OpenAPI-only keywords (``example``,
  ``description``, ``xml``, ...) are dropped.

Where the spec itself is loose (a bare ``type: object``, a ``oneOf`` whose branches overlap, a
filter schema that only fits ``PRICE_FILTER``), the tests say so in a comment and add their own
check instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

SPOT_API_YAML = Path(__file__).parents[2].parent / "shared" / "binance" / "spot_api.yaml"
"""``../shared/binance/spot_api.yaml`` next to the repository."""

Json = dict[str, Any]

DECIMAL = r"^[0-9]+(\.[0-9]+)?$"
_DECIMAL_EXAMPLE = re.compile(DECIMAL)
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_DROPPED = {"example", "examples", "description", "xml", "externalDocs", "deprecated",
            "readOnly", "writeOnly", "discriminator", "title"}

EXTRA_FIELDS: Mapping[str, frozenset[str]] = {
    # Fields Binance's current rest-api.md (and the official binance-sdk-spot models) list but
    # the 2024-10 OpenAPI spec does not: allowed on top of the spec's properties.
    "orderResponseResult": frozenset({"origQuoteOrderQty"}),
    "orderResponseFull": frozenset({"origQuoteOrderQty"}),
    "orderResponseFull.fills": frozenset({"tradeId"}),
    "order": frozenset({"origQuoteOrderQty"}),
    "exchangeInfo.symbols": frozenset({"quotePrecision", "amendAllowed", "opoAllowed",
                                       "pegInstructionsAllowed"}),
    "exchangeInfo": frozenset({"sors"}),
}

# The extra fields' own types (from the same docs), so they are checked too.
_EXTRA_TYPES: Mapping[str, Json] = {
    "origQuoteOrderQty": {"type": "string", "pattern": DECIMAL},
    "tradeId": {"type": "integer"},
    "quotePrecision": {"type": "integer"},
    "amendAllowed": {"type": "boolean"},
    "opoAllowed": {"type": "boolean"},
    "pegInstructionsAllowed": {"type": "boolean"},
    "sors": {"type": "array"},
}


def _is_int(checker: Any, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int)
StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                               type_checker=_TYPES)


@cache
def _load() -> Json | None:
    if not SPOT_API_YAML.exists():
        return None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict(yaml.load(SPOT_API_YAML.read_text(encoding="utf-8"), Loader=loader))


def load_spec() -> Json:
    """The parsed spec, or skip the calling test with the reason."""
    spec = _load()
    if spec is None:
        pytest.skip(f"Binance's spot OpenAPI spec is not at {SPOT_API_YAML} (../shared is "
                    "not checked out next to the repository)")
    return spec


def _resolve(spec: Json, ref: str) -> tuple[str, Json]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref}")
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return ref.rsplit("/", 1)[-1], node


def convert(spec: Json, node: Any, *, name: str = "", strict: bool = True,
            _stack: tuple[str, ...] = ()) -> Any:
    """``node`` (an OpenAPI schema) as a self-contained JSON Schema; see the module docstring.

    ``name`` labels the schema for :data:`EXTRA_FIELDS` (``orderResponseFull``,
    ``orderResponseFull.fills``, ...): a ``$ref`` names its target, a property appends its name.
    """
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref_name, target = _resolve(spec, node["$ref"])
        if ref_name in _stack:
            raise ValueError(f"recursive $ref {node['$ref']} is not supported")
        return convert(spec, target, name=ref_name, strict=strict, _stack=(*_stack, ref_name))
    out: Json = {}
    for key, value in node.items():
        if key in _DROPPED or key.startswith("x-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {prop: convert(spec, sub, name=f"{name}.{prop}" if name else prop,
                                      strict=strict, _stack=_stack)
                        for prop, sub in value.items()}
        elif key == "items":
            out[key] = convert(spec, value, name=name, strict=strict, _stack=_stack)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [convert(spec, sub, strict=strict, _stack=_stack) for sub in value]
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(spec, value, name=name, strict=strict, _stack=_stack)
        elif key == "format" and value in _INT_RANGES and node.get("type") == "integer":
            out["minimum"], out["maximum"] = _INT_RANGES[value]
            out[key] = value
        else:
            out[key] = value
    example = node.get("example")
    if (strict and node.get("type") == "string" and isinstance(example, str)
            and _DECIMAL_EXAMPLE.match(example) and "pattern" not in out and "enum" not in out):
        out["pattern"] = DECIMAL
    if node.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if strict and "properties" in out and "additionalProperties" not in node:
        extras = EXTRA_FIELDS.get(name, frozenset())
        for extra in extras:
            out["properties"].setdefault(extra, _EXTRA_TYPES.get(extra, {}))
        out["additionalProperties"] = False
    return out


def operation(spec: Json, path: str, method: str) -> Json:
    try:
        return dict(spec["paths"][path][method.lower()])
    except KeyError:
        raise AssertionError(f"the spec has no {method.upper()} {path}") from None


def response_schema(spec: Json, path: str, method: str, status: int = 200) -> Json:
    """The converted JSON schema of ``method path``'s ``status`` response."""
    responses = operation(spec, path, method)["responses"]
    response = responses.get(str(status))
    if response is None:
        raise AssertionError(f"the spec lists no {status} response for {method.upper()} {path}")
    schema = response["content"]["application/json"]["schema"]
    return dict(convert(spec, schema, name=_name_of(path)))


def _name_of(path: str) -> str:
    return path.removeprefix("/api/v3/")


def component(spec: Json, name: str) -> Json:
    """A converted ``#/components/schemas/<name>``."""
    return dict(convert(spec, {"$ref": f"#/components/schemas/{name}"}))


def check(schema: Json, body: Any) -> None:
    """Fail with every violation (path and message), not only the first."""
    StrictValidator.check_schema(schema)
    errors = sorted(StrictValidator(schema).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        lines = [f"  at /{'/'.join(str(p) for p in e.path)}: {e.message}" for e in errors[:20]]
        raise AssertionError(f"{len(errors)} schema violation(s):\n" + "\n".join(lines))
