"""Helpers shared by the test modules (fixtures live in conftest.py): producing to Kafka, running
server_metrics in process and reading its result, and the exactly-once oracles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult, materialize
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


def simulate(bootstrap: str, metrics_topic: str, logs_topic: str, truth: Path, *args: str) -> dict:
    """The simulator into the test's topics, returning its ground truth of acknowledged messages."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--burst",
            "--bootstrap-servers",
            bootstrap,
            "--metrics-topic",
            metrics_topic,
            "--logs-topic",
            logs_topic,
            "--truth",
            str(truth),
            *args,
        ],
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


def assert_offsets_cover_exactly_what_is_stored(
    database: MetricsDatabase, topic: str, consumer: str = CONSUMER
) -> int:
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
    assert distinct == sum(per_server.values()) == truth["metrics"]["valid"], (
        "a message is in the table twice"
    )
    assert dead_letters == truth["metrics"]["malformed_total"] + truth["metrics"]["skewed"]
