"""Binance request security: signatures (HMAC-SHA256 hex, Ed25519 base64) and the
``timestamp`` / ``recvWindow`` rule.

REST signs ``query string + request body`` exactly as sent (minus the ``signature`` parameter);
the WebSocket API signs every parameter except ``signature``, sorted by name, joined ``k=v&k=v``.
The rule for time is Binance's own: accept when
``timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from spark.venue.accounts import Credential
from spark.venue.errors import InvalidSignature, InvalidTimestamp, MandatoryParamMissing

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
DEFAULT_RECV_WINDOW = Decimal(5000)
MAX_RECV_WINDOW = 60000
AHEAD_TOLERANCE_MS = 1000


def verify_signature(credential: Credential, payload: str, signature: str) -> None:
    """Accept an HMAC hex signature (key has a secret) or an Ed25519 one (key has a public key)."""
    data = payload.encode()
    if credential.secret is not None and _HEX64.match(signature):
        expected = hmac.new(credential.secret.reveal().encode(), data, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature.lower()):
            return
        raise InvalidSignature()
    if credential.ed25519 is not None:
        try:
            raw = base64.b64decode(signature, validate=True)
            credential.ed25519.verify(raw, data)
        except (binascii.Error, ValueError, CryptoInvalidSignature):
            raise InvalidSignature() from None
        return
    raise InvalidSignature()


def check_recv_window(recv_window: Decimal | None) -> Decimal:
    if recv_window is None:
        return DEFAULT_RECV_WINDOW
    if recv_window > MAX_RECV_WINDOW:
        raise MandatoryParamMissing.too_big("recvWindow", MAX_RECV_WINDOW)
    if recv_window <= 0:
        raise MandatoryParamMissing.named("recvWindow")
    return recv_window


def check_timestamp(timestamp: int, recv_window: Decimal, now: int) -> None:
    if timestamp >= now + AHEAD_TOLERANCE_MS:
        raise InvalidTimestamp(InvalidTimestamp.AHEAD)
    if now - timestamp > recv_window:
        raise InvalidTimestamp()


def ws_param_text(value: Any) -> str:
    """A WebSocket-API parameter as it appears in the signed payload."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def ws_signature_payload(params: Mapping[str, Any]) -> str:
    return "&".join(
        f"{k}={ws_param_text(params[k])}" for k in sorted(params) if k != "signature"
    )


def sign_hmac(secret: str, payload: str) -> str:
    """HMAC-SHA256 hex (what a client does; handy in tests and tools)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def load_ed25519_public_key(path: str | Path) -> Ed25519PublicKey:
    key = load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key
