"""Overlapping runs never double-insert: the offset compare-and-set stops a second concurrent run
of the same consumer, and the instance's tag concurrency limit keeps a second run of
ingest_metrics_job queued until the first has finished (schedule, sensor and manual runs alike)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sml_assets.automation import ingest_metrics_job
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import SUBPROCESS_ENV, start_metrics_run, wait_until
from sml_assets_tests.helpers import (
    CONSUMER,
    assert_matches_truth,
    assert_offsets_cover_exactly_what_is_stored,
    dagster_home,
    metadata,
    run,
    simulate,
)

pytestmark = pytest.mark.integration

BACKLOG = 20_000
BIN = Path(sys.executable).parent
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_materializations_at_once_in_two_processes_never_double_insert(
    backend: str,
    trial_database: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = new_topic(partitions=2)
    truth = simulate(
        kafka_bootstrap,
        topic,
        new_topic(),
        tmp_path / "truth.json",
        "--seed",
        "31",
        "--start",
        "2026-11-25T16:00:00Z",
        "--count",
        str(BACKLOG),
        "--log-rate",
        "0",
        "--malformed-rate",
        "0.05",
    )
    database = trial_database(backend)
    database.ensure_tables()
    runs = [
        start_metrics_run(kafka_bootstrap, topic, database, CONSUMER, 100, stderr=subprocess.PIPE) for _ in range(2)
    ]
    try:
        for process in runs:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0 or "OffsetConflictError" in stderr.decode(), stderr.decode()[-3000:]
    finally:
        for process in runs:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)
    print(f"exit codes of the two runs: {[process.returncode for process in runs]}")

    assert_offsets_cover_exactly_what_is_stored(database, topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, timeout_s=10)
    metadata(run(kafka, database, consumer_name=CONSUMER))
    assert assert_offsets_cover_exactly_what_is_stored(database, topic) == BACKLOG
    assert_matches_truth(database, topic, truth)


def test_the_tag_limit_queues_a_second_run_of_the_job_until_the_first_has_finished(
    new_topic: Callable[..., str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two runs launched together, and the backlog sensor wanting a third: with the repo's
    dagster.yaml the daemon starts them one after another, and the table holds each message once."""
    topic = new_topic(partitions=2)
    truth = simulate(
        kafka_bootstrap,
        topic,
        new_topic(),
        tmp_path / "truth.json",
        "--seed",
        "32",
        "--start",
        "2026-11-25T16:00:00Z",
        "--count",
        str(BACKLOG),
        "--log-rate",
        "0",
        "--malformed-rate",
        "0.05",
    )
    home = dagster_home(tmp_path / "dagster-home")
    url = f"sqlite:///{tmp_path / 'sml.db'}"
    env = {
        **SUBPROCESS_ENV,
        "DAGSTER_HOME": str(home),
        "SML_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SML_METRICS_TOPIC": topic,
        "SML_METRICS_DB_URL": url,
        "SML_DATA_DIR": str(tmp_path / "data"),
    }
    location = ["-m", "sml_assets_tests.overlap_definitions"]
    instance = DagsterInstance.from_config(str(home))
    launches = [
        subprocess.Popen(
            [str(BIN / "dagster"), "job", "launch", *location, "-j", ingest_metrics_job.name],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        for launch in launches:
            output, _ = launch.communicate(timeout=120)
            assert launch.returncode == 0, output.decode()[-3000:]
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
                launch.communicate(timeout=30)
    queued = instance.get_run_records(RunsFilter(job_name=ingest_metrics_job.name))
    assert [record.dagster_run.status for record in queued] == [DagsterRunStatus.QUEUED] * 2

    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", *location],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def all_done() -> list:
            records = instance.get_run_records(RunsFilter(job_name=ingest_metrics_job.name))
            return records if len(records) >= 2 and all(r.dagster_run.status in DONE for r in records) else []

        records = wait_until(all_done, 300, f"both runs finished (daemon log: {tmp_path / 'daemon.log'})", 0.5)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)

    assert {record.dagster_run.status for record in records} == {DagsterRunStatus.SUCCESS}
    intervals = sorted((record.start_time, record.end_time) for record in records)
    for (_, first_end), (second_start, _) in pairwise(intervals):
        assert first_end <= second_start, f"two runs of {ingest_metrics_job.name} overlapped: {intervals}"
    database = MetricsDatabase(url=url)
    assert assert_offsets_cover_exactly_what_is_stored(database, topic, "server_metrics") == BACKLOG
    assert_matches_truth(database, topic, truth)
    database.engine().dispose()
