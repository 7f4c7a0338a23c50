"""Helpers shared by the test modules (fixtures live in conftest.py): producing to Kafka, running
server_metrics in process and reading its result, the exactly-once oracles, and hostile or mutated
metrics values."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult, materialize
from hypothesis import strategies as st
from sqlalchemy import func, select

from sml_assets.assets import metrics as metrics_assets
from sml_assets.assets.metrics import server_metrics
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.conftest import REPO_ROOT

CHECKS = [
    metrics_assets.no_duplicate_messages,
    metrics_assets.values_in_range,
    metrics_assets.dead_letter_ratio,
    metrics_assets.newest_row_is_fresh,
]

CONSUMER = "crash_trial"


def dagster_home(folder: Path) -> Path:
    """A DAGSTER_HOME with the repo's dagster.yaml and its storages created. Created here, once:
    SQLite storages stamp their schema on first use, and two processes opening a fresh instance at
    once can stamp it twice ("alembic_version has more than one head")."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", folder / "dagster.yaml")
    with DagsterInstance.from_config(str(folder)) as instance:
        instance.upgrade()
    return folder


def run_side_by_side(
    commands: Sequence[Sequence[str]], env: dict[str, str], timeout: float = 600
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at once from the repository root (both cores work while one
    waits) and wait for all; fail naming each one that exited non-zero. Output goes to files, not
    pipes, so a chatty command never waits for the test to read it. Prints each one's duration.
    A DAGSTER_HOME in `env` must hold a created instance (`dagster_home`)."""
    started = time.monotonic()
    with ExitStack() as stack:
        children = []
        for command in commands:
            out, err = (stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2))
            children.append(
                (command, subprocess.Popen(list(command), cwd=REPO_ROOT, env=env, stdout=out, stderr=err), out, err)
            )
        results = []
        try:
            for command, child, out, err in children:
                child.wait(timeout=max(1.0, started + timeout - time.monotonic()))
                print(f"{' '.join(command)}: done {time.monotonic() - started:.1f} s after the start")
                out.seek(0)
                err.seek(0)
                results.append(subprocess.CompletedProcess(list(command), child.returncode, out.read(), err.read()))
        finally:
            for _, child, _, _ in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    failed = [
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        for result in results
        if result.returncode != 0
    ]
    if failed:
        raise AssertionError("\n\n".join(failed))
    return results


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def good(n: int, ts_ms: int | None = None) -> bytes:
    ts = f", ts: {ts_ms}" if ts_ms is not None else ""
    return f"id: {n % 50 + 1}, cpu: {n % 100}.5, mem: 41.0, disk: 77.5{ts}".encode()


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    partition: int | None = None,
    timestamps_ms: list[int] | None = None,
) -> None:
    """Send and wait for every acknowledgement; any delivery error fails the test."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    for index, value in enumerate(values):
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if timestamps_ms is not None:
            extra["timestamp"] = timestamps_ms[index]
        producer.produce(topic, value, on_delivery=delivered, **extra)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still unacknowledged after 30s"
    assert not errors, errors


def run(
    kafka: KafkaResource,
    database: MetricsDatabase,
    checks: bool = False,
    instance: DagsterInstance | None = None,
    **config: Any,
) -> ExecuteInProcessResult:
    """One materialization of server_metrics (and its checks); runs that share `instance` see each
    other's materializations, as the checks' scope needs."""
    return materialize(
        [server_metrics, *(CHECKS if checks else [])],
        resources={"kafka": kafka, "metrics_db": database},
        run_config={"ops": {"server_metrics": {"config": config}}} if config else None,
        raise_on_error=False,
        instance=instance,
    )


def metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    assert result.success, failure_message(result)
    [materialization] = result.asset_materializations_for_node("server_metrics")
    return {key: value.value for key, value in materialization.metadata.items()}


def failure_message(result: ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE]
    return "\n".join(event.step_failure_data.error.to_string() for event in failures)


def table_count(database: MetricsDatabase, topic: str, dead_letters: bool = False) -> int:
    table = database.tables.dead_letters if dead_letters else database.tables.metrics
    with database.transaction() as connection:
        return connection.execute(
            select(func.count()).select_from(table).where(table.c.kafka_topic == topic)
        ).scalar_one()


def simulator_command(bootstrap: str, metrics_topic: str, logs_topic: str, truth: Path | None, *args: str) -> list[str]:
    """The simulator's command line into the test's topics, writing its ground truth to `truth` (if given)."""
    return [
        sys.executable,
        "-m",
        "simulator",
        "--bootstrap-servers",
        bootstrap,
        "--metrics-topic",
        metrics_topic,
        "--logs-topic",
        logs_topic,
        *(["--truth", str(truth)] if truth else []),
        *args,
    ]


def simulate(bootstrap: str, metrics_topic: str, logs_topic: str, truth: Path, *args: str) -> dict:
    """The simulator into the test's topics, returning its ground truth of acknowledged messages."""
    result = subprocess.run(
        simulator_command(bootstrap, metrics_topic, logs_topic, truth, "--burst", *args),
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(truth.read_text())


def committed(database: MetricsDatabase, topic: str) -> int:
    return sum(database.stored_offsets(CONSUMER, topic).values())


def assert_offsets_cover_exactly_what_is_stored(database: MetricsDatabase, topic: str, consumer: str = CONSUMER) -> int:
    """Per partition, the stored offset is the number of rows plus dead letters below it, and
    nothing is stored at or after it: no half-advanced offset, no orphan row. Returns the total."""
    stored = database.stored_offsets(consumer, topic)
    tables = database.tables
    with database.transaction() as connection:
        per_partition: Counter[int] = Counter()
        for table in (tables.metrics, tables.dead_letters):
            for partition, count, highest in connection.execute(
                select(table.c.kafka_partition, func.count(), func.max(table.c.kafka_offset))
                .where(table.c.kafka_topic == topic)
                .group_by(table.c.kafka_partition)
            ):
                per_partition[partition] += count
                assert highest < stored.get(partition, 0), (partition, highest, stored)
    for partition, next_offset in stored.items():
        assert per_partition[partition] == next_offset, (partition, per_partition, stored)
    assert set(per_partition) <= set(stored)
    return sum(per_partition.values())


def assert_matches_truth(database: MetricsDatabase, topic: str, truth: dict) -> None:
    tables = database.tables
    metrics, dead = tables.metrics, tables.dead_letters
    with database.transaction() as connection:
        per_server = dict(
            connection.execute(
                select(metrics.c.server_id, func.count())
                .where(metrics.c.kafka_topic == topic)
                .group_by(metrics.c.server_id)
            ).all()
        )
        distinct = connection.execute(
            select(func.count()).select_from(
                select(metrics.c.kafka_partition, metrics.c.kafka_offset)
                .where(metrics.c.kafka_topic == topic)
                .distinct()
                .subquery()
            )
        ).scalar_one()
        dead_letters = connection.execute(
            select(func.count()).select_from(dead).where(dead.c.kafka_topic == topic)
        ).scalar_one()
    assert {str(server): n for server, n in per_server.items()} == truth["metrics"]["valid_per_server"]
    assert distinct == sum(per_server.values()) == truth["metrics"]["valid"], "a message is in the table twice"
    assert dead_letters == truth["metrics"]["malformed_total"] + truth["metrics"]["skewed"]


# Hostile and mutated metrics values (test_hostile_input, test_chunks).
METRIC = "id: 7, cpu: 63.2, mem: 41.0, disk: 77.5, ts: 1795622403000"
ODD_CHARACTERS = [
    "\u202e",
    "\u200f",
    "\u200b",
    "\ufeff",
    "\x00",
    "\xa0",
    "\x85",
    "\u2028",
    "\u3000",
    "😀",
    "٧",
    "７",
    "²",
    "_",
    "'",
    '"',
    ";",
    "--",
    "\\",
    "\ud800",
]
"""RTL override and mark, zero-width space, BOM, NUL, NBSP, NEL, line separator, ideographic space,
emoji, Arabic-Indic and full-width digits, superscript two, and SQL punctuation; a lone surrogate."""

HOSTILE_METRICS: dict[str, bytes] = {
    "900 KB value": b"id: 7, cpu: " + b"9" * 900_000 + b", mem: 1, disk: 1",
    "900 KB of junk": random.Random(1).randbytes(900_000),
    "binary junk": random.Random(2).randbytes(4096),
    "SQL statement": b"'; DROP TABLE server_matric; --",
    "SQL in a value": b"id: 7, cpu: 1; DROP TABLE server_matric; --, mem: 1, disk: 1",
    "SQL after a value": b"id: 7, cpu: 1, mem: 1, disk: 1'); DELETE FROM sml_offsets; --",
    "RTL override": "id: \u202e7, cpu: 1, mem: 2, disk: 3".encode(),
    "NUL in a value": b"id: 7\x00, cpu: 1, mem: 2, disk: 3",
    "only NULs": b"\x00\x00\x00",
    "surrogate as bytes": b"id: 7, cpu: \xed\xa0\x80, mem: 2, disk: 3",
    "overlong UTF-8": b"id: \xc0\xb7, cpu: 1, mem: 2, disk: 3",
    "emoji id": "id: 😀, cpu: 1, mem: 2, disk: 3".encode(),
    "Arabic-Indic id": "id: ٧, cpu: 1, mem: 2, disk: 3".encode(),
    "full-width percent": "id: 7, cpu: ５０, mem: 2, disk: 3".encode(),
    "underscore in a number": b"id: 7, cpu: 5_0, mem: 2, disk: 3",
    "Arabic-Indic ts": "id: 7, cpu: 1, mem: 2, disk: 3, ts: ١٧٩٥٦٢٢٤٠٣٠٠٠".encode(),
    "BOM before the key": b"\xef\xbb\xbfid: 7, cpu: 1, mem: 2, disk: 3",
    "JSON nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "JSON 5,000-digit id": b'{"id": 1' + b"0" * 5000 + b', "cpu": 1, "mem": 1, "disk": 1}',
    "JSON with SQL keys": b'{"id": "7; DROP TABLE server_matric", "cpu": 1, "mem": 1, "disk": 1}',
}


def mutate(text: str, data: st.DataObject) -> str:
    """Insert, replace or delete one character of `text`, drawn from odd and ordinary ones."""
    position = data.draw(st.integers(0, len(text)))
    odd = data.draw(st.sampled_from(ODD_CHARACTERS) | st.characters() | st.sampled_from(string.printable))
    action = data.draw(st.sampled_from(["insert", "replace", "delete"]))
    if action == "insert":
        return text[:position] + odd + text[position:]
    if action == "replace":
        return text[:position] + odd + text[position + 1 :]
    return text[:position] + text[position + 1 :]


def encoded(text: str) -> bytes:
    """UTF-8, with a lone surrogate written as the bytes a careless producer would send."""
    return text.encode("utf-8", "surrogatepass")


def execute_ingest_job_cli(tmp_path: Path, env: dict[str, str]) -> tuple[str, list[Path]]:
    """`dagster job execute` of ingest_metrics_job in a fresh instance under tmp_path, as a user would
    run it; returns the run's output and the instance's and data dir's folders, where a secret must
    never land."""
    home, data = dagster_home(tmp_path / "dagster-home"), tmp_path / "data"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute"]
        + ["-m", "sml_assets.definitions", "-j", "ingest_metrics_job"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env, "DAGSTER_HOME": str(home), "SML_DATA_DIR": str(data)},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, "the run was expected to fail"
    return result.stdout + result.stderr, [home, data]


def assert_secret_nowhere(secret: str, output: str, folders: list[Path]) -> None:
    """The secret is neither in the output nor in any file under the folders (event log, compute
    logs, storage)."""
    assert secret not in output
    leaks = [p for f in folders for p in f.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks, f"the secret was written to {leaks}"
