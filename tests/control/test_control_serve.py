"""serve(): port 0, clean and graceful stop on cancel, the loopback-without-tokens refusal,
and the streamed export."""

from __future__ import annotations

import logging
import socket
from contextlib import aclosing

import httpx
import pytest
import trio
from control_double import ADMIN_TOKEN, TOKENS, TRADER_TOKEN, BackendDouble, Start, bearer

from spark.config.schema import ControlConfig
from spark.config.secrets import ControlToken
from spark.core.secret import Secret
from spark.runtime.control import ControlPortRefused, build_app, is_loopback, serve

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


def warnings_and_worse(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def test_serve_reports_the_bound_port_and_stops_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = build_app(BackendDouble(), TOKENS, ControlConfig())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, app, "127.0.0.1", 0)
            assert host == "127.0.0.1" and port > 0
            # A keep-alive connection stays open while the server is cancelled.
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                assert (await client.get("/api/public/health")).status_code == 200
                stopping = trio.current_time()
                nursery.cancel_scope.cancel()
    assert trio.current_time() - stopping < 3.0
    assert warnings_and_worse(caplog) == []
    assert not any("lifespan" in r.getMessage().lower() for r in caplog.records)
    # The port was released.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


async def test_cancel_lets_an_in_flight_request_finish(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = BackendDouble()
    backend.place_delay_s = 0.3
    app = build_app(backend, TOKENS, ControlConfig())
    responses: list[httpx.Response] = []
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client, trio.open_nursery() as outer:
            server = trio.CancelScope()

            async def run_server(*, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
                with server:
                    await serve(app, "127.0.0.1", 0, task_status=task_status)

            host, port = await outer.start(run_server)

            async def place() -> None:
                responses.append(await client.post(
                    f"http://{host}:{port}/api/private/orders", json=ORDER,
                    headers=bearer(TRADER_TOKEN)))

            outer.start_soon(place)
            await trio.sleep(0.1)
            server.cancel()
    [response] = responses
    assert response.status_code == 200
    assert backend.orders
    assert warnings_and_worse(caplog) == []


async def test_port_in_use_fails_at_start() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        app = build_app(BackendDouble(), TOKENS, ControlConfig())
        with pytest.raises(OSError, match="in use"):  # plain, not wrapped in groups
            await serve(app, "127.0.0.1", port)


# -- exposure -----------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "example.org"])
def test_non_loopback_without_tokens_is_refused(host: str) -> None:
    with pytest.raises(ControlPortRefused, match="SPARK_CONTROL_TOKENS"):
        build_app(BackendDouble(), (), ControlConfig(host=host))
    build_app(BackendDouble(), TOKENS, ControlConfig(host=host))  # with tokens it is fine


async def test_serve_refuses_a_non_loopback_host_for_an_app_without_tokens() -> None:
    app = build_app(BackendDouble(), (), ControlConfig(host="127.0.0.1"))
    with pytest.raises(ControlPortRefused):
        await serve(app, "0.0.0.0", 0)


async def test_loopback_without_tokens_serves_public_routes_only(control: Start) -> None:
    h = await control(tokens=())
    assert (await h.client.get("/api/public/health")).status_code == 200
    r = await h.client.get("/api/private/orders", headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 401


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "10.0.0.1", "host.example"]))


@pytest.mark.parametrize(
    "tokens",
    [
        (ControlToken("root", Secret("r" * 20)),),
        (ControlToken("admin", Secret("")),),
        (ControlToken("admin", Secret("same" * 5)), ControlToken("viewer", Secret("same" * 5))),
    ],
)
def test_unusable_tokens_are_refused(tokens: tuple[ControlToken, ...]) -> None:
    with pytest.raises(ControlPortRefused) as info:
        build_app(BackendDouble(), tokens, ControlConfig())
    assert "same" not in str(info.value) and "rrrr" not in str(info.value)


# -- streaming export ---------------------------------------------------------------------
async def test_export_streams_chunks_before_the_backend_is_done(control: Start) -> None:
    backend = BackendDouble()
    backend.export_gate = trio.Event()
    backend.export_rows = 50
    h = await control(backend)
    with trio.fail_after(5):
        async with h.client.stream("GET", "/api/private/export/trades.csv",
                                   params={"since": "2024-05-01T00:00:00+02:00"},
                                   headers=bearer(TRADER_TOKEN)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/csv; charset=utf-8"
            assert "content-length" not in r.headers
            async with aclosing(r.aiter_raw()) as chunks:
                # The header row arrives while the backend is still blocked on the gate: a
                # buffered response could not deliver it.
                first = await chunks.__anext__()
                assert first.startswith(b"trade_id,symbol")
                assert not backend.export_closed
                backend.export_gate.set()
                rest = b"".join([chunk async for chunk in chunks])
    lines = (first + rest).decode().splitlines()
    assert len(lines) == 51
    assert lines[1] == "0,BTCUSDT,45000.5,0.001,2024-05-01T00:00:00+02:00"
    with trio.fail_after(5):  # the server closes the iterator once the body is sent
        while not backend.export_closed:
            await trio.sleep(0.01)
    [record] = backend.records
    assert record.result == "200" and record.detail["since"] == "2024-05-01T00:00:00+02:00"


async def test_export_iterator_is_closed_when_the_client_goes_away(control: Start) -> None:
    backend = BackendDouble()
    backend.export_gate = trio.Event()
    h = await control(backend)
    with trio.fail_after(5):
        async with h.client.stream("GET", "/api/private/export/trades.csv",
                                   headers=bearer(TRADER_TOKEN)) as r:
            async with aclosing(r.aiter_raw()) as chunks:
                await chunks.__anext__()
        await h.client.aclose()  # drop the connection mid-stream
        while not backend.export_closed:
            await trio.sleep(0.01)


async def test_export_errors_before_the_first_chunk_are_problems(control: Start) -> None:
    from spark.runtime.control import Unavailable

    backend = BackendDouble()
    backend.failure = Unavailable("the database is down")
    h = await control(backend)
    r = await h.client.get("/api/private/export/trades.csv", headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
