"""A one-shot answer slot carried inside a request message.

The control port awaits the answer to an order request while the request travels risk guard →
router; whoever decides sets the reply exactly once.  Frozen messages carry a reference to it.
"""

from __future__ import annotations

from typing import Any

import trio


class Reply:
    __slots__ = ("_done", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: dict[str, Any] | None = None

    def set(self, value: dict[str, Any]) -> None:
        if not self._done.is_set():
            self._value = value
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self, timeout_s: float) -> dict[str, Any] | None:
        """The answer, or None if none came within ``timeout_s``."""
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        return self._value
