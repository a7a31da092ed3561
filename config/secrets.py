"""Secrets come from the environment only, never from ``spark.toml``.

:class:`Secrets` holds the exchange credentials, the control-port bearer tokens and the simulated
venue's account secret, each wrapped in :class:`~spark.core.secret.Secret` so that a stray log
call or repr cannot reveal it.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from spark.config.errors import Problem
from spark.core.secret import Secret

ROLES = ("admin", "trader", "viewer")
SIM_DEFAULT_API_KEY = "sim-key"
SIM_DEFAULT_API_SECRET = "sim-secret"

# Key names that must never appear in the TOML file, with where the value belongs instead.
SECRET_KEY_HINTS: Mapping[str, str] = {
    "api_key": "BINANCE_API_KEY",
    "api_secret": "BINANCE_API_SECRET",
    "secret": "BINANCE_API_SECRET",
    "secret_key": "BINANCE_API_SECRET",
    "private_key": "BINANCE_PRIVATE_KEY_FILE",
    "private_key_file": "BINANCE_PRIVATE_KEY_FILE",
    "password": "DATABASE_URL",
    "token": "SPARK_CONTROL_TOKENS",
    "tokens": "SPARK_CONTROL_TOKENS",
    "control_tokens": "SPARK_CONTROL_TOKENS",
    "api_secret_key": "BINANCE_API_SECRET",
    "sim_api_secret": "SIM_API_SECRET",
}


def secret_hint(key: str) -> str | None:
    """The environment variable a secret-looking key belongs in, or None if it is not one."""
    lowered = key.lower()
    if lowered in SECRET_KEY_HINTS:
        return SECRET_KEY_HINTS[lowered]
    if any(word in lowered for word in ("secret", "password", "token", "private_key")):
        return "the environment (see README: Configuration)"
    return None


@attrs.frozen
class ControlToken:
    role: str
    token: Secret


@attrs.frozen
class Secrets:
    """Credentials read from the environment."""

    api_key: str | None = None
    api_secret: Secret | None = None
    private_key_file: str | None = None
    control_tokens: tuple[ControlToken, ...] = ()
    sim_api_key: str = SIM_DEFAULT_API_KEY
    sim_api_secret: Secret = Secret(SIM_DEFAULT_API_SECRET)

    def known_secret_values(self) -> tuple[str, ...]:
        """Every secret value, for the log redaction filter."""
        values = [t.token.reveal() for t in self.control_tokens]
        if self.api_secret:
            values.append(self.api_secret.reveal())
        if self.sim_api_secret.reveal() != SIM_DEFAULT_API_SECRET:
            values.append(self.sim_api_secret.reveal())
        return tuple(v for v in values if len(v) >= 4)


def parse_control_tokens(text: str) -> tuple[tuple[ControlToken, ...], list[Problem]]:
    """Parse ``role:token,role:token`` without ever echoing a token in a problem."""
    tokens: list[ControlToken] = []
    problems: list[Problem] = []
    for index, item in enumerate(filter(None, (p.strip() for p in text.split(",")))):
        role, sep, token = item.partition(":")
        where = f"SPARK_CONTROL_TOKENS[{index}]"
        if not sep or not token:
            problems.append(Problem(where, "must be role:token"))
        elif role not in ROLES:
            problems.append(Problem(where, f"role {role!r} is not one of {', '.join(ROLES)}"))
        elif len(token) < 16:
            problems.append(Problem(where, "token is shorter than 16 characters"))
        else:
            tokens.append(ControlToken(role, Secret(token)))
    return tuple(tokens), problems


def secrets_from_env(env: Mapping[str, str]) -> tuple[Secrets, list[Problem]]:
    tokens, problems = parse_control_tokens(env.get("SPARK_CONTROL_TOKENS", ""))
    secret = env.get("BINANCE_API_SECRET") or None
    return (
        Secrets(
            api_key=env.get("BINANCE_API_KEY") or None,
            api_secret=Secret(secret) if secret else None,
            private_key_file=env.get("BINANCE_PRIVATE_KEY_FILE") or None,
            control_tokens=tokens,
            sim_api_key=env.get("SIM_API_KEY") or SIM_DEFAULT_API_KEY,
            sim_api_secret=Secret(env.get("SIM_API_SECRET") or SIM_DEFAULT_API_SECRET),
        ),
        problems,
    )
