"""Process hardening applied before anything else runs.

Secrets live in this process's memory, so: files we create are private (``umask 077``), core
dumps are off (``RLIMIT_CORE = 0``) and the process is marked non-dumpable (no ptrace by other
processes of the same user, no core via ``/proc``).  Running as root is refused unless
``runtime.allow_root`` is set — except against the simulated venue, where no money is at stake
and a warning is enough (developer machines and containers often run as root).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource

log = logging.getLogger("spark.runtime")

_PR_SET_DUMPABLE = 4


class RootRefused(Exception):
    """Refusing to run as root."""

    reason = "run_as_root"


def harden_process() -> None:
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_non_dumpable()


def _set_non_dumpable() -> None:
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - every Linux has a libc
        return
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        log.warning("could not mark the process non-dumpable")


def check_user(*, allow_root: bool, simulated: bool) -> None:
    if os.geteuid() != 0 or allow_root:
        return
    if simulated:
        log.warning("running as root against the simulated venue; "
                    "set runtime.allow_root = true to silence, or run as a normal user")
        return
    raise RootRefused(
        "refusing to run as root: run as an unprivileged user (see config/spark-runtime.service)"
        " or set runtime.allow_root = true"
    )
