"""A value with one owner that many readers can snapshot or wait on.

State that others must read — kill switch, breaker state, gate state, trading state — has one
owner that calls :meth:`Published.set`; everyone else holds the same object but only reads
:attr:`Published.value` (an immutable snapshot) or awaits :meth:`Published.wait_changed`.
There is no I/O here; a ``trio.Event`` only wakes waiting readers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Published(Generic[T]):
    """The latest immutable snapshot of some owner's state, with a version counter."""

    __slots__ = ("_changed", "_listeners", "_value", "_version")

    def __init__(self, initial: T) -> None:
        self._value = initial
        self._version = 0
        self._changed = trio.Event()
        self._listeners: list[Callable[[], None]] = []

    @property
    def value(self) -> T:
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def set(self, value: T) -> bool:
        """Publish ``value``; returns whether it differs from the previous snapshot."""
        if value == self._value:
            return False
        self._value = value
        self._version += 1
        self._changed.set()
        self._changed = trio.Event()
        for listener in self._listeners:
            listener()
        return True

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change, in the owner's task.

        For a reader that watches several values at once (the risk guard derives the trading
        state from four): one wake-up per change, instead of a task per value raced in a
        nursery.  A listener must only note the change (set a flag, an Event) and return; the
        reader does its work in its own task, so the owner is never held up and the reader's
        state keeps one owner."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (a reader that stops, or restarts, says so)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def wait_changed(self, seen_version: int) -> tuple[int, T]:
        """Wait until the version moves past ``seen_version``; return the new (version, value)."""
        while self._version == seen_version:
            await self._changed.wait()
        return self._version, self._value
