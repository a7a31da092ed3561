"""Intent records begun at intake (``IntentLog.begin``): durable by the send, voided when the
order is not sent, and never lost to a busy log, a compaction, a failed or cancelled wait."""

from __future__ import annotations

import errno
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio

from spark.actors.intent_log import IntentLog, LoggedIntent
from spark.storage.linux_aio import AioFile


def intent(n: int, source: str = "test") -> LoggedIntent:
    return LoggedIntent(
        client_order_id=f"spk-take-{n:06d}", symbol="BTCUSDT", side="BUY", type="MARKET",
        quantity=Decimal("0.001"), price=None, time_in_force=None,
        created_ms=1_700_000_000_000 + n, source=source)


@pytest.fixture
def aio_log(aio_folder: Path) -> IntentLog:
    log = IntentLog(aio_folder, backend="auto", extend_bytes=16384)
    log.prepare()  # open: begin() starts writes only on an open log
    assert log.uses_aio
    return log


def the_aio(log: IntentLog) -> AioFile:
    aio = log._aio
    assert aio is not None
    return aio


async def test_begun_write_is_durable_once_waited_for(aio_log: IntentLog) -> None:
    first = aio_log.begin(intent(1))
    assert first.begun
    await first.wait()
    second = aio_log.begin(intent(2))
    assert second.begun
    await second.wait()
    await second.wait()  # waiting again changes nothing
    assert aio_log.read() == [intent(1), intent(2)]
    assert IntentLog(aio_log.path.parent).read() == [intent(1), intent(2)]  # from disk
    aio_log.close()


async def test_discarded_record_is_voided_by_the_next_write(aio_log: IntentLog) -> None:
    await aio_log.append(intent(1))
    rejected = aio_log.begin(intent(2))
    assert rejected.begun
    rejected.discard()
    await aio_log.append(intent(3))
    assert aio_log.read() == [intent(1), intent(3)]
    raw = aio_log.path.read_bytes()
    assert b"spk-take-000002" in raw and b'{"v":' in raw  # written at intake, then voided
    aio_log.close()
    assert IntentLog(aio_log.path.parent).read() == [intent(1), intent(3)]


async def test_a_voided_duplicate_keeps_the_original(aio_log: IntentLog) -> None:
    """Voids name a record by offset: a rejected duplicate shares its id with a live order,
    whose own record must stay."""
    original = aio_log.begin(intent(1))
    await original.wait()
    duplicate = aio_log.begin(intent(1, source="again"))
    duplicate.discard()
    await aio_log.begin(intent(2)).wait()
    assert aio_log.read() == [intent(1), intent(2)]
    aio_log.close()


async def test_a_void_before_the_voided_write_settled(aio_log: IntentLog) -> None:
    """Discarded while the kernel still writes: the void is written once its record is."""
    aio = the_aio(aio_log)
    real_poll = aio.poll
    aio.poll = lambda: False  # type: ignore[method-assign]  # the first write looks unfinished
    rejected = aio_log.begin(intent(1))
    rejected.discard()
    late = aio_log.begin(intent(2))
    assert not late.begun  # the log was busy: this one appends when waited for
    aio.poll = real_poll  # type: ignore[method-assign]
    await late.wait()
    await aio_log.append(intent(3))
    assert aio_log.read() == [intent(2), intent(3)]
    aio_log.close()


async def test_nothing_is_begun_on_a_closed_log_or_the_thread_path(tmp_path: Path) -> None:
    closed = IntentLog(tmp_path / "a")
    write = closed.begin(intent(1))
    assert not write.begun
    await write.wait()  # appends (and opens the log)
    assert closed.read() == [intent(1)]
    closed.close()
    thread = IntentLog(tmp_path / "b", backend="thread")
    thread.prepare()
    write = thread.begin(intent(2))
    assert not write.begun
    write.discard()  # nothing was written: nothing to void
    await thread.begin(intent(3)).wait()
    assert thread.read() == [intent(3)]
    thread.close()


async def test_begin_while_the_log_is_held_appends_on_wait(aio_log: IntentLog) -> None:
    """An append or a compaction under way holds the log: begin() leaves the write to wait(),
    which queues behind it."""
    await aio_log._lock.acquire()
    write = aio_log.begin(intent(1))
    assert not write.begun
    aio_log._lock.release()
    await write.wait()
    assert aio_log.read() == [intent(1)]
    aio_log.close()


async def test_compaction_between_begin_and_wait_appends_again(aio_log: IntentLog) -> None:
    """A compaction rewrites the file with what the router keeps: a record begun before it
    (not in the router's table yet) is written again by its wait."""
    write = aio_log.begin(intent(1))
    await aio_log.compact(list)
    assert aio_log.read() == []
    await write.wait()
    assert aio_log.read() == [intent(1)]
    dropped = aio_log.begin(intent(2))
    await aio_log.compact(list)
    dropped.discard()  # from an earlier file: nothing to void in this one
    await aio_log.append(intent(3))
    assert aio_log.read() == [intent(3)]
    aio_log.close()


async def test_a_failed_begun_write_is_appended_again(aio_log: IntentLog) -> None:
    await aio_log.append(intent(1))
    aio = the_aio(aio_log)
    real_finish = aio.finish
    failures = 0

    async def failing_finish() -> None:
        nonlocal failures
        await real_finish()
        if failures == 0:
            failures += 1
            raise OSError(errno.EIO, "injected write failure")

    write = aio_log.begin(intent(2))
    assert write.begun
    aio.finish = failing_finish  # type: ignore[method-assign]
    await write.wait()  # the begun write failed: appended again, durable on return
    aio.finish = real_finish  # type: ignore[method-assign]
    assert failures == 1
    await aio_log.append(intent(3))
    assert aio_log.read() == [intent(1), intent(2), intent(3)]
    aio_log.close()
    raw = aio_log.path.read_bytes().rstrip(b"\x00")
    assert raw.count(b"spk-take-000002") == 1  # the failed copy was written over


async def test_a_cancelled_wait_leaves_the_write_to_the_next_user(aio_log: IntentLog) -> None:
    aio = the_aio(aio_log)
    real_collect = aio._collect
    hide = True

    def collect(*, block: bool, timeout_s: float = 0.0) -> bool:
        if hide and not block:
            return False
        return real_collect(block=block, timeout_s=timeout_s)

    aio._collect = collect  # type: ignore[method-assign]
    write = aio_log.begin(intent(1))
    with trio.move_on_after(0.05) as scope:
        await write.wait()
    assert scope.cancelled_caught
    hide = False
    await aio_log.append(intent(2))  # settles the begun write first: it counts
    aio._collect = real_collect  # type: ignore[method-assign]
    await write.wait()  # already durable: returns at once, no second copy
    assert aio_log.read() == [intent(1), intent(2)]
    assert aio_log.path.read_bytes().count(b"spk-take-000001") == 1
    aio_log.close()


async def test_many_intakes_in_a_row_survive_reopen(aio_log: IntentLog) -> None:
    written = []
    for n in range(400):  # crosses the 16 KiB preallocation steps and the tail window
        write = aio_log.begin(attrs.evolve(intent(n), source="s" * (n % 50)))
        if n % 7 == 3:
            write.discard()
        else:
            await write.wait()
            written.append(write.intent)
    await aio_log.append(intent(9999))
    assert aio_log.read() == [*written, intent(9999)]
    aio_log.close()
    assert IntentLog(aio_log.path.parent).read() == [*written, intent(9999)]


async def test_voids_are_written_even_when_no_record_follows(aio_log: IntentLog) -> None:
    """A rejection with no order after it: the void still reaches the disk (at once on
    flush_voids, shortly after on the background task), so a restart has nothing to ask."""
    await aio_log.begin(intent(1)).wait()
    aio_log.begin(intent(2)).discard()
    await aio_log.flush_voids()
    assert IntentLog(aio_log.path.parent).read() == [intent(1)]
    await aio_log.flush_voids()  # nothing waiting: writes nothing
    async with trio.open_nursery() as nursery:
        nursery.start_soon(aio_log.keep_voids_written, 0.001)
        aio_log.begin(intent(3)).discard()
        with trio.fail_after(5):
            while b"spk-take-000003" not in aio_log.path.read_bytes() or (
                    IntentLog(aio_log.path.parent).read() != [intent(1)]):
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    aio_log.close()


async def test_voids_carried_by_a_failed_write_go_out_with_the_next(aio_log: IntentLog) -> None:
    await aio_log.begin(intent(1)).wait()
    aio_log.begin(intent(2)).discard()
    async with aio_log._lock:
        await aio_log._settle()  # intent 2 on disk: its void can be carried
    aio = the_aio(aio_log)
    real_finish = aio.finish

    async def failing_finish() -> None:
        await real_finish()
        raise OSError(errno.EIO, "injected write failure")

    carrier = aio_log.begin(intent(3))  # carries the void of intent 2, then fails
    assert carrier.begun
    aio.finish = failing_finish  # type: ignore[method-assign]
    async with aio_log._lock:
        await aio_log._settle()  # the write "failed": its voids are queued again
    aio.finish = real_finish  # type: ignore[method-assign]
    assert aio_log._voids
    await carrier.wait()  # appended again, with the void
    assert IntentLog(aio_log.path.parent).read() == [intent(1), intent(3)]
    aio_log.close()


async def test_flush_writes_every_waiting_void(aio_log: IntentLog) -> None:
    writes = []
    for n in range(150):  # more voids than one write carries
        write = aio_log.begin(intent(n))
        await write.wait()
        writes.append(write)
    for write in writes:
        write.discard()
    await aio_log.flush_voids()
    assert IntentLog(aio_log.path.parent).read() == []
    aio_log.close()
