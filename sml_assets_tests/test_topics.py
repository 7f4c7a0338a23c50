"""The logs topic's lag, and how far a stopped run read, come from Spark's checkpoint: read its offset
log the way Spark writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sml_assets.logs_stream import QueryStoppedError, StreamPaths, check_read_to_end, committed_positions

METADATA_LINE = json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 1795629043541, "conf": {}})


def write_batch(checkpoint: Path, batch: int, offsets: dict, committed: bool) -> None:
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / str(batch)).write_text(f"v1\n{METADATA_LINE}\n{json.dumps(offsets)}")
    if committed:
        (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_positions_are_those_of_the_newest_committed_batch(tmp_path: Path) -> None:
    write_batch(tmp_path, 0, {"logs": {"0": 10, "1": 4}}, committed=True)
    write_batch(tmp_path, 1, {"logs": {"0": 25, "1": 9}}, committed=True)
    write_batch(tmp_path, 2, {"logs": {"0": 40, "1": 11}}, committed=False)
    assert committed_positions(tmp_path, "logs") == {0: 25, 1: 9}


def test_no_committed_batch_means_no_position_yet(tmp_path: Path) -> None:
    assert committed_positions(tmp_path / "missing", "logs") == {}
    write_batch(tmp_path, 0, {"logs": {"0": 10}}, committed=False)
    assert committed_positions(tmp_path, "logs") == {}


def test_another_topic_in_the_log_gives_no_position(tmp_path: Path) -> None:
    write_batch(tmp_path, 0, {"other": {"0": 10}}, committed=True)
    assert committed_positions(tmp_path, "logs") == {}


def test_an_unreadable_offset_log_gives_none_rather_than_a_wrong_lag(tmp_path: Path) -> None:
    write_batch(tmp_path, 0, {"logs": {"0": 10}}, committed=True)
    (tmp_path / "offsets" / "0").write_text("v1\n{}\n{not json")
    assert committed_positions(tmp_path, "logs") is None


def test_a_run_short_of_the_offsets_it_started_for_fails_naming_each_short_partition(tmp_path: Path) -> None:
    """`check_read_to_end`: the last progress' end offsets decide; with no progress (stopped in the
    first batch), the checkpoint's newest committed batch; a partition read past its mark is fine."""
    paths = StreamPaths(checkpoint_root=tmp_path / "checkpoint", rejects_dir=tmp_path / "rejects")
    intended = {0: 25, 1: 9}
    check_read_to_end("q", "logs", paths, {"logs": {"0": 25, "1": 12}}, intended)
    with pytest.raises(QueryStoppedError) as stopped:
        check_read_to_end("q (id 1)", "logs", paths, {"logs": {"0": 25, "1": 4}}, intended)
    assert str(stopped.value).startswith(
        "Spark query q (id 1) on logs was stopped before it read to the offsets this run started for "
        "(partition 1: read to 4 of 9): something outside the run stopped it"
    )
    write_batch(tmp_path / "checkpoint" / "windows", 0, {"logs": {"0": 25, "1": 4}}, committed=True)
    write_batch(tmp_path / "checkpoint" / "windows", 1, {"logs": {"0": 25, "1": 9}}, committed=False)
    with pytest.raises(QueryStoppedError, match=r"\(partition 1: read to 4 of 9\)"):
        check_read_to_end("q", "logs", paths, {}, intended)
    with pytest.raises(QueryStoppedError, match=r"\(partition 0: nothing committed of 3\)"):
        check_read_to_end("q", "logs", StreamPaths(tmp_path / "fresh", tmp_path / "r"), {}, {0: 3})
