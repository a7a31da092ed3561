"""A wrapper that keeps secret strings out of reprs, logs, exception texts and files."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, NoReturn

REDACTED: Final = "***"


class Secret:
    """A string that never shows itself: ``repr``/``str``/``format`` print ``'***'``.

    Pickling is refused so a secret cannot end up in a file or a queue by accident. Use
    :meth:`reveal` at the one place that needs the value (the signer).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")
