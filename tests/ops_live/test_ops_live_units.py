"""The canary's and ``evidence build``'s own decisions, without a runtime: where the runtime is,
whether its database can be read (without creating one), the smallest quantity the venue takes,
the canary's client ids, and the exit codes when the runtime cannot be reached at all."""

from __future__ import annotations

import io
import socket
from decimal import Decimal
from pathlib import Path

import pytest

from spark.config import loads
from spark.core.client_ids import is_ours, validate_client_id
from spark.core.risk import SymbolRules
from spark.runtime.canary import canary_client_id, canary_main, counters, minimum_quantity
from spark.runtime.evidence.build import (
    DatabaseUnreachable,
    TargetError,
    build_main,
    check_database,
    control_url_from,
    resolve_target,
)
from spark.runtime.metrics import Metrics
from spark.storage import migrate

TOKEN = "admin-token-for-unit-tests-0123"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/spark.db"
    migrate.upgrade(url)
    return url


def write_config(tmp_path: Path, *, port: int, database: str) -> Path:
    path = tmp_path / "spark.toml"
    path.write_text(f'[control]\nport = {port}\n\n[database]\nurl = "{database}"\n')
    return path


@pytest.mark.parametrize(("host", "port", "env", "url"), [
    ("127.0.0.1", 4001, {}, "http://127.0.0.1:4001"),
    ("0.0.0.0", 4001, {}, "http://127.0.0.1:4001"),
    ("::", 4002, {}, "http://[::1]:4002"),
    ("fd00::7", 4003, {}, "http://[fd00::7]:4003"),
    ("127.0.0.1", 0, {"SPARK_CONTROL_URL": "http://127.0.0.1:5555/"}, "http://127.0.0.1:5555"),
    ("127.0.0.1", 4001, {"SPARK_CONTROL_URL": "http://10.0.0.2:4001"}, "http://10.0.0.2:4001"),
])
def test_control_url(host: str, port: int, env: dict[str, str], url: str) -> None:
    config = loads(f'[control]\nhost = "{host}"\nport = {port}\n')
    assert control_url_from(config, env) == url


def test_port_zero_needs_the_url_from_the_environment() -> None:
    config = loads("[control]\nport = 0\n")
    with pytest.raises(TargetError, match="SPARK_CONTROL_URL"):
        control_url_from(config, {})


def test_the_target_takes_overrides_and_the_token_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, port=4001, database="sqlite:///x.db")
    env = {"SPARK_CONTROL_TOKEN": TOKEN,
           "DATABASE_URL": "postgresql+psycopg://spark:pw-9f8e7d@db.example/spark"}
    target = resolve_target(path, env)
    assert target.control_url == "http://127.0.0.1:4001"
    assert target.database_url == env["DATABASE_URL"]
    assert target.token.reveal() == TOKEN
    # The password is a known secret for the scrubber, and never in what INDEX.md shows.
    assert "pw-9f8e7d" in {str(s) if isinstance(s, str) else s.reveal()
                           for s in target.known_secrets()}
    assert "pw-9f8e7d" not in repr(target.source())
    with pytest.raises(TargetError, match="SPARK_CONTROL_TOKEN"):
        resolve_target(path, {})
    (tmp_path / "bad.toml").write_text("[control]\nprot = 1\n")
    with pytest.raises(TargetError) as caught:
        resolve_target(tmp_path / "bad.toml", {"SPARK_CONTROL_TOKEN": TOKEN})
    assert any(p.startswith("control.prot: unknown key") for p in caught.value.problems)


def test_check_database_counts_rows_of_a_current_schema(database: str) -> None:
    status = check_database(database)
    assert dict(status.counts) == {"orders": 0, "executions": 0, "trades": 0}
    assert "schema current" in status.describe()


def test_a_missing_sqlite_file_is_unreachable_and_never_created(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnreachable, match="no database file"):
        check_database(f"sqlite:///{tmp_path}/absent/spark.db")
    assert not (tmp_path / "absent").exists()


def test_an_empty_database_is_behind(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(DatabaseUnreachable, match="db upgrade"):
        check_database(f"sqlite:///{tmp_path}/empty.db")


def test_a_closed_postgres_port_is_unreachable_without_the_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://spark:s3cret-pw@127.0.0.1:{closed_port()}/spark"
    with pytest.raises(DatabaseUnreachable) as caught:
        check_database(url, timeout_s=2)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("price", "least"), [
    ("45000", "0.00012"),   # 5 / 45000 = 0.000111… → next step
    ("50000", "0.0001"),    # exactly on the grid
    ("1000000", "0.00001"),  # below minQty: minQty
])
def test_minimum_quantity(price: str, least: str) -> None:
    rules = SymbolRules(symbol="BTCUSDT", tick_size=Decimal("0.01"),
                        step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"),
                        max_qty=Decimal("9000"), min_notional=Decimal("5"))
    found = minimum_quantity(rules, Decimal(price))
    assert found == Decimal(least)
    assert found * Decimal(price) >= rules.min_notional or found == rules.min_qty


def test_canary_client_ids_are_valid_and_ours() -> None:
    for prefix in ("spk", "abcdefgh"):
        cid = canary_client_id(prefix, 4_102_444_799.0)  # 2099-12-31T23:59:59Z
        assert validate_client_id(cid) is None and len(cid) <= 36
        assert is_ours(cid, prefix) and "-cnry991231235959" in cid


def test_counters_sum_the_order_path_series() -> None:
    metrics = Metrics(process=False)
    metrics.live_orders_placed_total.inc(2)
    metrics.live_fills_total.inc(3)
    metrics.order_place_ack_seconds.observe(0.25)
    found = counters(metrics.exposition().decode())
    assert found == {"spark_live_orders_placed_total": 2.0, "spark_live_fills_total": 3.0,
                     "spark_order_place_ack_seconds_count": 1.0,
                     "spark_order_place_ack_seconds_sum": 0.25}


def test_canary_usage_errors_exit_2(tmp_path: Path, database: str) -> None:
    path = write_config(tmp_path, port=4001, database=database)
    err = io.StringIO()
    assert canary_main(path, symbol="BTCUSDT", qty="-1", env={}, err=err) == 2
    assert "--qty '-1' is not a positive decimal" in err.getvalue()
    err = io.StringIO()
    assert canary_main(path, symbol="BTCUSDT", qty="0.00012", env={}, err=err) == 2
    assert "SPARK_CONTROL_TOKEN is not set" in err.getvalue()


def test_canary_without_a_runtime_fails_and_says_why(tmp_path: Path, database: str) -> None:
    path = write_config(tmp_path, port=closed_port(), database=database)
    out = io.StringIO()
    code = canary_main(path, symbol="BTCUSDT", qty="0.00012", arm=True, confirm=True,
                       execute=True, out_dir=str(tmp_path / "evidence"),
                       env={"SPARK_CONTROL_TOKEN": TOKEN}, out=out)
    text = out.getvalue()
    assert code == 1
    assert "[FAIL] control port answers" in text and "ConnectError" in text
    # The database is still checked (it does not depend on the control port) and passes.
    assert "[pass] canary can read the runtime's database" in text
    assert "order not placed" in text and "NO-GO: 1 of 2 check(s) failed" in text
    assert not (tmp_path / "evidence").exists()
    assert TOKEN not in text


def test_evidence_build_without_a_runtime_exits_1(tmp_path: Path, database: str) -> None:
    path = write_config(tmp_path, port=closed_port(), database=database)
    err = io.StringIO()
    code = build_main(path, tmp_path / "evidence", env={"SPARK_CONTROL_TOKEN": TOKEN},
                      out=io.StringIO(), err=err)
    assert code == 1
    assert "cannot read the runtime at http://127.0.0.1:" in err.getvalue()
    assert not (tmp_path / "evidence").exists()
