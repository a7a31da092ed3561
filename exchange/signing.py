"""Request signing: HMAC-SHA256 (hex) and Ed25519 (base64) behind one :class:`Signer` protocol.

Two payload rules exist and both are Binance's, not ours:

* REST: the signature covers the exact bytes sent, ``query string + body`` concatenated
  (:func:`rest_payload`). Whatever encodes the request must sign what it sends, so the codec
  builds the string once and signs that string.
* WebSocket API: all params except ``signature``, sorted by name, joined as ``k=v&k=v`` with no
  percent-encoding (:func:`ws_payload`).

Secret material lives in :class:`Secret` (HMAC) or inside a ``cryptography`` key object
(Ed25519); neither prints itself, so a signer can be logged, put in an exception or a ``repr``
of a config without leaking anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from spark.core.secret import Secret

__all__ = [
    "Ed25519Signer",
    "HmacSigner",
    "Secret",
    "Signer",
    "format_param",
    "rest_payload",
    "ws_payload",
]

SignerKind = Literal["hmac", "ed25519"]


class Signer(Protocol):
    """Anything that signs a payload the way Binance verifies it."""

    @property
    def kind(self) -> SignerKind: ...

    def sign(self, payload: str) -> str:
        """The signature of the UTF-8 bytes of ``payload``, as Binance expects it sent."""
        ...


class HmacSigner:
    """HMAC-SHA256 over the payload, lowercase hex (case-insensitive on Binance's side)."""

    __slots__ = ("_key",)

    kind: Final = "hmac"

    def __init__(self, secret: Secret | str) -> None:
        raw = secret.reveal() if isinstance(secret, Secret) else secret
        if not raw:
            raise ValueError("empty HMAC secret")
        self._key = raw.encode("utf-8")

    def sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(secret=***)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer cannot be pickled")


class Ed25519Signer:
    """Ed25519 over the payload, standard base64 (case-sensitive).

    Only the file path is remembered for ``repr``; the key object from ``cryptography`` does
    not expose its bytes through ``repr`` either.
    """

    __slots__ = ("_key", "_source")

    kind: Final = "ed25519"

    def __init__(self, key: Ed25519PrivateKey, *, source: str = "<memory>") -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("not an Ed25519 private key")
        self._key = key
        self._source = source

    @classmethod
    def from_pem_file(cls, path: str | Path, password: Secret | None = None) -> Ed25519Signer:
        """Load a PKCS#8 PEM private key (the format Binance's key generator writes)."""
        data = Path(path).read_bytes()
        return cls.from_pem(data, password=password, source=str(path))

    @classmethod
    def from_pem(
        cls, data: bytes, *, password: Secret | None = None, source: str = "<memory>"
    ) -> Ed25519Signer:
        try:
            key = load_pem_private_key(
                data, password=password.reveal().encode() if password is not None else None
            )
        except (ValueError, TypeError) as exc:
            # The library's message never contains key bytes, but keep ours generic anyway.
            raise ValueError(f"cannot load Ed25519 private key from {source}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{source} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key, source=source)

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode("utf-8"))).decode("ascii")

    def __repr__(self) -> str:
        return f"Ed25519Signer(source={self._source!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer cannot be pickled")


def format_param(value: Any) -> str:
    """One parameter value as Binance wants it on the wire.

    Decimals in plain notation (never ``1E-7``), booleans lowercase, everything else ``str``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    from decimal import Decimal

    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite decimal parameter")
        return format(value, "f")
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


def rest_payload(query: str, body: str) -> str:
    """REST rule: the signed payload is the query string followed by the body, as sent."""
    return query + body


def ws_payload(params: Mapping[str, Any]) -> str:
    """WebSocket-API rule: every param but ``signature``, sorted by name, ``k=v&k=v``."""
    return "&".join(
        f"{k}={format_param(params[k])}" for k in sorted(params) if k != "signature"
    )
