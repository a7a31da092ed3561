"""API credentials and spot balances.

A credential names the account it acts for and carries an HMAC secret, an Ed25519 public key,
or both (the venue accepts whichever the signature's form says it is).  Balances hold exact
Decimals; Binance's 8-decimal rendering happens at the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spark.core.secret import Secret
from spark.venue.errors import NewOrderRejected
from spark.venue.numbers import ZERO


@attrs.frozen
class Credential:
    """An API key of the venue's account."""

    api_key: str
    secret: Secret | None
    ed25519: Ed25519PublicKey | None = attrs.field(default=None, eq=False)
    account: str = "main"


class Balances:
    """Free and locked amounts per asset; never negative (refused with -2010 instead)."""

    __slots__ = ("free", "locked", "update_time")

    def __init__(self, initial: Mapping[str, Decimal]) -> None:
        self.free: dict[str, Decimal] = {a: Decimal(v) for a, v in initial.items()}
        self.locked: dict[str, Decimal] = {a: ZERO for a in initial}
        self.update_time = 0

    def ensure(self, asset: str) -> None:
        self.free.setdefault(asset, ZERO)
        self.locked.setdefault(asset, ZERO)

    def has_free(self, asset: str, amount: Decimal) -> bool:
        return self.free.get(asset, ZERO) >= amount

    def lock(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        if self.free[asset] < amount:
            raise NewOrderRejected(NewOrderRejected.INSUFFICIENT_BALANCE)
        self.free[asset] -= amount
        self.locked[asset] += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.locked[asset] -= amount
        self.free[asset] += amount

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.locked[asset] -= amount

    def credit(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.free[asset] += amount

    def rows(self, assets: Iterable[str] | None = None) -> list[tuple[str, Decimal, Decimal]]:
        names = sorted(self.free) if assets is None else sorted(set(assets))
        for name in names:
            self.ensure(name)
        return [(a, self.free[a], self.locked[a]) for a in names]
