"""The router's write-ahead intent log: durable, ordered, survives torn and zero-filled tails."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio

from spark.actors.intent_log import Backend, IntentLog, LoggedIntent
from spark.storage.linux_aio import AioFile


@pytest.fixture(params=["auto", "thread"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every behaviour holds on both append paths: kernel AIO (where it works) and a thread."""
    value: Backend = request.param
    return value


def intent(n: int, price: str | None = "100.5") -> LoggedIntent:
    return LoggedIntent(
        client_order_id=f"spk-test-{n:06d}", symbol="BTCUSDT", side="BUY" if n % 2 else "SELL",
        type="LIMIT" if price else "MARKET", quantity=Decimal("0.001"),
        price=None if price is None else Decimal(price), time_in_force="GTC" if price else None,
        created_ms=1_700_000_000_000 + n, source="test")


async def test_appends_read_back_in_order_and_file_is_preallocated(
        tmp_path: Path, backend: Backend) -> None:
    log = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    written = [intent(i, None if i % 3 else "1.25") for i in range(20)]
    for item in written:
        await log.append(item)
    assert log.read() == written
    data = log.path.read_bytes()
    assert len(data) % 4096 == 0 and len(data) >= 4096
    records = data.rstrip(b"\x00")
    assert records.count(b"\n") == 20 and records.endswith(b"\n")
    log.close()


async def test_descriptor_is_synchronous(tmp_path: Path, backend: Backend) -> None:
    log = IntentLog(tmp_path, backend=backend)
    await log.append(intent(1))
    assert log._fd is not None
    assert fcntl.fcntl(log._fd, fcntl.F_GETFL) & os.O_DSYNC
    log.close()


async def test_reopen_continues_after_existing_records(
        tmp_path: Path, backend: Backend) -> None:
    first = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    for i in range(5):
        await first.append(intent(i))
    first.close()
    second = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    for i in range(5, 9):
        await second.append(intent(i))
    assert [x.client_order_id for x in second.read()] == [intent(i).client_order_id
                                                           for i in range(9)]
    second.close()


async def test_extends_in_steps_across_many_appends(
        tmp_path: Path, backend: Backend) -> None:
    log = IntentLog(tmp_path, backend=backend,
                    extend_bytes=512)  # a record is ~190 bytes: extends often
    written = [intent(i) for i in range(60)]
    for item in written:
        await log.append(item)
    assert log.read() == written
    assert log.path.stat().st_size % 512 == 0
    log.close()


async def test_torn_record_is_ignored_and_overwritten(
        tmp_path: Path, backend: Backend) -> None:
    log = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    for i in range(3):
        await log.append(intent(i))
    log.close()
    data = bytearray(log.path.read_bytes())
    end = len(data.rstrip(b"\x00"))
    torn = intent(99).to_json()[:40]  # a crash mid-write: no newline
    data[end:end + len(torn)] = torn
    log.path.write_bytes(bytes(data))
    assert [x.client_order_id for x in IntentLog(tmp_path, backend=backend).read()] == [
        intent(i).client_order_id for i in range(3)]

    again = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    await again.append(intent(3))
    assert [x.client_order_id for x in again.read()] == [
        intent(i).client_order_id for i in range(4)]
    assert b"spk-test-000099" not in again.path.read_bytes()
    again.close()


async def test_unpreallocated_file_with_torn_tail(
        tmp_path: Path, backend: Backend) -> None:
    """A log written without zeros (an older runtime, or a compacted one) still works."""
    path = tmp_path / IntentLog.FILENAME
    path.write_bytes(intent(0).to_json() + b"\n" + intent(1).to_json()[:30])
    log = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    assert [x.client_order_id for x in log.read()] == [intent(0).client_order_id]
    await log.append(intent(2))
    assert [x.client_order_id for x in log.read()] == [intent(0).client_order_id,
                                                        intent(2).client_order_id]
    log.close()


async def test_rewrite_compacts_then_prepare_preallocates(
        tmp_path: Path, backend: Backend) -> None:
    log = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
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
        log = IntentLog(sys.argv[1], extend_bytes=2048, backend=sys.argv[2])
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


def test_sigkill_loses_no_acknowledged_append(tmp_path: Path, backend: Backend) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), backend],
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
    ids = [x.client_order_id for x in IntentLog(tmp_path, backend=backend).read()]
    assert ids[: acknowledged + 1] == [f"spk-kill-{n:06d}" for n in range(acknowledged + 1)]
    assert len(ids) <= acknowledged + 2  # at most the one in flight when killed


# -- the kernel AIO path --------------------------------------------------------------------------


async def test_auto_uses_kernel_aio_where_it_works(aio_folder: Path) -> None:
    log = IntentLog(aio_folder, backend="auto")
    await log.append(intent(1))
    assert log.uses_aio
    thread = IntentLog(aio_folder / "other", backend="thread")
    await thread.append(intent(1))
    assert not thread.uses_aio
    log.close()
    thread.close()


async def test_aio_tail_window_slides_across_many_records(aio_folder: Path) -> None:
    """64 KiB of tail copy, ~190-byte records: 1,000 appends slide the window several times
    and cross block boundaries inside records."""
    log = IntentLog(aio_folder, backend="auto", extend_bytes=16 * 4096)
    written = [intent(i, None if i % 4 else "7.5") for i in range(1000)]
    for item in written:
        await log.append(item)
    assert log.uses_aio
    assert log.read() == written
    log.close()
    reopened = IntentLog(aio_folder, backend="auto")
    await reopened.append(intent(5000))
    assert reopened.read() == [*written, intent(5000)]
    reopened.close()


async def test_aio_cancelled_append_leaves_a_consistent_log(aio_folder: Path) -> None:
    """Cancelled while the kernel writes: that intent was not sent, so the log may forget it;
    the next append lands cleanly, with no fragment of the cancelled record left behind."""
    log = IntentLog(aio_folder, backend="auto", extend_bytes=4096)
    for i in range(3):
        await log.append(intent(i))
    aio = log._aio
    assert aio is not None
    long_one = attrs.evolve(intent(50), source="x" * 6000)  # reaches into blocks 1 and 2
    original_submit, original_collect = aio._submit, aio._collect
    hide_completion = False

    with trio.CancelScope() as scope:
        # Deterministically "cancelled while the kernel writes": the cancel lands right after
        # io_submit, and the first look at the completion ring finds nothing (a fast disk may
        # already have finished; the real completion is then reaped by the next append).
        def submit(start: int, length: int, offset: int) -> None:
            nonlocal hide_completion
            original_submit(start, length, offset)
            hide_completion = True
            scope.cancel()

        def collect(*, block: bool, timeout_s: float = 0.0) -> bool:
            nonlocal hide_completion
            if hide_completion and not block:
                hide_completion = False
                return False
            return original_collect(block=block, timeout_s=timeout_s)

        aio._submit = submit  # type: ignore[method-assign]
        aio._collect = collect  # type: ignore[method-assign]
        await log.append(long_one)
    aio._submit, aio._collect = original_submit, original_collect  # type: ignore[method-assign]
    assert scope.cancelled_caught
    assert aio.in_flight  # the kernel's write is still unaccounted for
    await log.append(intent(3))  # ends inside block 0: the scrap beyond must be zeroed too
    assert log.read() == [intent(0), intent(1), intent(2), intent(3)]
    log.close()
    data = log.path.read_bytes()
    assert b"xxxx" not in data
    reopened = IntentLog(aio_folder, backend="auto", extend_bytes=4096)
    await reopened.append(intent(4))  # continues right after intent(3), not after a fragment
    records = reopened.path.read_bytes().rstrip(b"\x00")
    assert records == b"".join(intent(i).to_json() + b"\n" for i in range(5))
    reopened.close()


async def test_aio_refused_test_write_falls_back_to_the_thread(
        aio_folder: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A filesystem that takes O_DIRECT at open but refuses the write itself: the log notices
    at open (one real write) and appends through the worker thread instead."""
    def refuse(self: AioFile, start: int, length: int, offset: int,
               timeout_s: float = 10.0) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(AioFile, "write_blocking", refuse)
    caplog.set_level(logging.INFO, logger="spark.actors.intent_log")
    log = IntentLog(aio_folder, backend="auto", extend_bytes=4096)
    await log.append(intent(1))
    await log.append(intent(2))
    assert not log.uses_aio
    assert log.read() == [intent(1), intent(2)]
    assert any("worker thread" in r.getMessage() and "test write was refused" in r.getMessage()
               for r in caplog.records)
    log.close()


async def test_compaction_waits_for_appends_and_loses_none(
        tmp_path: Path, backend: Backend) -> None:
    """Appends racing a compaction: whatever ``keep()`` returns when compaction runs, plus every
    append queued after it, is in the new log (the router adds an order to its table, which
    ``keep()`` reads, before it appends)."""
    log = IntentLog(tmp_path, backend=backend, extend_bytes=4096)
    for i in range(5):
        await log.append(intent(i))
    table = [intent(2)]  # what the router still holds open

    async def place(n: int) -> None:
        table.append(intent(n))
        await log.append(intent(n))

    async with trio.open_nursery() as nursery:
        for n in range(10, 15):
            nursery.start_soon(place, n)
        nursery.start_soon(log.compact, lambda: list(table))
        for n in range(20, 25):
            nursery.start_soon(place, n)
    ids = {x.client_order_id for x in log.read()}
    assert ids == {x.client_order_id for x in table}
    assert intent(0).client_order_id not in ids
    log.close()


async def test_close_with_a_write_in_flight(aio_folder: Path) -> None:
    log = IntentLog(aio_folder, backend="auto", extend_bytes=4096)
    await log.append(intent(1))
    with trio.move_on_after(0.0001):
        await log.append(intent(2))
    log.close()  # reaps whatever is still in the kernel before freeing its buffer
    assert [x.client_order_id for x in log.read()][:1] == [intent(1).client_order_id]


async def test_keep_ahead_extends_in_the_background(tmp_path: Path, backend: Backend) -> None:
    """With keep_ahead running, appends never have to zero-fill themselves: the file grows
    before the records reach its end."""
    log = IntentLog(tmp_path, backend=backend, extend_bytes=8 * 4096)
    extended_inline = 0
    original = log._extend

    def counting_extend(needed: int) -> None:
        nonlocal extended_inline
        if needed < log._extend_bytes // 2:  # an append's own, just-enough extension
            extended_inline += 1
        original(needed)

    log._extend = counting_extend  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.keep_ahead)
        await trio.to_thread.run_sync(log.prepare)
        written = [intent(i) for i in range(600)]  # ~114 KiB: several 32 KiB steps
        for item in written:
            await log.append(item)
            await trio.testing.wait_all_tasks_blocked()  # let the background step finish
        nursery.cancel_scope.cancel()
    assert extended_inline == 0
    assert log.read() == written
    assert log.path.stat().st_size > 600 * 150
    log.close()
