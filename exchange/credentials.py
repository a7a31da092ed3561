"""An API key and its signer, carried together so nobody pairs the wrong ones.

The API key is not a secret in Binance's model (it travels in a header), but it identifies the
account, so ``repr`` shows only a prefix of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from spark.exchange.signing import Ed25519Signer, HmacSigner, Secret, Signer

__all__ = ["Credentials"]


class Credentials:
    """``api_key`` + a :class:`~spark.exchange.signing.Signer`."""

    __slots__ = ("api_key", "signer")

    def __init__(self, api_key: str, signer: Signer) -> None:
        if not api_key:
            raise ValueError("empty API key")
        self.api_key = api_key
        self.signer = signer

    @classmethod
    def hmac(cls, api_key: str, secret: Secret | str) -> Credentials:
        return cls(api_key, HmacSigner(secret))

    @classmethod
    def ed25519(
        cls, api_key: str, private_key_file: str | Path, password: Secret | None = None
    ) -> Credentials:
        return cls(api_key, Ed25519Signer.from_pem_file(private_key_file, password))

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:4]}…, signer={self.signer!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("credentials cannot be pickled")
