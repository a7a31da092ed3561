"""Request parameters the way Binance reads them.

Parameters come from the query string and/or a form-encoded body (the query string wins when
both carry one); a repeated name is ``-1101``; a name the endpoint never reads is ``-1104``.
Typed getters raise Binance's own errors for missing (``-1102``), malformed (``-1100``) and
over-precise (``-1111``) values.  The signed payload is kept byte-exact for signature checks.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from decimal import Decimal
from urllib.parse import unquote_plus

import attrs

from spark.venue.errors import (
    BadPrecision,
    IllegalChars,
    MandatoryParamMissing,
    TooManyParameters,
    UnreadParameters,
    VenueError,
)
from spark.venue.numbers import DECIMAL_PATTERN, parse_decimal, too_precise

LONG_PATTERN = "^[0-9]{1,20}$"
_LONG = re.compile(LONG_PATTERN)
CLIENT_ID_PATTERN = "^[a-zA-Z0-9-_]{1,36}$"
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")


def _components(text: str) -> Iterator[tuple[str, str, str]]:
    for component in text.split("&"):
        if component:
            key, _, value = component.partition("=")
            yield unquote_plus(key), unquote_plus(value), component


def _collect(text: str, into: dict[str, str], unsigned: list[str]) -> str | None:
    seen: set[str] = set()
    signature: str | None = None
    for key, value, raw in _components(text):
        if key in seen:
            raise TooManyParameters()
        seen.add(key)
        if key == "signature":
            signature = value
            continue
        unsigned.append(raw)
        into.setdefault(key, value)
    return signature


@attrs.frozen
class Parsed:
    params: Params
    payload: str
    """``query + body`` without the signature parameter: what the client signed."""
    signature: str | None


def parse_request(query: str, body: str) -> Parsed:
    values: dict[str, str] = {}
    query_parts: list[str] = []
    body_parts: list[str] = []
    sig_query = _collect(query, values, query_parts)
    sig_body = _collect(body, values, body_parts)
    signature = sig_query if sig_query is not None else sig_body
    payload = "&".join(query_parts) + "&".join(body_parts)
    return Parsed(Params(values), payload, signature)


class Params:
    """Typed, read-tracking access to one request's parameters."""

    __slots__ = ("_read", "_values")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self._read: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return bool(self._values.get(name))

    def names(self) -> Collection[str]:
        return self._values.keys()

    def ignore(self, *names: str) -> None:
        """Accept these documented parameters without acting on them."""
        self._read.update(names)

    def text(self, name: str, *, required: bool = False) -> str | None:
        self._read.add(name)
        value = self._values.get(name)
        if not value:
            if required:
                raise MandatoryParamMissing.named(name)
            return None
        return value

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        text = self.text(name, required=required)
        if text is None:
            return None
        value = parse_decimal(text)
        if value is None:
            raise IllegalChars.in_param(name, DECIMAL_PATTERN)
        if too_precise(value):
            raise BadPrecision.named(name)
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        text = self.text(name, required=required)
        if text is None:
            return None
        if not _LONG.match(text):
            if required:
                raise MandatoryParamMissing.named(name)
            raise IllegalChars.in_param(name, LONG_PATTERN)
        return int(text)

    def boolean(self, name: str) -> bool | None:
        text = self.text(name)
        if text is None:
            return None
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise IllegalChars.in_param(name, "^(true|false)$")
        return lowered == "true"

    def enum(self, name: str, choices: Collection[str], error: VenueError, *,
             required: bool = False) -> str | None:
        text = self.text(name, required=required)
        if text is None:
            return None
        if text not in choices:
            raise error
        return text

    def client_order_id(self, name: str) -> str | None:
        text = self.text(name)
        if text is not None and not _CLIENT_ID.match(text):
            raise IllegalChars.in_param(name, CLIENT_ID_PATTERN)
        return text

    def check_all_read(self) -> None:
        unread = [n for n in self._values if n not in self._read]
        if unread:
            sent = len(self._values) + 1  # Binance counts the signature too
            raise UnreadParameters.counts(sent - len(unread), sent)
