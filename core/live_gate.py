"""May this runtime send orders at all? The live-trading gate of CONTRACT §3.

"Live trading against a real venue needs all of: mode spot/futures, EXECUTE=true, credentials,
and a policy other than dry_run. Anything missing: the runtime says which and refuses to send."

This is a pure decision so the runtime, ``check-config``, ``canary`` and ``/readyz`` all give the
same answer and name the same missing pieces:

======================  ==============================================================
mode                    needs
======================  ==============================================================
``sim``                 a policy other than ``dry_run`` (the simulated venue is ours)
``spot-testnet``,       ``EXECUTE=true``, credentials, policy other than ``dry_run``
``futures-testnet``     (a testnet is someone else's venue: same arming as production)
``spot``, ``futures``   ``EXECUTE=true``, credentials, policy other than ``dry_run``
anything else           refused (``mode``)
======================  ==============================================================

Missing pieces are stable codes (``mode``, ``execute``, ``credentials``, ``policy``), in that
order; :data:`MISSING_TEXT` says what to set for each.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from spark.config.schema import EXCHANGE_MODES, LIVE_POLICIES

__all__ = [
    "MISSING_CREDENTIALS",
    "MISSING_EXECUTE",
    "MISSING_MODE",
    "MISSING_POLICY",
    "MISSING_TEXT",
    "LiveGateDecision",
    "describe_missing",
    "live_gate",
]

MISSING_MODE: Final = "mode"
MISSING_EXECUTE: Final = "execute"
MISSING_CREDENTIALS: Final = "credentials"
MISSING_POLICY: Final = "policy"

MISSING_TEXT: Final = {
    MISSING_MODE: f"SPARK_EXCHANGE_MODE must be one of {', '.join(EXCHANGE_MODES)}",
    MISSING_EXECUTE: "EXECUTE=true (arms sending to a non-sim venue)",
    MISSING_CREDENTIALS: "credentials (BINANCE_API_KEY with BINANCE_API_SECRET or "
    "BINANCE_PRIVATE_KEY_FILE)",
    MISSING_POLICY: "LIVE_POLICY=confirm_required or auto (dry_run sends nothing)",
}


class LiveGateDecision(NamedTuple):
    """Unpacks as ``(send_allowed, missing)``."""

    send_allowed: bool
    missing: list[str]


def live_gate(mode: str, policy: str, execute: bool, has_credentials: bool) -> LiveGateDecision:
    """Whether orders may be sent in ``mode`` under ``policy``, and what is missing if not."""
    missing: list[str] = []
    if mode not in EXCHANGE_MODES:
        missing.append(MISSING_MODE)
    if mode != "sim":
        if not execute:
            missing.append(MISSING_EXECUTE)
        if not has_credentials:
            missing.append(MISSING_CREDENTIALS)
    if policy not in LIVE_POLICIES or policy == "dry_run":
        missing.append(MISSING_POLICY)
    return LiveGateDecision(not missing, missing)


def describe_missing(missing: list[str]) -> str:
    """One line for logs, ``/readyz`` and the canary report."""
    if not missing:
        return "armed"
    return "not sending; missing: " + "; ".join(MISSING_TEXT.get(m, m) for m in missing)
