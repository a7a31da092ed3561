"""The control port as a supervised child of the ``ops`` supervisor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from spark.runtime.control import build_app, serve
from spark.supervision import ChildContext, ChildSpec, Restart

if TYPE_CHECKING:
    from spark.runtime.process import Runtime


def control_port_spec(runtime: Runtime) -> ChildSpec:
    from spark.runtime.backend import RuntimeBackend

    settings = runtime.settings
    cfg = settings.config.control
    # Built once, outside the child, so a refusal (non-loopback without tokens) is a startup
    # error rather than a crash loop.
    app = build_app(RuntimeBackend(runtime), settings.secrets.control_tokens, cfg)

    async def run_control_port(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Once bound, keep the same port across restarts so clients are not lost.
        port = runtime.control_address[1] if runtime.control_address else cfg.port
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve, app, cfg.host, port)
            runtime.control_address = address
            task_status.started()
            await ctx.wait_stop()
            nursery.cancel_scope.cancel()

    return ChildSpec(
        name="control_port",
        entry=run_control_port,
        restart=Restart.PERMANENT,
        shutdown_deadline_s=settings.config.supervision.shutdown_deadline_s,
    )
