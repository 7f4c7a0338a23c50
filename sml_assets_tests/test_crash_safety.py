"""Crash safety: a materialization killed with SIGKILL at a random moment, then run again, loses and
doubles nothing. The simulator's ground truth (`--truth`) is the oracle.

Each trial is seeded: the seed picks the data, the partitions, the chunk size, the backend and the
kill moment (a point of progress plus a jitter, or a time during start-up), so a failing trial is
rerun with the same plan. `make test` runs a few trials; `make stress` runs `SML_STRESS_TRIALS`
(default 20) metrics trials and `SML_STRESS_LOG_TRIALS` (default 5) log_summary trials from
`SML_STRESS_SEED` (default 1000).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random

import pytest
from dagster import materialize
from sqlalchemy import text

from sml_assets.assets import logs
from sml_assets.logs_stream import CHECKPOINT_DIR, SUMMARY_DIR
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.summarize import STATE_FILE
from sml_assets_tests.faults import SUBPROCESS_ENV, start_metrics_run, wait_until
from sml_assets_tests.helpers import (
    CONSUMER,
    assert_matches_truth,
    assert_offsets_cover_exactly_what_is_stored,
    committed,
    metadata,
    run,
    simulate,
)

pytestmark = pytest.mark.integration

STRESS_SEED = int(os.environ.get("SML_STRESS_SEED", "1000"))
STRESS_TRIALS = int(os.environ.get("SML_STRESS_TRIALS", "20"))
STRESS_LOG_TRIALS = int(os.environ.get("SML_STRESS_LOG_TRIALS", "5"))
METRICS_BACKLOG = 20_000
LOGS_SCRIPT = """
import sys
from dagster import materialize
from sml_assets.assets.logs import log_summary
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
bootstrap, topic, jars, data_dir = sys.argv[1:5]
materialize(
    [log_summary],
    resources={"kafka": KafkaResource(bootstrap_servers=bootstrap, logs_topic=topic),
               "spark": SparkResource(jars_dir=jars), "storage": LocalStorage(data_dir=data_dir)},
)
"""


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and everything it started (Spark's JVM included), as a power cut would."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def linger(seconds: float) -> None:
    """Let the victim run on for a seeded while: the kill then lands at an arbitrary instruction."""
    deadline = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= deadline, seconds + 1, "jitter")


def where_the_kill_lands(process: subprocess.Popen[bytes], database: MetricsDatabase) -> str:
    """Said with each trial, so a reader sees what the trials covered: a run that had already
    ended, or (PostgreSQL) one with a COPY open, and how many rows the server had taken from it."""
    if process.poll() is not None:
        return "after the run had ended"
    if not database.url.startswith("postgresql"):
        return "during the run"
    with database.engine().connect() as connection:
        taken = connection.execute(
            text("SELECT tuples_processed FROM pg_stat_progress_copy WHERE relid = to_regclass(:table)"),
            {"table": database.tables.metrics.fullname},
        ).scalar()
    return "during the run" if taken is None else f"during the run, a COPY open with {taken} rows"


@dataclass
class MetricsTrial:
    seed: int
    backend: str

    @property
    def rng(self) -> Random:
        return Random(self.seed)


def metrics_kill_trial(
    trial: MetricsTrial,
    trial_database: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    rng = trial.rng
    partitions, chunk_size = rng.choice([1, 2, 3]), rng.choice([50, 250, 1000])
    # The chunks of a trial are smaller than ingest.SEND_BATCH: on PostgreSQL half the trials
    # stream each chunk in 4 or 5 COPY writes instead of 1, so the kill can land between two of them.
    send_batch = rng.choice([None, chunk_size // 4])
    topic, logs_topic = new_topic(partitions=partitions), new_topic()
    truth = simulate(
        kafka_bootstrap,
        topic,
        logs_topic,
        tmp_path / "truth.json",
        "--seed",
        str(trial.seed),
        "--start",
        "2026-11-25T16:00:00Z",
        "--count",
        str(METRICS_BACKLOG),
        "--log-rate",
        "0",
        "--malformed-rate",
        "0.05",
        "--skewed-clock-rate",
        "0.01",
    )
    assert truth["metrics"]["skewed"] > 0, "no event from a clock ahead in the trial"
    assert truth["acked"] == METRICS_BACKLOG
    database = trial_database(trial.backend)
    database.ensure_tables()
    process = start_metrics_run(
        kafka_bootstrap, topic, database, CONSUMER, chunk_size, send_batch, start_new_session=True
    )
    try:
        if rng.random() < 0.2:
            linger(rng.uniform(0.2, 1.5))
        else:
            goal = int(rng.uniform(0.0, 0.95) * METRICS_BACKLOG)
            wait_until(
                lambda: committed(database, topic) >= goal or process.poll() is not None,
                180,
                f"trial {trial.seed}: {goal} messages committed",
            )
            linger(rng.uniform(0.0, 0.03))
        landed = where_the_kill_lands(process, database)
    finally:
        kill_group(process)
    assert process.returncode in (0, -signal.SIGKILL), f"the run failed by itself (exit {process.returncode})"
    before = assert_offsets_cover_exactly_what_is_stored(database, topic)
    print(
        f"trial seed={trial.seed} {trial.backend} partitions={partitions} chunk={chunk_size} "
        f"send_batch={send_batch or 'default'}: killed {landed} with {before:,} of {METRICS_BACKLOG:,} committed"
    )

    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, timeout_s=10)
    rerun = metadata(run(kafka, database, chunk_size=chunk_size, consumer_name=CONSUMER))
    assert rerun["messages read"] == METRICS_BACKLOG - before
    assert assert_offsets_cover_exactly_what_is_stored(database, topic) == METRICS_BACKLOG
    assert_matches_truth(database, topic, truth)


DEFAULT_TRIALS = [MetricsTrial(7, "sqlite"), MetricsTrial(8, "postgresql"), MetricsTrial(9, "sqlite")]
STRESS = [MetricsTrial(STRESS_SEED + i, ("sqlite", "postgresql")[i % 2]) for i in range(STRESS_TRIALS)]


@pytest.mark.parametrize("trial", DEFAULT_TRIALS, ids=lambda t: f"seed{t.seed}-{t.backend}")
def test_metrics_rerun_after_sigkill_at_a_random_moment_holds_every_message_exactly_once(
    trial: MetricsTrial,
    trial_database: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    metrics_kill_trial(trial, trial_database, new_topic, kafka_bootstrap, tmp_path)


@pytest.mark.stress
@pytest.mark.parametrize("trial", STRESS, ids=lambda t: f"seed{t.seed}-{t.backend}")
def test_stress_metrics_rerun_after_sigkill_holds_every_message_exactly_once(
    trial: MetricsTrial,
    trial_database: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    metrics_kill_trial(trial, trial_database, new_topic, kafka_bootstrap, tmp_path)


LOG_MILESTONES: dict[str, Callable[[Path], bool]] = {
    "during start-up": lambda data: True,
    "checkpoint opened": lambda data: (data / CHECKPOINT_DIR / "sml-checkpoint-id").exists(),
    "batch 0 planned": lambda data: (data / CHECKPOINT_DIR / "windows" / "offsets" / "0").exists(),
    "summary state written": lambda data: (data / SUMMARY_DIR / STATE_FILE).exists(),
    "batch 0 committed": lambda data: (data / CHECKPOINT_DIR / "windows" / "commits" / "0").exists(),
    "rejects of batch 0 being written": lambda data: (data / SUMMARY_DIR / "rejects" / "batch_id=0").exists(),
}


def summarize(kafka_bootstrap: str, topic: str, spark: SparkResource, data_dir: Path) -> dict:
    result = materialize(
        [logs.log_summary],
        resources={
            "kafka": KafkaResource(bootstrap_servers=kafka_bootstrap, logs_topic=topic),
            "spark": spark,
            "storage": LocalStorage(data_dir=str(data_dir)),
        },
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def rejects_seen_by_spark(spark: SparkResource, data_dir: Path) -> int:
    """Rows of the rejects folder as Spark reads it (every batch's folder; a half-written one
    holds its files under _temporary, which readers skip, and the rerun writes it again)."""
    return spark.session().read.parquet(str(data_dir / SUMMARY_DIR / "rejects")).count()


def log_summary_kill_trial(
    seed: int, new_topic: Callable[..., str], kafka_bootstrap: str, spark: SparkResource, tmp_path: Path
) -> None:
    rng = Random(seed)
    topic, metrics_topic = new_topic(partitions=rng.choice([1, 2])), new_topic()
    truth = simulate(
        kafka_bootstrap,
        metrics_topic,
        topic,
        tmp_path / "truth.json",
        "--seed",
        str(seed),
        "--start",
        "2026-11-25T16:00:00Z",
        "--duration",
        "2400",
        "--log-rate",
        "8",
        "--metrics-interval",
        "3600",
        "--malformed-rate",
        "0.03",
        "--skewed-clock-rate",
        "0.01",
    )
    assert truth["logs"]["skewed"] > 0, "no line from a clock ahead in the trial"
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    baseline = summarize(kafka_bootstrap, topic, spark, uninterrupted)
    assert baseline["parsed_rows"] == truth["logs"]["valid"]

    milestone = rng.choice(sorted(LOG_MILESTONES))
    process = subprocess.Popen(
        [sys.executable, "-c", LOGS_SCRIPT, kafka_bootstrap, topic, spark.jars_dir, str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=SUBPROCESS_ENV,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: LOG_MILESTONES[milestone](killed) or process.poll() is not None,
            300,
            f"log trial {seed}: {milestone}",
        )
        linger(rng.uniform(0.0, 8.0) if milestone == "during start-up" else rng.uniform(0.0, 0.5))
    finally:
        kill_group(process)
    assert process.returncode in (0, -signal.SIGKILL), f"the run failed by itself (exit {process.returncode})"
    csv = killed / "output_log_summary.csv"
    expected = (uninterrupted / csv.name).read_bytes()
    assert not csv.exists() or csv.read_bytes() == expected, "a killed run left a partial CSV"
    print(f"log trial seed={seed}: killed at '{milestone}' (exit {process.returncode})")

    summarize(kafka_bootstrap, topic, spark, killed)
    assert csv.read_bytes() == expected
    assert (
        rejects_seen_by_spark(spark, killed)
        == rejects_seen_by_spark(spark, uninterrupted)
        == truth["logs"]["malformed_total"] + truth["logs"]["skewed"]
    )


def test_log_summary_rerun_after_sigkill_gives_the_csv_of_an_uninterrupted_run(
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> None:
    log_summary_kill_trial(21, new_topic, kafka_bootstrap, spark_resource, tmp_path)


@pytest.mark.stress
@pytest.mark.parametrize("seed", [STRESS_SEED + i for i in range(STRESS_LOG_TRIALS)])
def test_stress_log_summary_rerun_after_sigkill_gives_the_uninterrupted_csv(
    seed: int,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> None:
    log_summary_kill_trial(seed, new_topic, kafka_bootstrap, spark_resource, tmp_path)
