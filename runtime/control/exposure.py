"""Who can reach the control port: refuse a network-reachable port without tokens."""

from __future__ import annotations

import ipaddress

from spark.runtime.control.errors import ControlPortRefused

__all__ = ["check_exposure", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine.

    ``localhost`` and loopback addresses (127.0.0.0/8, ::1) are; the wildcards (``""``,
    ``0.0.0.0``, ``::``), other addresses and other host names are not (a name could resolve
    to anything).
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens_configured: bool) -> None:
    """Raise :class:`ControlPortRefused` for a non-loopback ``host`` without tokens."""
    if not tokens_configured and not is_loopback(host):
        raise ControlPortRefused(
            f"refusing to serve the control port on non-loopback host {host!r} without "
            "control tokens: set SPARK_CONTROL_TOKENS (role:token,…) or bind [control] host "
            "to 127.0.0.1"
        )
