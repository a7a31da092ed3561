"""Bearer-token authentication and the role → permission table (CONTRACT §5).

Tokens are compared in constant time: the presented token and every configured token are
hashed with SHA-256 and the digests compared with :func:`hmac.compare_digest` against *every*
configured token, without an early exit, so neither the timing nor the length of a token says
which (if any) matched.

An authenticated caller is known by :class:`Identity`: its role and a short, non-reversible
fingerprint of its token (the first 8 hex characters of SHA-256).  The fingerprint keys the
rate limiter and names the caller in the audit log; the token itself is never kept in a
readable form beyond the :class:`~spark.core.secret.Secret` it came in.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence

import attrs

from spark.config.secrets import ROLES, ControlToken
from spark.runtime.control.errors import ControlPortRefused

__all__ = [
    "ANONYMOUS",
    "ROLE_PERMISSIONS",
    "AuthFailure",
    "Authenticator",
    "Identity",
    "Permission",
    "fingerprint",
]

ANONYMOUS = "anonymous"


class Permission(enum.StrEnum):
    READ = "read"
    EXECUTE = "execute"
    CONFIRM = "confirm"
    EXPORT = "export"
    STREAM = "stream"
    ADMIN = "admin"


ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "trader": frozenset(
        {Permission.READ, Permission.EXECUTE, Permission.CONFIRM, Permission.EXPORT,
         Permission.STREAM}
    ),
    "viewer": frozenset({Permission.READ}),
}
assert set(ROLE_PERMISSIONS) == set(ROLES)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def fingerprint(token: str) -> str:
    """First 8 hex characters of SHA-256(token): enough to tell tokens apart in an audit
    log, far too little to recover or brute-force one."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:8]


@attrs.frozen
class Identity:
    role: str
    fingerprint: str

    @property
    def actor(self) -> str:
        """The audit name of this caller: ``role:fingerprint``."""
        return f"{self.role}:{self.fingerprint}"

    def allows(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


@attrs.frozen
class AuthFailure:
    """Why a request is not authenticated; ``reason`` is a stable code for the problem."""

    reason: str
    detail: str


MISSING = AuthFailure("missing_token", "an Authorization: Bearer token is required")
MALFORMED = AuthFailure("malformed_authorization",
                        "the Authorization header must be 'Bearer <token>'")
UNKNOWN = AuthFailure("unknown_token", "the bearer token is not valid")


class Authenticator:
    """Resolves an ``Authorization`` header value to an :class:`Identity`."""

    def __init__(self, tokens: Sequence[ControlToken]) -> None:
        entries: list[tuple[bytes, Identity]] = []
        for index, token in enumerate(tokens):
            value = token.token.reveal()
            if token.role not in ROLE_PERMISSIONS:
                raise ControlPortRefused(
                    f"control token {index}: role {token.role!r} is not one of {', '.join(ROLES)}"
                )
            if not value:
                raise ControlPortRefused(f"control token {index} ({token.role}) is empty")
            digest = _digest(value)
            if any(hmac.compare_digest(digest, known) for known, _ in entries):
                raise ControlPortRefused(
                    f"control token {index} ({token.role}) is configured more than once"
                )
            entries.append((digest, Identity(token.role, fingerprint(value))))
        self._entries: tuple[tuple[bytes, Identity], ...] = tuple(entries)

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        """How many tokens are configured."""
        return len(self._entries)

    def scrub(self, path: str) -> str:
        """``path`` with any segment that is a configured token replaced by ``***`` (for
        audit records of unknown private paths: someone may paste a token into a URL)."""
        segments = path.split("/")
        for index, segment in enumerate(segments):
            if segment and self._known(_digest(segment)):
                segments[index] = "***"
        return "/".join(segments)

    def _known(self, presented: bytes) -> bool:
        found = False
        for digest, _ in self._entries:
            found |= hmac.compare_digest(presented, digest)
        return found

    def authenticate(self, authorization: str | None) -> Identity | AuthFailure:
        if authorization is None or not authorization.strip():
            return MISSING
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials or " " in credentials:
            return MALFORMED
        presented = _digest(credentials)
        found: Identity | None = None
        for digest, identity in self._entries:
            # No early exit: every configured token is compared on every request.
            if hmac.compare_digest(presented, digest):
                found = identity
        return found if found is not None else UNKNOWN
