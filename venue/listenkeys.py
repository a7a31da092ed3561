"""USD-M futures listenKeys: one per account, valid 60 minutes after its last POST/PUT.

Expiry runs on the venue's wall clock: the server calls :meth:`ListenKeys.expire_due` every step,
and the admin route can expire every key at once.
"""

from __future__ import annotations

import random
import string

from spark.venue.errors import InvalidListenKey

VALIDITY_MS = 60 * 60 * 1000


class ListenKeys:
    __slots__ = ("_by_account", "_keys", "_rng")

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"{seed}:listen-keys")
        self._by_account: dict[str, str] = {}
        self._keys: dict[str, tuple[str, int]] = {}

    def _new_key(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(self._rng.choice(alphabet) for _ in range(64))

    def create(self, account: str, now: int) -> str:
        """POST: the account's live key extended, or a new one."""
        key = self._by_account.get(account)
        if key is None:
            key = self._new_key()
            self._by_account[account] = key
        self._keys[key] = (account, now + VALIDITY_MS)
        return key

    def keepalive(self, account: str, key: str | None, now: int) -> str:
        """PUT: extend by 60 minutes, or ``-1125`` when the account has no such live key."""
        live = self._by_account.get(account)
        if live is None or (key is not None and key != live):
            raise InvalidListenKey()
        self._keys[live] = (account, now + VALIDITY_MS)
        return live

    def delete(self, account: str, key: str | None) -> str:
        live = self._by_account.get(account)
        if live is None or (key is not None and key != live):
            raise InvalidListenKey()
        del self._by_account[account]
        del self._keys[live]
        return live

    def account_of(self, key: str, now: int) -> str | None:
        entry = self._keys.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def expires_at(self, key: str) -> int | None:
        entry = self._keys.get(key)
        return entry[1] if entry else None

    def expire_due(self, now: int) -> list[str]:
        due = [k for k, (_, until) in self._keys.items() if until <= now]
        for key in due:
            self._drop(key)
        return due

    def expire_all(self) -> list[str]:
        keys = list(self._keys)
        for key in keys:
            self._drop(key)
        return keys

    def _drop(self, key: str) -> None:
        account, _ = self._keys.pop(key)
        if self._by_account.get(account) == key:
            del self._by_account[account]
