"""Latency from the 1,000th waiting metrics message to its rows being in the table, through the
backlog sensor path: a real `dagster-daemon` (sensor, run queue, run launcher, run worker) on a
temporary DAGSTER_HOME with the repo's dagster.yaml, pointed at own topics, table and data dir.

The two schedules are stopped first, so only `metrics_backlog_sensor` can start a run. Each
repeat waits a random 0 to 2 sensor intervals (so the tick's phase is sampled, not fixed),
sends 1,000 messages at once and polls the table until they are all there. The breakdown comes
from the run's own record: tick wait (message -> run created), launch (created -> started) and
run start to rows committed.

    python benchmarks/bench_sensor.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, func, inspect, select

from benchmarks.common import (
    BOOTSTRAP,
    SEED,
    Stat,
    metrics_values,
    own_topics,
    produce,
    report,
    unique,
)
from sml_assets.automation import BACKLOG_SENSOR_INTERVAL_S, ingest_metrics_job
from sml_assets.resources.tables import metrics_schema

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BACKLOG = 1_000
LATENCY_DEADLINE_S = 150.0
SCHEDULES = ("ingest_metrics_every_2_minutes", "summarize_logs_every_5_minutes")


def _environment(home: Path, data: Path, metrics: str, logs: str, db_url: str, table: str) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SML_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "SML_METRICS_TOPIC": metrics,
        "SML_LOGS_TOPIC": logs,
        "SML_METRICS_DB_URL": db_url,
        "SML_METRICS_TABLE": table,
        "SML_DATA_DIR": str(data),
        "SML_SPARK_JARS_DIR": str(REPO / ".sml-data" / "jars" / "spark-kafka"),
        "SML_HDFS_URL": "http://127.0.0.1:9870",
        "SML_METRICS_BACKLOG_THRESHOLD": str(BACKLOG),
    }


def _rows(engine: object, table: str) -> int:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        if not inspect(connection).has_table(table):
            return 0
        return int(connection.execute(select(func.count()).select_from(metrics_schema(table).metrics)).scalar_one())


def _wait_rows(engine: object, table: str, expected: int, deadline_s: float) -> float | None:
    """Wall-clock time when the table first holds `expected` rows, None past the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if _rows(engine, table) >= expected:
            return time.time()
        time.sleep(0.1)
    return None


def _last_run(home: Path) -> dict[str, float]:
    """Created/started/ended timestamps of the newest ingest run, from the instance's run storage."""
    script = (
        "import json;from dagster import DagsterInstance, RunsFilter;"
        "i=DagsterInstance.get();"
        f"r=i.get_run_records(RunsFilter(job_name={ingest_metrics_job.name!r}),limit=1)[0];"
        "print(json.dumps({'created':r.create_timestamp.timestamp(),'started':r.start_time,"
        "'ended':r.end_time,'status':r.dagster_run.status.value}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(out)


def _finished_run(home: Path) -> dict[str, float]:
    """The newest run's record once it has ended (its checks run after the rows are committed)."""
    deadline = time.monotonic() + LATENCY_DEADLINE_S
    while True:
        record = _last_run(home)
        if record["ended"] is not None:
            return record
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the newest {ingest_metrics_job.name} run in {home} had not ended after "
                f"{LATENCY_DEADLINE_S:g}s (status {record['status']}); see the daemon log beside it"
            )
        time.sleep(1)


def run(repeats: int) -> dict[str, Stat]:
    rng = random.Random(SEED)
    values = metrics_values(BACKLOG * (repeats + 1))
    tmp = Path(tempfile.mkdtemp(prefix="sml-bench-sensor-"))
    home, data = tmp / "dagster_home", tmp / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    table = unique("sensor")
    db_url = f"sqlite:///{data / 'sensor.db'}"
    engine = create_engine(db_url)
    figures: dict[str, list[float]] = {name: [] for name in ("latency_s", "tick_wait_s", "launch_s", "run_s")}
    daemon: subprocess.Popen[bytes] | None = None
    try:
        with own_topics(2, "sensor") as (metrics, logs):
            env = _environment(home, data, metrics, logs, db_url, table)
            for name in SCHEDULES:
                subprocess.run(
                    [str(BIN / "dagster"), "schedule", "stop", name, "-m", "sml_assets.definitions"],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    timeout=120,
                    check=True,
                )
            with open(tmp / "daemon.log", "wb") as log:
                daemon = subprocess.Popen(
                    [str(BIN / "dagster-daemon"), "run", "-m", "sml_assets.definitions"],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            for index in range(repeats + 1):
                if index:
                    time.sleep(rng.uniform(0, 2 * BACKLOG_SENSOR_INTERVAL_S))  # tick phase, not a wait
                produce(metrics, values[index * BACKLOG : (index + 1) * BACKLOG])
                sent = time.time()
                done = _wait_rows(engine, table, (index + 1) * BACKLOG, LATENCY_DEADLINE_S + (120 if index == 0 else 0))
                if done is None:
                    raise RuntimeError(f"rows did not arrive in time; daemon log kept at {tmp / 'daemon.log'}")
                record = _finished_run(home)
                if index == 0:
                    print(f"  sensor warm-up: first backlog in the table after {done - sent:.1f}s", file=sys.stderr)
                    continue
                parts = {
                    "latency_s": done - sent,
                    "tick_wait_s": record["created"] - sent,
                    "launch_s": record["started"] - record["created"],
                    "run_s": done - record["started"],
                }
                for name, value in parts.items():
                    figures[name].append(value)
                print(
                    f"  sensor repeat {index}/{repeats}: {parts['latency_s']:.1f}s (tick wait "
                    f"{parts['tick_wait_s']:.1f}s, launch {parts['launch_s']:.1f}s, run start to rows "
                    f"{parts['run_s']:.1f}s)",
                    file=sys.stderr,
                )
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=30)
        engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    return {name: Stat(tuple(values)) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    return report(run(args.repeats), args.json, digits=2)


if __name__ == "__main__":
    sys.exit(main())
