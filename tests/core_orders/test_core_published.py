"""``Published``: one owner sets, readers snapshot, wait, or are told of each change."""

from __future__ import annotations

import trio
import trio.testing

from spark.core.published import Published


def test_set_reports_change_and_bumps_version() -> None:
    p = Published(1)
    assert p.set(1) is False and p.version == 0
    assert p.set(2) is True and p.version == 1 and p.value == 2


def test_listeners_called_once_per_change_only() -> None:
    p = Published("a")
    calls: list[str] = []

    def listener() -> None:
        calls.append(p.value)

    p.add_listener(listener)
    p.set("a")  # unchanged: nobody is told
    p.set("b")
    p.set("c")
    assert calls == ["b", "c"]
    p.remove_listener(listener)
    p.remove_listener(listener)  # removing twice is harmless
    p.set("d")
    assert calls == ["b", "c"]


async def test_wait_changed_wakes_on_change() -> None:
    p = Published(0)
    seen: list[tuple[int, int]] = []

    async def reader() -> None:
        seen.append(await p.wait_changed(0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        p.set(5)
    assert seen == [(1, 5)]
