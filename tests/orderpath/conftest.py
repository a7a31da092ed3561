"""Fixtures shared by the intent-log tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark.storage.linux_aio import open_aio


def aio_works_here(folder: Path) -> bool:
    probe = folder / "aio-probe"
    probe.write_bytes(bytes(4096))
    aio, _ = open_aio(probe, 4096)
    probe.unlink()
    if aio is None:
        return False
    aio.close()
    return True


@pytest.fixture
def aio_folder(tmp_path: Path) -> Path:
    """A folder where kernel AIO with O_DIRECT works (the test is skipped elsewhere)."""
    if not aio_works_here(tmp_path):
        pytest.skip("kernel AIO with O_DIRECT is not available for this folder")
    return tmp_path
