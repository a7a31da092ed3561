"""What every REST handler shares: the request context and the common parameter lookups."""

from __future__ import annotations

import attrs

from spark.venue.accounts import Credential
from spark.venue.core import VenueCore
from spark.venue.errors import BadSymbol, MandatoryParamMissing, MoreThan24Hours
from spark.venue.params import Params
from spark.venue.ratelimit import DAY_MS

DEFAULT_LIMIT = 500


@attrs.frozen
class Ctx:
    """One request as a handler sees it: parameters, venue time and the caller's key."""

    params: Params
    now: int
    credential: Credential | None


def symbol_param(core: VenueCore, p: Params, *, required: bool = True) -> str | None:
    """``symbol``, checked against the listed symbols (``-1121``)."""
    symbol = p.text("symbol", required=required)
    if symbol is not None and symbol not in core.markets:
        raise BadSymbol()
    return symbol


def required_symbol(core: VenueCore, p: Params) -> str:
    symbol = symbol_param(core, p)
    assert symbol is not None
    return symbol


def order_ref(core: VenueCore, p: Params) -> tuple[str, int | None, str | None]:
    """``symbol`` plus ``orderId`` or ``origClientOrderId`` (one of them is mandatory)."""
    symbol = required_symbol(core, p)
    order_id = p.integer("orderId")
    orig = p.text("origClientOrderId")
    if order_id is None and orig is None:
        raise MandatoryParamMissing.either("origClientOrderId", "orderId")
    return symbol, order_id, orig


def time_window(p: Params) -> tuple[int | None, int | None, int]:
    """``startTime``/``endTime`` (at most 24 h apart) and ``limit``."""
    start = p.integer("startTime")
    end = p.integer("endTime")
    if start is not None and end is not None and end - start > DAY_MS:
        raise MoreThan24Hours()
    limit = p.integer("limit")
    return start, end, DEFAULT_LIMIT if limit is None else limit
