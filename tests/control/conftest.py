"""Fixtures for the control port tests: a real server on 127.0.0.1 port 0 per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest
import trio
from control_double import TOKENS, BackendDouble, Harness, Start

from spark.config.schema import ControlConfig
from spark.config.secrets import ControlToken
from spark.runtime.control import build_app, serve


@pytest.fixture
async def control(nursery: trio.Nursery) -> AsyncIterator[Start]:
    """``await control(backend=…, tokens=…, config=…, clock=…)`` → a served :class:`Harness`."""
    clients: list[httpx.AsyncClient] = []

    async def start(
        backend: BackendDouble | None = None,
        *,
        tokens: Sequence[ControlToken] = TOKENS,
        config: ControlConfig | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> Harness:
        backend = backend if backend is not None else BackendDouble()
        app = build_app(backend, tokens, config or ControlConfig(), clock=clock)
        host, port = await nursery.start(serve, app, "127.0.0.1", 0)
        client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10)
        clients.append(client)
        return Harness(backend, client, app, (host, port))

    yield start
    for client in clients:
        await client.aclose()
