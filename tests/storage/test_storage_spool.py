"""The spool: durable appends, ordered replay, torn tails, corruption, rotation, deletion."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import audit, one_of_each, trade

from spark.storage import records as r
from spark.storage.errors import SpoolError
from spark.storage.spool import REJECTED_NAME, Spool, decode_line, encode_line, parse_segment


def replay_all(spool: Spool) -> list[r.Record]:
    spool.seal()
    out: list[r.Record] = []
    for segment in spool.sealed_segments():
        out.extend(spool.read(segment).records)
    return out


def test_append_then_replay_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_max_events=4)
    spool.open()
    records = [rec for n in range(1, 3) for rec in one_of_each(n)]  # 16 records
    spool.append(records[:3])
    spool.append(records[3:11])
    spool.append(records[11:])
    assert spool.pending_events == 16
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and all(n.startswith("segment-") for n in names)
    assert replay_all(spool) == records


def test_reopen_sees_previous_segments_and_never_appends_to_them(tmp_path: Path) -> None:
    first = Spool(tmp_path, segment_max_events=100)
    first.open()
    first.append([trade(1), trade(2)])
    # No close(): as if the process died here.
    second = Spool(tmp_path, segment_max_events=100)
    second.open()
    assert second.pending_events == 2
    assert not any(s.this_process for s in second.sealed_segments())
    second.append([trade(3)])
    assert len(list(tmp_path.glob("segment-*.jsonl"))) == 2
    assert replay_all(second) == [trade(1), trade(2), trade(3)]


@pytest.mark.parametrize("cut", [1, 5, 9, 20, -1])
def test_torn_last_line_is_detected_and_ignored(tmp_path: Path, cut: int) -> None:
    spool = Spool(tmp_path, segment_max_events=100)
    spool.open()
    spool.append([trade(1), trade(2)])
    spool.close()
    segment = next(tmp_path.glob("segment-*.jsonl"))
    torn = encode_line(trade(3))[:cut]  # an append interrupted part-way
    with segment.open("ab") as f:
        f.write(torn)
    reopened = Spool(tmp_path, segment_max_events=100)
    reopened.open()
    assert reopened.pending_events == 2
    contents = reopened.read(reopened.sealed_segments()[0])
    assert contents.records == [trade(1), trade(2)]
    assert contents.torn_tail and contents.corrupt_lines == 0


def test_damaged_complete_last_line_counts_as_torn(tmp_path: Path) -> None:
    line = bytearray(encode_line(trade(2)))
    line[20] ^= 0x01  # a bit flip inside the JSON: checksum mismatch
    contents = parse_segment(encode_line(trade(1)) + bytes(line))
    assert contents.records == [trade(1)] and contents.torn_tail


def test_corruption_in_the_middle_is_counted_and_quarantined(tmp_path: Path) -> None:
    data = encode_line(trade(1)) + b"garbage\n" + encode_line(trade(2))
    (tmp_path / "segment-000000000001.jsonl").write_bytes(data)
    spool = Spool(tmp_path, segment_max_events=100)
    spool.open()
    segment = spool.sealed_segments()[0]
    contents = spool.read(segment)
    assert contents.records == [trade(1), trade(2)]
    assert contents.corrupt_lines == 1 and not contents.torn_tail
    spool.delete(segment, quarantine=True)
    assert (tmp_path / "segment-000000000001.corrupt").exists()
    assert spool.empty


def test_segment_deleted_only_when_told(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_max_events=2)
    spool.open()
    spool.append([trade(n) for n in range(1, 6)])
    spool.seal()
    segments = spool.sealed_segments()
    assert [s.events for s in segments] == [2, 2, 1]
    assert all(s.this_process for s in segments)
    spool.delete(segments[0])
    assert not segments[0].path.exists() and segments[1].path.exists()
    assert spool.pending_events == 3
    with pytest.raises(SpoolError):
        spool.delete(segments[0])
    reopened = Spool(tmp_path, segment_max_events=2)
    reopened.open()
    assert replay_all(reopened) == [trade(n) for n in range(3, 6)]


def test_lines_are_checksummed_json(tmp_path: Path) -> None:
    line = encode_line(audit(1))
    assert line.endswith(b"\n") and line[8:9] == b" "
    payload = line[9:-1]
    assert orjson.loads(payload)["k"] == "audit"
    assert decode_line(line[:-1]) == r.decode(payload)


def test_rejected_records_are_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_max_events=10)
    spool.open()
    spool.reject([(trade(1), "IntegrityError: boom")])
    (entry,) = [orjson.loads(x) for x in (tmp_path / REJECTED_NAME).read_bytes().splitlines()]
    assert entry["error"] == "IntegrityError: boom"
    assert r.from_jsonable(entry["record"]) == trade(1)
    reopened = Spool(tmp_path, segment_max_events=10)
    reopened.open()
    assert reopened.empty  # rejected records are not replayed


def test_unusable_directory_is_a_spool_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = Spool(blocker / "spool", segment_max_events=10)
    with pytest.raises(SpoolError) as info:
        spool.open()
    assert info.value.reason == "spool_error"


def test_segment_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_max_events=10)
    spool.open()
    spool.append([trade(1)])
    (segment,) = tmp_path.glob("segment-*")
    assert os.stat(segment).st_mode & 0o077 == 0


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    segment_max=st.integers(1, 6),
    tail=st.binary(max_size=40).filter(lambda b: b"\n" not in b),
)
def test_property_whatever_was_appended_replays_in_order(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], segment_max: int, tail: bytes
) -> None:
    directory = tmp_path_factory.mktemp("spool")
    spool = Spool(directory, segment_max_events=segment_max)
    spool.open()
    expected: list[r.Record] = []
    n = 0
    for size in sizes:
        batch = [trade(n + i) for i in range(size)]
        n += size
        spool.append(batch)
        expected.extend(batch)
    # A crash mid-append leaves arbitrary bytes without a newline at the end of the last file.
    last = max(directory.glob("segment-*.jsonl"))
    with last.open("ab") as f:
        f.write(tail)
    reopened = Spool(directory, segment_max_events=segment_max)
    reopened.open()
    assert reopened.pending_events == len(expected)
    assert replay_all(reopened) == expected
