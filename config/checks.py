"""Small value checks used in the schema's field metadata.

Each check returns ``None`` when the value is fine, or a short phrase saying what is wrong; the
loader prefixes it with the dotted key path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spark.core.trade_window import TradeWindow, TradeWindowError

Check = Callable[[Any], str | None]

_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")


def ge(bound: float | int | Decimal) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= bound else f"must be >= {bound}, got {value}"

    return check


def gt(bound: float | int | Decimal) -> Check:
    def check(value: Any) -> str | None:
        return None if value > bound else f"must be > {bound}, got {value}"

    return check


def between(low: float | int, high: float | int) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}, got {value}"

    return check


def one_of(choices: Iterable[str]) -> Check:
    allowed = tuple(choices)

    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}; got {value!r}"

    return check


def port(value: Any) -> str | None:
    if 0 <= value <= 65535:
        return None
    return f"must be a TCP port 0-65535 (0 = any free), got {value}"


def trade_window(value: Any) -> str | None:
    try:
        TradeWindow.parse(value)
    except TradeWindowError as exc:
        return str(exc)
    return None


def timezone(value: Any) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {value!r} (use an IANA name such as UTC or Europe/Berlin)"
    return None


def symbol(value: Any) -> str | None:
    if _SYMBOL.match(value):
        return None
    return f"{value!r} is not a symbol (upper-case letters and digits, e.g. BTCUSDT)"


def symbols(values: Any) -> str | None:
    problems = [p for p in (symbol(v) for v in values) if p]
    if problems:
        return "; ".join(problems)
    if len(set(values)) != len(values):
        return "lists a symbol twice"
    return None


def symbol_keys(mapping: Any) -> str | None:
    problems = [p for p in (symbol(k) for k in mapping) if p]
    return "; ".join(problems) if problems else None


def client_id_prefix(value: Any) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9]{1,8}", value):
        return None
    return f"{value!r} must be 1-8 letters or digits (it prefixes every clientOrderId)"


def all_of(*checks: Check) -> Check:
    def check(value: Any) -> str | None:
        for c in checks:
            problem = c(value)
            if problem:
                return problem
        return None

    return check
