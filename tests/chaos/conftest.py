"""Chaos tests of the user-data path: the real runtime process against a faulty simulated venue.

Reuses the integration harness (``tests/integration/runtime_harness.py``); the venue either runs
embedded in the runtime (mode ``sim``) or, when it must outlive the runtime (SIGKILL, futures),
as its own ``spark-runtime venue`` process the runtime reaches through ``[exchange] rest_url``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_helpers import VenueProcess, chaos_config, log_digest
from runtime_harness import RuntimeProcess


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"chaos_{report.when}", report)
    return report


@pytest.fixture
def start_runtime(tmp_path: Path, request: pytest.FixtureRequest,
                  ) -> Iterator[Callable[..., RuntimeProcess]]:
    """Start ``spark-runtime run`` with a chaos config; every process is stopped afterwards.

    ``home`` reuses the folder (config, state dir, database) of an earlier runtime of the
    same test: a restart.
    """
    started: list[RuntimeProcess] = []

    def start(*, home: Path | None = None, env: dict[str, str] | None = None,
              **config: Any) -> RuntimeProcess:
        base = home if home is not None else tmp_path / f"rt{len(started)}"
        base.mkdir(exist_ok=True)
        proc = RuntimeProcess(base, config=chaos_config(**config), env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
    call = getattr(request.node, "chaos_call", None)
    if call is not None and call.failed:
        for number, proc in enumerate(started):
            print(f"--- runtime {number} (exit {proc.proc.returncode}) ---\n{log_digest(proc)}")


@pytest.fixture
def venue_process(tmp_path: Path) -> Iterator[Callable[..., VenueProcess]]:
    """Start ``spark-runtime venue`` as its own process (it survives a SIGKILLed runtime)."""
    started: list[VenueProcess] = []

    def start(seed: int) -> VenueProcess:
        proc = VenueProcess(tmp_path / f"venue{len(started)}", seed=seed)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
