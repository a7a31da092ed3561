"""The router's write-ahead intent log: durable, ordered, survives torn and zero-filled tails."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from spark.actors.intent_log import IntentLog, LoggedIntent


def intent(n: int, price: str | None = "100.5") -> LoggedIntent:
    return LoggedIntent(
        client_order_id=f"spk-test-{n:06d}", symbol="BTCUSDT", side="BUY" if n % 2 else "SELL",
        type="LIMIT" if price else "MARKET", quantity=Decimal("0.001"),
        price=None if price is None else Decimal(price), time_in_force="GTC" if price else None,
        created_ms=1_700_000_000_000 + n, source="test")


async def test_appends_read_back_in_order_and_file_is_preallocated(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, extend_bytes=4096)
    written = [intent(i, None if i % 3 else "1.25") for i in range(20)]
    for item in written:
        await log.append(item)
    assert log.read() == written
    data = log.path.read_bytes()
    assert len(data) % 4096 == 0 and len(data) >= 4096
    records = data.rstrip(b"\x00")
    assert records.count(b"\n") == 20 and records.endswith(b"\n")
    log.close()


async def test_descriptor_is_synchronous(tmp_path: Path) -> None:
    log = IntentLog(tmp_path)
    await log.append(intent(1))
    assert log._fd is not None
    assert fcntl.fcntl(log._fd, fcntl.F_GETFL) & os.O_DSYNC
    log.close()


async def test_reopen_continues_after_existing_records(tmp_path: Path) -> None:
    first = IntentLog(tmp_path, extend_bytes=4096)
    for i in range(5):
        await first.append(intent(i))
    first.close()
    second = IntentLog(tmp_path, extend_bytes=4096)
    for i in range(5, 9):
        await second.append(intent(i))
    assert [x.client_order_id for x in second.read()] == [intent(i).client_order_id
                                                           for i in range(9)]
    second.close()


async def test_extends_in_steps_across_many_appends(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, extend_bytes=512)  # a record is ~190 bytes: extends often
    written = [intent(i) for i in range(60)]
    for item in written:
        await log.append(item)
    assert log.read() == written
    assert log.path.stat().st_size % 512 == 0
    log.close()


async def test_torn_record_is_ignored_and_overwritten(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, extend_bytes=4096)
    for i in range(3):
        await log.append(intent(i))
    log.close()
    data = bytearray(log.path.read_bytes())
    end = len(data.rstrip(b"\x00"))
    torn = intent(99).to_json()[:40]  # a crash mid-write: no newline
    data[end:end + len(torn)] = torn
    log.path.write_bytes(bytes(data))
    assert [x.client_order_id for x in IntentLog(tmp_path).read()] == [
        intent(i).client_order_id for i in range(3)]

    again = IntentLog(tmp_path, extend_bytes=4096)
    await again.append(intent(3))
    assert [x.client_order_id for x in again.read()] == [
        intent(i).client_order_id for i in range(4)]
    assert b"spk-test-000099" not in again.path.read_bytes()
    again.close()


async def test_unpreallocated_file_with_torn_tail(tmp_path: Path) -> None:
    """A log written without zeros (an older runtime, or a compacted one) still works."""
    path = tmp_path / IntentLog.FILENAME
    path.write_bytes(intent(0).to_json() + b"\n" + intent(1).to_json()[:30])
    log = IntentLog(tmp_path, extend_bytes=4096)
    assert [x.client_order_id for x in log.read()] == [intent(0).client_order_id]
    await log.append(intent(2))
    assert [x.client_order_id for x in log.read()] == [intent(0).client_order_id,
                                                        intent(2).client_order_id]
    log.close()


async def test_rewrite_compacts_then_prepare_preallocates(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, extend_bytes=4096)
    for i in range(6):
        await log.append(intent(i))
    log.rewrite([intent(2), intent(4)])
    assert log.read() == [intent(2), intent(4)]
    await trio.to_thread.run_sync(log.prepare)
    assert log.path.stat().st_size >= 2048
    await log.append(intent(7))
    assert log.read() == [intent(2), intent(4), intent(7)]
    log.close()


def test_duplicates_collapse_to_first(tmp_path: Path) -> None:
    path = tmp_path / IntentLog.FILENAME
    path.write_bytes(intent(1).to_json() + b"\n" + intent(1, "2").to_json() + b"\n")
    assert IntentLog(tmp_path).read() == [intent(1)]


def test_extend_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        IntentLog(tmp_path, extend_bytes=0)


CHILD = textwrap.dedent("""
    import sys, trio
    from decimal import Decimal
    from spark.actors.intent_log import IntentLog, LoggedIntent

    async def main():
        log = IntentLog(sys.argv[1], extend_bytes=2048)
        n = 0
        while True:
            await log.append(LoggedIntent(
                client_order_id=f"spk-kill-{n:06d}", symbol="BTCUSDT", side="BUY",
                type="MARKET", quantity=Decimal("0.001"), price=None, time_in_force=None,
                created_ms=n))
            print(n, flush=True)  # only after append returned: durable
            n += 1

    trio.run(main)
""")


def test_sigkill_loses_no_acknowledged_append(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = -1
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 150:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    for line in rest.splitlines():
        acknowledged = int(line)
    ids = [x.client_order_id for x in IntentLog(tmp_path).read()]
    assert ids[: acknowledged + 1] == [f"spk-kill-{n:06d}" for n in range(acknowledged + 1)]
    assert len(ids) <= acknowledged + 2  # at most the one in flight when killed
