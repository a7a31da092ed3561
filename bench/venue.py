"""Simulated venue throughput against bare hypercorn + starlette floors (run by hand; not in CI).

    .venv/bin/python bench/venue.py                      # about a minute
    .venv/bin/python bench/venue.py --seconds 5 --workers 8 --burst 4000
    .venv/bin/python bench/venue.py --profile rest       # cProfile the venue's server process

Measures, in one run, with each server in its own process (so it has a core to itself and the
client's work is not counted against it) and the client in this process:

(a) order round trips/s over loopback REST with keep-alive: ``--workers`` concurrent tasks of
    one ``httpx.AsyncClient`` on trio, each signing ``POST /api/v3/order`` (a LIMIT order far
    from the market, answered FULL) and then ``DELETE /api/v3/order`` for it, HMAC-signed as a
    real client does.  Floor: a minimal hypercorn (trio worker) + starlette ``Route`` answering
    the same requests with a fixed body (the venue's own reply bytes), driven the same way.
(b) user-data events/s delivered to one websocket client: ``--burst`` resting LIMIT orders are
    placed (untimed), then one ``POST /_sim/price`` moves the market through all of them; the
    clock runs from that request until the client (trio-websocket, subscribed with
    ``userDataStream.subscribe.signature``) has received every ``executionReport`` of the fills.
    Floor: a minimal hypercorn + starlette ``WebSocketRoute`` that sends the same number of
    pre-serialized frames of the same size (a real frame of the venue's) when asked.

Each measurement runs ``--rounds`` times, floor and venue alternating; the best round of each
counts (these machines are shared and noisy; the load average is printed).  Target: the venue at
>= 50 % of its floor in both.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import hmac
import json
import logging
import os
import pstats
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import httpx
import trio
import trio_websocket

KEY = "sim-key"
SECRET = "sim-secret"
SYMBOL = "BTCUSDT"
PRICE = Decimal(45000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(params: dict[str, Any]) -> str:
    query = urlencode({**params, "timestamp": now_ms()})
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


# -- the servers (each runs in a child process: `bench/venue.py --serve venue|floor`) -----------
def venue_config(burst: int) -> Any:
    from spark.config.schema import VenueConfig, VenueSymbolConfig

    big = 10**12
    symbols = {SYMBOL: VenueSymbolConfig(price=PRICE, step_size=Decimal("0.00001"),
                                         min_qty=Decimal("0.00001"), depth_qty=Decimal(100000),
                                         max_num_orders=burst + 100, max_qty=Decimal(10**6))}
    return VenueConfig(host="127.0.0.1", port=0, step_interval_ms=3_600_000.0,
                       weight_limit_1m=big, order_limit_10s=big, order_limit_1d=big,
                       balances={"USDT": Decimal(10**12), "BTC": Decimal(10**6)},
                       symbols=symbols)


async def until_signalled(start: Any) -> None:
    """Run ``start(task_status=...)``, print the URL it reports, serve until SIGINT/SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(start)
            print(url, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


async def serve_venue(burst: int) -> None:
    from spark.venue import Venue

    venue = Venue(venue_config(burst))
    await until_signalled(venue.run)


def hypercorn_config() -> Any:
    """The settings the venue's own hypercorn uses (``Venue.hypercorn_config``)."""
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("bench.floor")
    config.websocket_ping_interval = 20.0
    config.keep_alive_max_requests = 1_000_000_000
    config.graceful_timeout = 1.0
    return config


async def serve_floor(bodies_path: str) -> None:
    from hypercorn.trio import serve
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    bodies = json.loads(Path(bodies_path).read_text())
    replies = {method: body.encode() for method, body in bodies["rest"].items()}
    frame: str = bodies["frame"]

    async def order(request: Request) -> Response:
        return Response(replies[request.method], media_type="application/json")

    async def frames(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                count = int(await websocket.receive_text())
                for _ in range(count):
                    await websocket.send_text(frame)

    app = Starlette(routes=[Route("/api/v3/order", order, methods=["POST", "DELETE"]),
                            WebSocketRoute("/frames", frames)])

    async def start(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, hypercorn_config())
            task_status.started(str(binds[0]))

    await until_signalled(start)


def serve_main(kind: str, burst: int, bodies: str | None, profile: str | None) -> None:
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    try:
        if kind == "venue":
            trio.run(serve_venue, burst)
        else:
            assert bodies is not None
            trio.run(serve_floor, bodies)
    finally:
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)


@attrs.define
class Server:
    url: str
    pid: int

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@attrs.define
class Sample:
    """One measurement: client-observed rate, and where the CPU went meanwhile."""

    rate: float
    server_cpu_per_op_us: float
    server_busy: float
    client_busy: float


@asynccontextmanager
async def measuring(srv: Server) -> AsyncIterator[list[float]]:
    """Yields a list the caller fills with ``[ops]``; appends wall, server CPU, client CPU."""
    out: list[float] = []
    cpu0, client0, wall0 = srv.cpu_s(), time.process_time(), time.perf_counter()
    yield out
    out += [time.perf_counter() - wall0, srv.cpu_s() - cpu0, time.process_time() - client0]


def sample(measured: list[float]) -> Sample:
    ops, wall, server_cpu, client_cpu = measured
    return Sample(ops / wall, server_cpu / ops * 1e6, server_cpu / wall, client_cpu / wall)


@asynccontextmanager
async def server(kind: str, args: argparse.Namespace, bodies: Path | None = None,
                 profile: str | None = None) -> AsyncIterator[Server]:
    """Start ``bench/venue.py --serve kind``; yield its URL (first stdout line) and pid."""
    command = [sys.executable, __file__, "--serve", kind, "--burst", str(args.burst)]
    if bodies is not None:
        command += ["--bodies", str(bodies)]
    if profile is not None:
        command += ["--profile-out", profile]
    process = await trio.lowlevel.open_process(command, stdout=-1)
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError(f"{kind} server exited before reporting its URL")
                line += chunk
        yield Server(line.decode().strip(), process.pid)
    finally:
        process.send_signal(signal.SIGTERM)  # the child stops serving, writes its profile
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- (a) order round trips ----------------------------------------------------------------------
ORDER = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.01", "price": "30000", "newOrderRespType": "FULL"}


async def round_trip(http: httpx.AsyncClient) -> tuple[bytes, bytes]:
    headers = {"X-MBX-APIKEY": KEY}
    placed = await http.post(f"/api/v3/order?{signed(ORDER)}", headers=headers)
    if placed.status_code != 200:
        raise RuntimeError(f"POST /api/v3/order: {placed.status_code} {placed.text}")
    order_id = placed.json()["orderId"]
    cancelled = await http.delete(
        f"/api/v3/order?{signed({'symbol': SYMBOL, 'orderId': order_id})}", headers=headers)
    if cancelled.status_code != 200:
        raise RuntimeError(f"DELETE /api/v3/order: {cancelled.status_code} {cancelled.text}")
    cancelled.json()
    return placed.content, cancelled.content


async def rest_rate(srv: Server, workers: int, seconds: float) -> Sample:
    """Signed requests/s (each POST and each DELETE is one round trip)."""
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=10) as http:
        warm_until = trio.current_time() + min(1.0, seconds / 4)
        while trio.current_time() < warm_until:
            await round_trip(http)
        done = 0
        deadline = trio.current_time() + seconds

        async def worker() -> None:
            nonlocal done
            while trio.current_time() < deadline:
                await round_trip(http)
                done += 2

        async with measuring(srv) as measured, trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(worker)
        return sample([done, *measured])


# -- (b) user-data events -----------------------------------------------------------------------
async def subscribe(ws: trio_websocket.WebSocketConnection) -> None:
    params: dict[str, Any] = {"apiKey": KEY, "timestamp": now_ms()}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    await ws.send_message(json.dumps({"id": 1, "method": "userDataStream.subscribe.signature",
                                      "params": params}))
    reply = json.loads(await ws.get_message())
    if reply.get("status") != 200:
        raise RuntimeError(f"subscribe: {reply}")


async def place_ladder(http: httpx.AsyncClient, burst: int, workers: int) -> None:
    """``burst`` resting BUY orders a tick apart below 44000 (far under the market)."""
    headers = {"X-MBX-APIKEY": KEY}
    prices = iter(range(burst))

    async def worker() -> None:
        for i in prices:
            price = Decimal(44000) - Decimal(i) / 100
            params = {**ORDER, "price": str(price), "newOrderRespType": "ACK"}
            response = await http.post(f"/api/v3/order?{signed(params)}", headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"ladder order: {response.status_code} {response.text}")

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)


async def venue_event_rate(srv: Server, burst: int, workers: int) -> tuple[Sample, str]:
    """executionReports/s for one burst of fills; also returns one TRADE frame as sent."""
    ws_url = srv.url.replace("http://", "ws://", 1) + "/ws-api/v3"
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http, \
            trio_websocket.open_websocket_url(ws_url, max_message_size=2**20) as ws:
        await subscribe(ws)
        placed = trio.Event()

        async def discard() -> None:
            """Read the ladder's NEW reports and account updates as they come (untimed)."""
            while True:
                with trio.move_on_after(0.3) as quiet:
                    await ws.get_message()
                if quiet.cancelled_caught and placed.is_set():
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(discard)
            await place_ladder(http, burst, workers)
            placed.set()

        received = 0
        frame = ""
        async with measuring(srv) as measured:
            moved = await http.post("/_sim/price", json={"symbol": SYMBOL, "price": "43000"})
            if moved.status_code != 200:
                raise RuntimeError(f"/_sim/price: {moved.status_code} {moved.text}")
            with trio.fail_after(60):
                while received < burst:
                    message = await ws.get_message()
                    if '"executionReport"' in message:
                        received += 1
                        frame = frame or str(message)
        return sample([received, *measured]), frame


async def floor_event_rate(srv: Server, burst: int) -> Sample:
    ws_url = srv.url.replace("http://", "ws://", 1) + "/frames"
    async with trio_websocket.open_websocket_url(ws_url, max_message_size=2**20) as ws:
        await ws.send_message("10")
        for _ in range(10):
            await ws.get_message()
        async with measuring(srv) as measured:
            await ws.send_message(str(burst))
            for _ in range(burst):
                await ws.get_message()
        return sample([burst, *measured])


# -- the run ------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> None:
    results: dict[str, list[Sample]] = {"rest venue": [], "rest floor": [], "ws venue": [],
                                        "ws floor": []}
    frame = ""
    with tempfile.TemporaryDirectory() as tmp:
        bodies_path = Path(tmp) / "bodies.json"
        profile = str(Path(args.profile_dir) / "venue.prof") if args.profile else None
        for round_no in range(args.rounds):
            note(f"round {round_no + 1}/{args.rounds}: venue")
            async with server("venue", args, profile=profile) as srv:
                async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
                    post_body, delete_body = await round_trip(http)
                if args.profile in (None, "rest"):
                    results["rest venue"].append(await rest_rate(srv, args.workers, args.seconds))
                if args.profile in (None, "ws"):
                    got, frame = await venue_event_rate(srv, args.burst, args.workers)
                    results["ws venue"].append(got)
            if args.profile:
                break
            bodies_path.write_text(json.dumps({
                "rest": {"POST": post_body.decode(), "DELETE": delete_body.decode()},
                "frame": frame}))
            note(f"round {round_no + 1}/{args.rounds}: floor")
            async with server("floor", args, bodies=bodies_path) as srv:
                results["rest floor"].append(await rest_rate(srv, args.workers, args.seconds))
                results["ws floor"].append(await floor_event_rate(srv, args.burst))
    if args.profile:
        assert profile is not None
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        return
    report(args, results, len(frame))


def report(args: argparse.Namespace, results: dict[str, list[Sample]], frame_size: int) -> None:
    load = os.getloadavg()
    print(f"\nhost: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; best of {args.rounds} rounds; REST: {args.workers} workers x "
          f"{args.seconds:g} s, LIMIT FULL + cancel; events: bursts of {args.burst} fills, "
          f"{frame_size}-byte frames")
    rows = [("measure", "venue", "floor", "venue/floor", "target", "all rounds (venue | floor)")]
    cpu_rows = [("server CPU per op", "venue", "floor", "venue busy", "floor busy",
                 "client busy (venue | floor)")]
    for label, kind in (("order round trips/s (REST)", "rest"),
                        ("user-data events/s (ws)", "ws")):
        venue, floor = results[f"{kind} venue"], results[f"{kind} floor"]
        best_v = max(venue, key=lambda r: r.rate)
        best_f = max(floor, key=lambda r: r.rate)
        ratio = best_v.rate / best_f.rate
        rows.append((label, f"{best_v.rate:,.0f}", f"{best_f.rate:,.0f}", f"{ratio:.0%}",
                     "ok" if ratio >= 0.5 else "BELOW 50%",
                     f"{' '.join(f'{r.rate:,.0f}' for r in venue)} | "
                     f"{' '.join(f'{r.rate:,.0f}' for r in floor)}"))
        cpu_rows.append((kind, f"{best_v.server_cpu_per_op_us:,.0f} us",
                         f"{best_f.server_cpu_per_op_us:,.0f} us", f"{best_v.server_busy:.0%}",
                         f"{best_f.server_busy:.0%}",
                         f"{best_v.client_busy:.0%} | {best_f.client_busy:.0%}"))
    for table in (rows, cpu_rows):
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        print()
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    rest = [r.rate for r in results["rest venue"]]
    if len(rest) > 1 and statistics.pstdev(rest) / statistics.mean(rest) > 0.15:
        print("\n(the venue's REST rounds differ by more than 15%: the machine is busy)")


def note(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="REST measurement length")
    parser.add_argument("--workers", type=int, default=4, help="concurrent REST clients")
    parser.add_argument("--burst", type=int, default=3000, help="fills per event burst (< 8192)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", choices=["rest", "ws"],
                        help="run the venue once under cProfile and print its hot spots")
    parser.add_argument("--profile-dir", default=tempfile.gettempdir())
    parser.add_argument("--serve", choices=["venue", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.burst, args.bodies, args.profile_out)
        return
    if not 0 < args.burst < 8000:
        parser.error("--burst must stay under the venue's per-connection queue (8192 frames)")
    trio.run(run, args)


if __name__ == "__main__":
    main()
