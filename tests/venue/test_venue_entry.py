"""Entry points (``serve``, ``run_venue_cli``), config mapping and replayed price paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from venue_helpers import quiet_config

from spark.config.loader import loads
from spark.config.schema import VenueConfig, VenueSymbolConfig
from spark.venue import VenueCore, serve
from spark.venue.pricepath import RandomWalk, read_price_csv
from spark.venue.symbols import split_symbol


async def test_serve_reports_its_url_and_stops_when_cancelled() -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(lambda task_status: serve(
                quiet_config(), api_secret="other-secret", task_status=task_status))
            assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.get("/api/v3/ping")).status_code == 200
            scope.cancel()
    async with httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/api/v3/ping")


def test_cli_prints_the_url_serves_and_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    code = ("from spark.venue import run_venue_cli; "
            "raise SystemExit(run_venue_cli(host='127.0.0.1', port=0, seed=5))")
    env = {**os.environ, "SIM_API_KEY": "cli-key", "SIM_API_SECRET": "cli-secret"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert "'cli-key'" in line
        assert httpx.get(f"{url}/api/v3/ping", timeout=5).status_code == 200
        refused = httpx.get(f"{url}/api/v3/account", headers={"X-MBX-APIKEY": "sim-key"},
                            params={"timestamp": 1, "signature": "00"}, timeout=5)
        assert refused.json()["code"] == -2015
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_default_config_lists_the_contract_symbols_with_binance_like_filters() -> None:
    config = VenueConfig()
    core = VenueCore(config, api_secret="sim-secret")
    assert set(core.markets) >= {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    btc = core.markets["BTCUSDT"].spec
    assert (btc.base, btc.quote, btc.tick_size, btc.step_size, btc.min_notional) == (
        "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal(5))
    assert config.api_key == "sim-key" and config.port == 9400


def test_symbol_assets_come_from_the_name_or_the_config() -> None:
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    with pytest.raises(ValueError, match="base_asset"):
        split_symbol("XYZ")
    cfg = loads('[venue.symbols.BTCUSDT]\nprice = 45000\n'
                '[venue.symbols.ETHUSDT]\nprice = 2500\n'
                '[venue.symbols.BNBUSDT]\nprice = 600\n'
                '[venue.symbols.WEIRD]\nprice = 1\nbase_asset = "WE"\nquote_asset = "IRD"\n'
                'max_num_orders = 3\n')
    core = VenueCore(cfg.venue, api_secret="s")
    spec = core.markets["WEIRD"].spec
    assert (spec.base, spec.quote, spec.max_num_orders) == ("WE", "IRD", 3)


def test_replayed_csv_prices_drive_the_market(tmp_path: Path) -> None:
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text("symbol,time,price\nBTCUSDT,2,45010.004\nBTCUSDT,1,45000\n"
                        "ETHUSDT,1,2500\nBTCUSDT,3,44990\n", encoding="utf-8")
    assert read_price_csv(csv_file)["BTCUSDT"] == [Decimal(45000), Decimal("45010.004"),
                                                   Decimal(44990)]
    core = VenueCore(quiet_config(price_csv=str(csv_file)), api_secret="s")
    btc = core.markets["BTCUSDT"]
    assert btc.last == Decimal(45000)
    core.step(0)
    assert btc.last == Decimal("45010.00")  # snapped to the tick
    core.step(1)
    core.step(2)
    assert btc.last == Decimal(44990)  # the last price holds
    assert isinstance(core.markets["BNBUSDT"].path, RandomWalk)


def test_random_walk_depends_only_on_seed_symbol_and_step_count() -> None:
    def walk(seed: int, symbol: str) -> list[Decimal]:
        path = RandomWalk(seed=seed, symbol=symbol, price=Decimal(100), tick=Decimal("0.01"),
                          volatility=0.01, drift=0.0)
        return [path.step() for _ in range(20)]

    assert walk(1, "A") == walk(1, "A")
    assert walk(1, "A") != walk(1, "B") != walk(2, "A")
    drifting = RandomWalk(seed=1, symbol="A", price=Decimal(100), tick=Decimal("0.01"),
                          volatility=0.0, drift=0.01)
    assert [drifting.step() for _ in range(2)] == [Decimal("101.01"), Decimal("102.03")]


def test_ed25519_public_key_file_enables_session_logon(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    core = VenueCore(attrs.evolve(quiet_config(), ed25519_public_key_file=str(pem)),
                     api_secret="sim-secret")
    assert core.credential("sim-key").ed25519 is not None
    symbols = {"BTCUSDT": VenueSymbolConfig(price=Decimal(1))}
    assert VenueCore(quiet_config(symbols=symbols), api_secret=None).credential(
        "sim-key").secret is None
