"""Serving the control port with hypercorn's trio worker.

:func:`serve` binds (port 0 = any free port), reports the bound ``(host, port)`` through
``task_status.started`` and serves until its cancel scope is cancelled.  Cancellation turns
into hypercorn's own graceful shutdown: stop accepting, give in-flight requests
``graceful_timeout_s``, then run the app's lifespan shutdown — so a cancelled control port
neither cuts a request off mid-way without warning nor logs a lifespan failure.  The graceful
part runs shielded, under a hard deadline.
"""

from __future__ import annotations

import logging
from typing import cast
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework
from starlette.types import ASGIApp

from spark.runtime.control.app import ControlInfo
from spark.runtime.control.exposure import check_exposure

__all__ = ["serve"]

log = logging.getLogger("spark.runtime.control")
http_log = logging.getLogger("spark.runtime.control.http")

# On top of the graceful timeout: lifespan shutdown and closing sockets.
_HARD_STOP_MARGIN_S = 2.0


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    graceful_timeout_s: float = 1.0,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status.started((host, port))``
    with the port actually bound.  A failure to bind raises the plain :class:`OSError`.

    Refuses (:class:`~spark.runtime.control.errors.ControlPortRefused`) a non-loopback host
    unless ``app`` was built by :func:`~spark.runtime.control.build_app` with tokens.
    """
    info = getattr(getattr(app, "state", None), "spark_control", None)
    check_exposure(host, isinstance(info, ControlInfo) and info.tokens_configured)

    config = HypercornConfig()
    config.bind = [_bind_address(host, port)]
    config.accesslog = None  # the audit log records every private call
    config.errorlog = http_log
    config.graceful_timeout = graceful_timeout_s
    config.shutdown_timeout = graceful_timeout_s + 1.0
    config.startup_timeout = 10.0
    config.include_server_header = False

    stop = trio.Event()
    shield = trio.CancelScope(shield=True)

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        with shield:
            # Starlette's ASGIApp and hypercorn's ASGIFramework describe the same protocol
            # with different (incompatible) TypedDicts.
            await hypercorn_serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait,
                                  task_status=task_status)

    started = False
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            address = _bound_address(binds)
            log.info("control port listening on http://%s", _bind_address(*address))
            task_status.started(address)
            started = True
            try:
                await trio.sleep_forever()
            finally:
                stop.set()
                shield.deadline = trio.current_time() + graceful_timeout_s + _HARD_STOP_MARGIN_S
    except BaseExceptionGroup as group:
        # A bind failure (address in use, no such address) comes out of hypercorn's nested
        # nurseries wrapped several times over; hand it to the caller as the plain OSError.
        leaf = _sole_leaf(group)
        if not started and isinstance(leaf, OSError):
            raise leaf from None
        raise


def _sole_leaf(error: BaseException) -> BaseException | None:
    """The one exception at the bottom of nested groups, or None if there are several."""
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _bound_address(binds: list[str]) -> tuple[str, int]:
    """hypercorn reports what it bound as URLs (``http://127.0.0.1:54321``)."""
    for bind in binds:
        parts = urlsplit(bind)
        if parts.hostname is not None and parts.port is not None:
            return parts.hostname, parts.port
    raise RuntimeError(f"hypercorn reported no usable address: {binds!r}")
