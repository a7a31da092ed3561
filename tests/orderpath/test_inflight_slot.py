"""``spark.exchange.inflight.slot``: a free token is taken without a scheduling pass."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from spark.exchange.inflight import slot


async def test_free_token_taken_without_checkpoint() -> None:
    limiter = trio.CapacityLimiter(2)
    with trio.testing.assert_no_checkpoints():
        async with slot(limiter):
            assert limiter.borrowed_tokens == 1
    assert limiter.borrowed_tokens == 0


async def test_free_lock_taken_without_checkpoint() -> None:
    lock = trio.Lock()
    with trio.testing.assert_no_checkpoints():
        async with slot(lock):
            assert lock.locked()
    assert not lock.locked()


@pytest.mark.parametrize("kind", ["limiter", "lock"])
async def test_waits_when_exhausted_and_is_fair(kind: str) -> None:
    limiter: trio.CapacityLimiter | trio.Lock = (
        trio.CapacityLimiter(1) if kind == "limiter" else trio.Lock())
    order: list[str] = []
    release = trio.Event()

    async def holder() -> None:
        async with slot(limiter):
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        async with slot(limiter):
            order.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "second")
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["holder"] and limiter.statistics().tasks_waiting == 2
        release.set()
    assert order == ["holder", "first", "second"]
    assert limiter.statistics().tasks_waiting == 0
    assert not (limiter.locked() if isinstance(limiter, trio.Lock) else limiter.borrowed_tokens)


async def test_released_on_error_and_on_cancel() -> None:
    limiter = trio.CapacityLimiter(1)
    with pytest.raises(RuntimeError):
        async with slot(limiter):
            raise RuntimeError("boom")
    assert limiter.borrowed_tokens == 0
    with trio.move_on_after(0.01):
        async with slot(limiter):
            await trio.sleep_forever()
    assert limiter.borrowed_tokens == 0
    blocker = trio.CapacityLimiter(1)
    blocker.acquire_on_behalf_of_nowait("someone else")
    with trio.move_on_after(0.01):  # cancelled while queued: takes nothing
        async with slot(blocker):
            pytest.fail("must not get the token")
    assert blocker.borrowed_tokens == 1 and blocker.statistics().tasks_waiting == 0
