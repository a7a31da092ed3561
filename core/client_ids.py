"""Client order ids: made before the first send, recognisable at the venue, never reused.

Why this matters: the ``clientOrderId`` is the one handle the runtime has on an order whose send
ended in a timeout or a 5xx (DESIGN invariant 2): the router asks the venue about that id before
doing anything else. So the id is fixed before the first attempt, and a resend (only ever after
the venue said the order does not exist) reuses it.

Format of a generated id: ``<prefix>-<11 base36 digits><4 base36 random>``, for example
``spk-0lzx3c0k2a1q7k9``; at most 8 + 1 + 15 = 24 characters, inside Binance's
``^[a-zA-Z0-9_-]{1,36}$``.

* ``prefix`` (``[live] client_id_prefix``, 1-8 letters or digits) marks this runtime's orders, so
  reconciliation can tell them from orders placed by a person or another bot on the same account
  (:func:`is_ours`). The ``-`` after it keeps prefix ``spk`` from claiming ``spk2-…`` ids.
* The 11 digits are a counter seeded from epoch milliseconds x 1000 and advanced by at least one
  per id, and never below ``now_ms x 1000`` when a time is given. Ids therefore sort by creation
  time (fixed width, ``0-9a-z`` in ASCII order), and a restarted runtime cannot collide with ids of
  an earlier run unless that run averaged more than 1000 ids per millisecond.
* The 4 random characters separate two runtimes that share a prefix and start in the same
  millisecond.

Ids given by a caller (``clientOrderId`` on ``POST /api/private/orders``) are used as given after
:func:`validate_client_id`; they are not "ours" by format unless the caller used the prefix.
"""

from __future__ import annotations

import random
import re
from typing import Final

__all__ = [
    "CLIENT_ID_MAX_LEN",
    "CLIENT_ID_PATTERN",
    "PREFIX_PATTERN",
    "ClientIdError",
    "ClientIdGenerator",
    "is_ours",
    "is_valid_client_id",
    "validate_client_id",
    "validate_prefix",
]

CLIENT_ID_MAX_LEN: Final = 36
CLIENT_ID_PATTERN: Final = re.compile(r"[a-zA-Z0-9_-]{1,36}")
PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9]{1,8}")

_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_COUNTER_WIDTH: Final = 11  # 36**11 ≈ 1.3e17 > (epoch ms x 1000) until the year ~6100
_RANDOM_WIDTH: Final = 4
_SUFFIX_SPACE: Final = 36**_RANDOM_WIDTH
_PER_MS: Final = 1000


class ClientIdError(ValueError):
    """A client order id or prefix that Binance (or this runtime) would not accept."""

    reason = "invalid_client_order_id"


def validate_client_id(client_id: object) -> str | None:
    """``None`` when ``client_id`` is acceptable, else what is wrong with it (one line)."""
    if not isinstance(client_id, str):
        return "must be a string"
    if CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        return "must be 1-36 characters of letters, digits, '_' or '-'"
    return None


def is_valid_client_id(client_id: object) -> bool:
    return validate_client_id(client_id) is None


def validate_prefix(prefix: object) -> str | None:
    """``None`` when ``prefix`` may prefix client ids (the same rule as the config check)."""
    if not isinstance(prefix, str) or PREFIX_PATTERN.fullmatch(prefix) is None:
        return "must be 1-8 letters or digits"
    return None


def is_ours(client_id: str, prefix: str) -> bool:
    """Whether ``client_id`` carries this runtime's ``prefix`` (``<prefix>-…``).

    Deliberately lenient about the part after the dash, so ids a caller chose with the prefix
    (and ids of older formats) still count as this runtime's when reconciling.
    """
    return (
        is_valid_client_id(client_id)
        and len(client_id) > len(prefix) + 1
        and client_id.startswith(prefix)
        and client_id[len(prefix)] == "-"
    )


def _base36(number: int, width: int) -> str:
    value = number
    out = []
    while value:
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    text = "".join(reversed(out)) or "0"
    if len(text) > width:
        raise OverflowError(f"{number} does not fit in {width} base36 digits")
    return text.rjust(width, "0")


class ClientIdGenerator:
    """Makes unique, time-ordered client order ids for one runtime.

    Holds no clock: the owner passes epoch milliseconds (from ``spark.core.clock.WallClock``) at
    construction and, optionally, to each :meth:`next`. ``rng`` is injectable so tests can pin the
    random part.
    """

    __slots__ = ("_counter", "_prefix", "_rng")

    def __init__(self, prefix: str, now_ms: int, rng: random.Random | None = None) -> None:
        problem = validate_prefix(prefix)
        if problem:
            raise ClientIdError(f"client id prefix {prefix!r} {problem}")
        if now_ms < 0:
            raise ValueError("now_ms must be epoch milliseconds")
        self._prefix = prefix
        self._rng = rng if rng is not None else random.SystemRandom()
        # Start at a random point inside the current millisecond so two generators created in
        # the same millisecond rarely share a counter even before the random suffix.
        self._counter = now_ms * _PER_MS + self._rng.randrange(_PER_MS) - 1

    @property
    def prefix(self) -> str:
        return self._prefix

    def next(self, now_ms: int | None = None) -> str:
        """A new id; ``now_ms`` (if given) keeps the counter from lagging behind wall time."""
        floor = self._counter + 1
        if now_ms is not None:
            floor = max(floor, now_ms * _PER_MS)
        self._counter = floor
        # One draw for the whole suffix (SystemRandom: one urandom call, not one per digit).
        suffix = _base36(self._rng.randrange(_SUFFIX_SPACE), _RANDOM_WIDTH)
        return f"{self._prefix}-{_base36(floor, _COUNTER_WIDTH)}{suffix}"

    def is_ours(self, client_id: str) -> bool:
        return is_ours(client_id, self._prefix)
