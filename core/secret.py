"""A wrapper that keeps secret strings out of reprs, logs and exception texts."""

from __future__ import annotations

from typing import Final

REDACTED: Final = "***"


class Secret:
    """Holds a secret value; only :meth:`reveal` gives it back.

    ``str()``/``repr()``/formatting show ``***`` so a secret that slips into a log call, an
    f-string or an exception message is redacted by construction.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("secrets are not picklable")
