"""Evidence packages: built whole, verified by hash, and any change, loss or addition caught."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_helpers import BUILT_AT, make_package

from spark.config import SparkConfig
from spark.runtime.evidence import (
    MANIFEST,
    NONCE_RE,
    STANDARD_FILES,
    InvalidPackageInput,
    make_nonce,
    verify_package,
    verify_zip,
)

ALL_FILES = (*STANDARD_FILES, MANIFEST)


def problems(folder: Path) -> set[tuple[str, str]]:
    return {(f.name, f.problem) for f in verify_package(folder).findings}


def test_build_then_verify(package: Path) -> None:
    assert sorted(p.name for p in package.iterdir()) == sorted(ALL_FILES)
    report = verify_package(package)
    assert report.ok, report.render()
    assert sorted(report.checked) == sorted(STANDARD_FILES)
    assert report.render().endswith("OK: 7 file(s) checked")


def test_folder_name_is_a_nonce_of_the_build_time(package: Path) -> None:
    assert NONCE_RE.match(package.name)
    assert package.name.startswith("20260314150926-")
    assert (package.parent / f"{package.name}.zip").is_file()
    # Nothing half-built is left behind.
    assert sorted(p.name for p in package.parent.iterdir()) == sorted(
        [package.name, f"{package.name}.zip"])


def test_nonce_format_is_utc_and_random() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    nonce = make_nonce(dt.datetime(2026, 1, 1, 0, 30, 5, tzinfo=cet))
    assert re.fullmatch(r"20251231233005-\d{6}", nonce)
    assert len({make_nonce(BUILT_AT) for _ in range(50)}) > 40
    with pytest.raises(ValueError):
        make_nonce(dt.datetime(2026, 1, 1))  # naive: which timezone?


def test_two_packages_in_the_same_second_do_not_collide(tmp_path: Path) -> None:
    first = make_package(tmp_path)
    second = make_package(tmp_path)
    assert first != second and first.name[:14] == second.name[:14]
    assert verify_package(first).ok and verify_package(second).ok


def test_manifest_is_sha256sum_format(package: Path) -> None:
    lines = (package / MANIFEST).read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == sorted(STANDARD_FILES)
    for line in lines:
        digest, name = line.split("  ", 1)
        assert digest == hashlib.sha256((package / name).read_bytes()).hexdigest()
    if shutil.which("sha256sum"):
        result = subprocess.run(["sha256sum", "--strict", "-c", MANIFEST], cwd=package,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr


def test_zip_holds_exactly_the_folder(package: Path) -> None:
    with zipfile.ZipFile(package.parent / f"{package.name}.zip") as archive:
        assert archive.testzip() is None
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    assert members == {f"{package.name}/{p.name}": p.read_bytes() for p in package.iterdir()}
    assert verify_zip(package.parent / f"{package.name}.zip").ok


def test_contents(package: Path) -> None:
    assert (package / "trades.csv").read_bytes() == (
        b"id,symbol,price,qty\r\n1,BTCUSDT,45000.5,0.001\r\n2,ETHUSDT,2500,0.01\r\n")
    assert json.loads((package / "health.json").read_text())["status"] == "ok"
    assert json.loads((package / "audit.json").read_text())[0]["target"] == "spk-1"
    assert "spark_order_place_ack_seconds_bucket" in (package / "metrics.txt").read_text()
    config = tomllib.loads((package / "config.redacted.toml").read_text())
    assert config["risk"]["max_notional"] == "20"
    assert config["venue"]["api_key"] == "***"
    slo = json.loads((package / "slo.json").read_text())
    assert slo["computed_from"] == "metrics.txt"
    assert {r["name"] for r in slo["results"]} >= {"order_place_ack_p95", "event_to_db_p95"}
    index = (package / "INDEX.md").read_text()
    assert index.startswith(f"# Evidence package {package.name}\n")
    assert "Built 2026-03-14T15:09:26Z" in index
    assert "(2 rows)" in index and "(1 entry)" in index
    assert "| order_place_ack_p95 | <= 800 ms |" in index
    assert "| event_to_db_p95 | <= 300 ms |" in index
    assert "| venue_5xx_ratio | <= 0.5 % | 0 % | pass |" in index
    for name in STANDARD_FILES:
        assert f"`{name}`" in index
    assert "0 value(s) were replaced" in index


def byte_positions(path: Path) -> Iterator[int]:
    size = path.stat().st_size
    yield from sorted({0, size // 2, size - 1})


@pytest.mark.parametrize("name", STANDARD_FILES)
def test_any_changed_byte_fails_naming_the_file(package: Path, name: str) -> None:
    path = package / name
    original = path.read_bytes()
    for position in byte_positions(path):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        path.write_bytes(bytes(tampered))
        report = verify_package(package)
        assert not report.ok
        assert (name, "changed") in {(f.name, f.problem) for f in report.findings}
        assert f"FAILED   {name}: changed" in report.render()
    path.write_bytes(original)
    assert verify_package(package).ok


def test_any_changed_manifest_byte_fails(package: Path) -> None:
    path = package / MANIFEST
    original = path.read_bytes()
    for position in range(0, len(original), 7):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        path.write_bytes(bytes(tampered))
        assert not verify_package(package).ok, position


@pytest.mark.parametrize("name", ALL_FILES)
def test_a_missing_file_fails(package: Path, name: str) -> None:
    (package / name).unlink()
    found = problems(package)
    assert (name, "missing") in found


def test_a_file_dropped_from_the_manifest_fails(package: Path) -> None:
    path = package / MANIFEST
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.endswith("  audit.json\n")))
    assert ("audit.json", "unlisted") in problems(package)


def test_an_extra_file_fails(package: Path) -> None:
    (package / "notes.txt").write_text("added later\n")
    assert problems(package) == {("notes.txt", "extra")}


def test_an_extra_folder_fails(package: Path) -> None:
    (package / "more").mkdir()
    assert problems(package) == {("more", "extra")}


def test_a_symlink_instead_of_a_file_fails(package: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.csv"
    target.write_bytes((package / "trades.csv").read_bytes())
    (package / "trades.csv").unlink()
    os.symlink(target, package / "trades.csv")
    assert ("trades.csv", "not_a_file") in problems(package)


@pytest.mark.parametrize("entry", ["../outside.txt", "/etc/passwd", "sub/dir.txt", ".."])
def test_a_manifest_pointing_outside_fails(package: Path, tmp_path: Path, entry: str) -> None:
    outside = package.parent / "outside.txt"
    outside.write_text("x")
    digest = hashlib.sha256(b"x").hexdigest()
    with open(package / MANIFEST, "a") as f:
        f.write(f"{digest}  {entry}\n")
    assert (entry, "outside") in problems(package)


@pytest.mark.parametrize("line", [
    "not a manifest line",
    "abc123  trades.csv",                   # short digest
    f"{'0' * 64} trades.csv",               # one space
    f"{'g' * 64}  trades.csv",              # not hex
    "",                                     # a blank line in the middle
])
def test_a_malformed_manifest_line_fails(package: Path, line: str) -> None:
    path = package / MANIFEST
    path.write_text(line + "\n" + path.read_text())
    assert (MANIFEST, "malformed") in problems(package)


def test_a_repeated_manifest_entry_fails(package: Path) -> None:
    path = package / MANIFEST
    first = path.read_text().splitlines(keepends=True)[0]
    path.write_text(path.read_text() + first)
    assert (MANIFEST, "malformed") in problems(package)


def test_an_empty_or_missing_manifest_fails(package: Path) -> None:
    (package / MANIFEST).write_text("")
    assert (MANIFEST, "malformed") in problems(package)
    (package / MANIFEST).unlink()
    report = verify_package(package)
    assert not report.ok and report.checked == ()


def test_binary_mode_manifest_lines_are_accepted(package: Path) -> None:
    path = package / MANIFEST
    path.write_text(path.read_text().replace("  ", " *"))
    assert verify_package(package).ok


def test_a_tampered_zip_fails(package: Path) -> None:
    archive = package.parent / f"{package.name}.zip"
    with zipfile.ZipFile(archive) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members[f"{package.name}/trades.csv"] += b"3,BNBUSDT,600,1\r\n"
    members[f"{package.name}/../escape.txt"] = b"x"
    archive.unlink()
    with zipfile.ZipFile(archive, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)
    found = problems(package)
    assert (f"{archive.name}:trades.csv", "changed") in found
    assert (f"{archive.name}:{package.name}/../escape.txt", "outside") in found
    # The folder itself is still intact.
    assert not {name for name, _ in found if not name.startswith(archive.name)}


def test_a_zip_with_another_manifest_fails(package: Path, tmp_path: Path) -> None:
    other = make_package(tmp_path / "other", health={"status": "degraded"})
    archive = package.parent / f"{package.name}.zip"
    archive.unlink()
    with zipfile.ZipFile(archive, "w") as new:
        for path in other.iterdir():
            new.write(path, f"{package.name}/{path.name}")
    assert (archive.name, "changed") in problems(package)


def test_not_a_package(tmp_path: Path) -> None:
    assert not verify_package(tmp_path / "nope").ok
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert [f.problem for f in verify_zip(tmp_path / "bad.zip").findings] == ["unreadable"]


def test_extra_files_are_packaged_and_covered(tmp_path: Path) -> None:
    folder = make_package(tmp_path, extra_files={"canary-report.txt": b"all good\n",
                                                 "chart.png": b"\x89PNG\r\n\x1a\n\x00\x01"})
    assert (folder / "chart.png").read_bytes() == b"\x89PNG\r\n\x1a\n\x00\x01"
    assert verify_package(folder).ok
    assert "`canary-report.txt`" in (folder / "INDEX.md").read_text()
    (folder / "canary-report.txt").write_text("all bad\n")
    assert ("canary-report.txt", "changed") in problems(folder)


@pytest.mark.parametrize("name", ["../x.txt", "a/b.txt", "INDEX.md", MANIFEST, ".hidden", ""])
def test_extra_file_names_must_be_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidPackageInput):
        make_package(tmp_path, extra_files={name: b"x"})
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def trades() -> Iterator[bytes]:
        yield b"id,symbol\r\n"
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        make_package(tmp_path, trades_csv_chunks=trades())
    assert list(tmp_path.iterdir()) == []


def test_trades_are_streamed_once(tmp_path: Path) -> None:
    consumed: list[int] = []

    def trades() -> Iterator[bytes]:
        yield b"id,symbol\r\n"
        for n in range(1000):
            consumed.append(n)
            yield f"{n},BTC".encode()  # lines split across chunks
            yield b"USDT\r\n"

    folder = make_package(tmp_path, trades_csv_chunks=trades())
    assert len(consumed) == 1000
    lines = (folder / "trades.csv").read_bytes().split(b"\r\n")
    assert lines[1] == b"0,BTCUSDT" and lines[1000] == b"999,BTCUSDT"
    assert "(1000 rows)" in (folder / "INDEX.md").read_text()


def test_a_failed_zip_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spark.runtime.evidence.package as package_module

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package_module, "_write_zip", disk_full)
    with pytest.raises(OSError):
        make_package(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_config_may_be_the_loaded_object(tmp_path: Path) -> None:
    folder = make_package(tmp_path, config_redacted_toml=SparkConfig())
    config = tomllib.loads((folder / "config.redacted.toml").read_text())
    assert config["control"]["port"] == 4001 and config["venue"]["api_key"] == "***"
