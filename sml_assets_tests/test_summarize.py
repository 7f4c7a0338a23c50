"""summarize_logs' stored state: it records the window size and watermark delay it was counted with,
and a change of either is refused with what to do, before Kafka or Spark is touched."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sml_assets import windows
from sml_assets.logs_stream import open_checkpoint, stream_paths
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.summarize import REBUILD_COMMAND, load_summary, state_path, summarize_logs
from sml_assets.windows import Counts, Summary, SummaryShapeError, from_json, shape_tag, to_json

REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
STORED = Summary(windows={T0: Counts(GET_success=3)}, max_event_time=T0 + timedelta(minutes=1), query_id="q")


def test_the_state_records_the_window_and_watermark_delay_and_reads_back() -> None:
    text = to_json(STORED)
    assert '"window_seconds": 300' in text and '"watermark_delay_seconds": 600' in text
    assert from_json(text) == STORED


def test_a_state_from_before_the_shape_was_recorded_is_read_as_5_and_10_minutes() -> None:
    old = to_json(STORED).replace(' "window_seconds": 300,\n', "").replace(' "watermark_delay_seconds": 600,\n', "")
    assert "window_seconds" not in old
    assert from_json(old) == STORED


def test_a_changed_window_refuses_the_stored_state_naming_the_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    text = to_json(STORED)
    monkeypatch.setattr(windows, "WINDOW", timedelta(minutes=10))
    with pytest.raises(SummaryShapeError) as refused:
        from_json(text)
    assert str(refused.value) == (
        "the log summary was counted with WINDOW = 5 minutes and WATERMARK_DELAY = 10 minutes, but "
        "sml_assets/windows.py now sets WINDOW = 10 minutes and WATERMARK_DELAY = 10 minutes"
    )


def test_the_checkpoint_id_carries_the_window_and_delay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = stream_paths(LocalStorage(data_dir=str(tmp_path)))
    assert open_checkpoint(paths, expected_id=None).checkpoint_id.endswith("-w300s-d600s")
    monkeypatch.setattr(windows, "WATERMARK_DELAY", timedelta(minutes=15))
    assert shape_tag() == "w300s-d900s"


def test_a_changed_delay_stops_summarize_logs_before_kafka_and_spark_and_rebuild_clears_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(data_dir=str(tmp_path))
    state = state_path(storage)
    state.write_text(to_json(STORED))
    monkeypatch.setattr(windows, "WATERMARK_DELAY", timedelta(minutes=15))
    unreachable = KafkaResource(bootstrap_servers="127.0.0.1:1", logs_topic="never-read", timeout_s=1)
    with pytest.raises(SummaryShapeError) as refused:
        summarize_logs(unreachable, SparkResource(jars_dir=str(tmp_path)), storage, logging.getLogger("t"))
    message = str(refused.value)
    assert message.startswith(f"{state}: the log summary was counted with WINDOW = 5 minutes and WATERMARK_DELAY")
    assert "now sets WINDOW = 5 minutes and WATERMARK_DELAY = 15 minutes" in message
    assert f"'{REBUILD_COMMAND}'" in message

    rebuilt = subprocess.run(
        [sys.executable, "-m", "sml_assets.rebuild", "log-summary", "--discard-only"],
        env={**os.environ, "SML_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "recounts the logs topic from earliest" in rebuilt.stdout
    assert not state.exists()
    assert [p.name for p in state.parent.glob("discarded-*/summary_state.json")] == [state.name]
    assert load_summary(state) == Summary()


WORKER_LOAD = """
import pickle, sys
import pyspark.sql.connect.session, pyspark.worker
before = set(sys.modules)
with open(sys.argv[1], "rb") as handle:
    each_batch = pickle.load(handle)
assert callable(each_batch)
print(" ".join(sorted(set(sys.modules) - before)))
"""
"""What the Spark Connect server's foreachBatch worker does (pyspark's foreach_batch_worker): it has
imported pyspark's Connect client and worker, then unpickles the function (`read_command`)."""


def test_the_batch_function_the_connect_server_unpickles_imports_neither_dagster_nor_the_resources(
    tmp_path: Path,
) -> None:
    """Every run over Spark Connect starts a new worker in the server that pays for each module the
    function names; Dagster alone was 1.3 CPU-s of it (sml_assets.summary_merge)."""
    from pyspark.serializers import CloudPickleSerializer

    from sml_assets.logs_stream import batch_function
    from sml_assets.summary_merge import SummaryMerger

    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    merger = SummaryMerger(path=state_path(storage), summary=STORED)
    each_batch = batch_function("q", stream_paths(storage), merger, tmp_path / "journal")
    pickled = tmp_path / "each_batch.pickle"
    pickled.write_bytes(CloudPickleSerializer().dumps(each_batch))
    loaded = subprocess.run(
        [sys.executable, "-c", WORKER_LOAD, str(pickled)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    ).stdout.split()
    assert "sml_assets.summary_merge" in loaded and "sml_assets.logs_stream" in loaded
    heavy = sorted(
        {name.split(".")[0] for name in loaded if name.split(".")[0] == "dagster"}
        | {name for name in loaded if name.startswith("sml_assets.resources")}
    )
    assert heavy == [], f"the foreachBatch function imports {heavy} in every run's server worker"
