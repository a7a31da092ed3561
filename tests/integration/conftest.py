from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from runtime_harness import RuntimeProcess


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    started: list[RuntimeProcess] = []

    def start(**kwargs: Any) -> RuntimeProcess:
        sub = tmp_path / f"rt{len(started)}"
        sub.mkdir()
        proc = RuntimeProcess(sub, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
