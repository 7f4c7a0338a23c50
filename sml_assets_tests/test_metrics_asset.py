"""server_metrics end to end: the real broker, SQLite and PostgreSQL, materialized through Dagster."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from dagster import (
    AssetCheckSeverity,
    AssetSelection,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorDefinition,
    SensorResult,
    build_sensor_context,
    materialize,
)
from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, func, insert, select, update

from sml_assets import ingest, parsing
from sml_assets.assets import metrics as metrics_assets
from sml_assets.assets.metrics import server_metrics
from sml_assets.assets.topics import LOGS_TOPIC_KEY, METRICS_TOPIC_KEY, snapshot_metrics_topic
from sml_assets.automation import build_metrics_backlog_sensor, ingest_metrics_job
from sml_assets.ingest import DEFAULT_CONSUMER
from sml_assets.migrate import main as migrate_main
from sml_assets.replay import main as replay_main
from sml_assets.resources import bulk
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.resources.tables import UtcDateTime
from sml_assets_tests.faults import start_metrics_run, wait_until
from sml_assets_tests.helpers import CHECKS, failure_message, good, metadata, now_ms, produce, run, table_count

pytestmark = pytest.mark.integration

MALFORMED = {
    b"": "empty message",
    b"id: 7, cpu: high, mem: 41.0, disk: 77.5": "cpu 'high' is not a number",
    b"id: 7, cpu: 163.2, mem: 41.0, disk: 77.5": "cpu 163.2 is out of range 0..100",
    b"id: 7, cpu: \xff\xfe, mem: 1, disk: 2": "not UTF-8: byte 0xff at position 12",
    b"id: 7, cpu: 63.2, mem": "field 'mem' has no ':' (expected 'key: value')",
}


def test_counts_match_what_was_produced_across_partitions_and_a_second_run_adds_nothing(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(partitions=3)
    for partition in range(3):
        produce(kafka_bootstrap, topic, [good(n) for n in range(100 + partition)], partition=partition)
    produce(kafka_bootstrap, topic, list(MALFORMED), partition=1)
    kafka = kafka_for(topic)

    first = metadata(run(kafka, database, chunk_size=64))
    assert (first["rows inserted"], first["dead letters"], first["lag left"]) == (303, len(MALFORMED), 0)
    assert table_count(database, topic) == 303
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 100, 1: 101 + len(MALFORMED), 2: 102}
    assert "| 1 | 0 | 106 | 106 | 0 |" in first["offsets"]
    assert first["table"].endswith(database.masked_url) and first["rows/s"] > 0

    with database.transaction() as connection:
        rejects = dict(
            connection.execute(
                select(database.tables.dead_letters.c.raw_value, database.tables.dead_letters.c.reason).where(
                    database.tables.dead_letters.c.kafka_topic == topic
                )
            ).all()
        )
    assert rejects == {raw.decode("utf-8", errors="backslashreplace"): reason for raw, reason in MALFORMED.items()}

    second = metadata(run(kafka, database))
    assert (second["rows inserted"], second["dead letters"]) == (0, 0)
    assert table_count(database, topic) == 303


def test_chunks_handed_over_in_several_batches_store_every_message_once(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a chunk goes to the server in consume batches of SEND_BATCH (one COPY); here
    batches of 7 in chunks of 50, dead letters among them, so most chunks span several batches."""
    monkeypatch.setattr(ingest, "SEND_BATCH", 7)
    sent: list[int] = []
    send = bulk.CopyStream.send
    monkeypatch.setattr(bulk.CopyStream, "send", lambda stream, rows: sent.append(rows.count) or send(stream, rows))
    topic = new_topic(partitions=2)
    for partition in range(2):
        values = [good(n) for n in range(120)]
        values[33 + partition] = b"id: 7, cpu: high, mem: 41.0, disk: 77.5"
        produce(kafka_bootstrap, topic, values, partition=partition)
    found = metadata(run(kafka_for(topic), database, chunk_size=50))
    assert (found["rows inserted"], found["dead letters"], found["lag left"]) == (238, 2, 0)
    if database.engine().dialect.name == "postgresql":
        assert sum(sent) == 238 and max(sent) <= 7, sent
    else:
        assert sent == []
    assert table_count(database, topic) == 238
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 120, 1: 120}
    assert metadata(run(kafka_for(topic), database, chunk_size=50))["rows inserted"] == 0


def test_a_run_without_a_chunk_size_takes_its_database_s_default(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streamed chunks (PostgreSQL) hold no rows on the client and get the larger size."""
    monkeypatch.setattr(ingest, "STREAMED_CHUNK_SIZE", 40)
    monkeypatch.setattr(ingest, "DEFAULT_CHUNK_SIZE", 25)
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n) for n in range(100)])
    found = metadata(run(kafka_for(topic), database))
    streamed = database.engine().dialect.name == "postgresql"
    assert (found["rows inserted"], found["chunks"], found["messages per chunk"]) == (
        (100, 3, 40) if streamed else (100, 4, 25)
    )


def test_a_run_asks_the_broker_through_one_admin_client_and_reads_through_one_consumer(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new client's first request pays its connection and metadata (10-25 ms beside a run, a new
    consumer's first end offsets about 50 ms): the topic's id and partitions, its offsets, its id
    again and the lag left all go through one admin client (`KafkaSession`)."""
    topic = new_topic(partitions=3)
    for partition in range(3):
        produce(kafka_bootstrap, topic, [good(n) for n in range(10 + partition)], partition=partition)
    kafka = kafka_for(topic)
    described = kafka.describe_topic(topic)
    assert (described.topic_id, described.partitions) == (kafka.topic_id(topic), (0, 1, 2))
    assert kafka.watermarks(topic, described.partitions) == kafka.watermarks(topic)
    assert {p: marks.high for p, marks in kafka.watermarks(topic, [1]).items()} == {1: 11}

    made: Counter[str] = Counter()
    for kind in ("admin", "consumer", "session"):
        made_by = getattr(KafkaResource, kind)

        def counted(self: KafkaResource, *args: Any, _made_by: Any = made_by, _kind: str = kind, **kwargs: Any) -> Any:
            made[_kind] += 1
            return _made_by(self, *args, **kwargs)

        monkeypatch.setattr(KafkaResource, kind, counted)
    found = metadata(run(kafka, database))
    assert (found["rows inserted"], found["lag left"]) == (33, 0)
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 10, 1: 11, 2: 12}
    assert made == {"session": 1, "admin": 1, "consumer": 1}


def test_end_offsets_are_a_read_committed_consumer_s_the_oldest_kept_and_the_last_stable_one(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    """`watermarks` asks an admin client (`list_offsets`): its figures are those a consumer of sml
    gets, the low one past deleted records, the high one before a transaction still open, and a
    run reads exactly the messages between them."""
    topic = new_topic(partitions=2)
    produce(kafka_bootstrap, topic, [good(n) for n in range(20)], partition=0)
    produce(kafka_bootstrap, topic, [good(n) for n in range(5)], partition=1)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 8)], request_timeout=30).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{topic}-open"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for n in range(7):
        producer.produce(topic, good(n), partition=1)
    assert producer.flush(30) == 0
    kafka = kafka_for(topic)
    consumer = kafka.consumer("sml-test-watermarks")
    try:
        seen = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False) for p in (0, 1)}
    finally:
        consumer.close()
    assert seen == {0: (8, 20), 1: (0, 5)}
    assert {p: (marks.low, marks.high) for p, marks in kafka.watermarks(topic).items()} == seen

    found = metadata(run(kafka, database))
    assert (found["rows inserted"], found["lag left"]) == (12 + 5, 0)
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 20, 1: 5}
    producer.abort_transaction(30)


def test_transaction_markers_and_aborted_messages_are_read_past_and_the_lag_reaches_zero(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    """A transactional producer's commit or abort takes an offset of its own, and a read-committed
    consumer returns neither it nor an aborted transaction's messages: a run moves its stored offset
    past them, or else every run waited `timeout_s` for an offset that never comes, with a lag of 1."""
    topic = new_topic(partitions=1)
    kafka = kafka_for(topic)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{topic}-tx"})
    producer.init_transactions(30)

    def transaction(count: int, commit: bool, end: int) -> None:
        producer.begin_transaction()
        for n in range(count):
            producer.produce(topic, good(n), partition=0)
        assert producer.flush(30) == 0  # in the log: an abort drops what was not sent yet
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
        wait_until(lambda: kafka.watermarks(topic)[0].high == end, 30, f"{topic}'s marker written, end offset {end}")

    transaction(5, commit=True, end=6)  # offsets 0-4, the commit at 5
    first = metadata(run(kafka, database))
    assert (first["rows inserted"], first["lag left"]) == (5, 0)
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 6}

    transaction(4, commit=False, end=11)  # 6-9 aborted, the abort at 10
    produce(kafka_bootstrap, topic, [good(n) for n in range(3)])  # 11-13
    transaction(2, commit=False, end=17)  # 14-15 aborted, the abort at 16
    second = metadata(run(kafka, database))
    assert (second["rows inserted"], second["lag left"]) == (3, 0)
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 17}
    assert table_count(database, topic) == 8
    third = metadata(run(kafka, database))
    assert (third["rows inserted"], third["lag left"]) == (0, 0)


def test_the_cap_limits_one_run_and_the_next_run_continues_where_it_stopped(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(partitions=2)
    produce(kafka_bootstrap, topic, [good(n) for n in range(150)], partition=0)
    produce(kafka_bootstrap, topic, [good(n) for n in range(100)], partition=1)
    kafka = kafka_for(topic)
    counts = []
    for _ in range(3):
        report = metadata(run(kafka, database, max_messages=100, chunk_size=30))
        counts.append((report["rows inserted"], report["lag left"], report["capped"]))
    assert counts == [(100, 150, True), (100, 50, True), (50, 0, False)]
    assert table_count(database, topic) == 250
    with database.transaction() as connection:
        distinct = connection.execute(
            select(func.count()).select_from(
                select(database.tables.metrics.c.kafka_partition, database.tables.metrics.c.kafka_offset)
                .where(database.tables.metrics.c.kafka_topic == topic)
                .distinct()
                .subquery()
            )
        ).scalar_one()
    assert distinct == 250


def test_checks_pass_on_good_data(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(200)] + [b"not a metric"])
    result = run(kafka_for(topic), database, checks=True)
    assert result.success, failure_message(result)
    outcomes = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert outcomes == {
        "no_duplicate_messages": True,
        "values_in_range": True,
        "dead_letter_ratio": True,
        "newest_row_is_fresh": True,
    }


def test_dead_letter_ratio_warns_above_the_threshold(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(10)] + [b"broken"] * 2)
    result = materialize(
        [server_metrics, metrics_assets.dead_letter_ratio],
        resources={"kafka": kafka_for(topic), "metrics_db": database},
        run_config={"ops": {"server_metrics_dead_letter_ratio": {"config": {"max_ratio": 0.1}}}},
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.metadata["dead letters"].value == 2


def test_checks_fail_on_a_duplicate_and_an_out_of_range_row_among_the_offsets_the_run_read(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    """A legacy table without the unique key, seeded with a copy of offset 0 and an out-of-range row
    at offset 1 (a dead letter, so the run writes no row there): both inside the run's offsets."""
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(0, now_ms()), b"not a metric", good(2, now_ms())])
    legacy = Table(
        database.table,
        MetaData(),
        Column("server_id", Integer),
        Column("cpu", Float),
        Column("mem", Float),
        Column("disk", Float),
        Column("event_time", UtcDateTime),
        Column("kafka_topic", String(249)),
        Column("kafka_partition", Integer),
        Column("kafka_offset", BigInteger),  # as sml has always made it (binary COPY writes int8)
        Column("ingested_at", UtcDateTime),
        Column("kafka_topic_id", String(32), server_default=""),
    )
    legacy.create(database.engine())
    stamp = datetime.now(UTC)
    seeded = {
        "server_id": 1,
        "cpu": 1.0,
        "mem": 2.0,
        "disk": 3.0,
        "event_time": stamp,
        "kafka_topic": topic,
        "kafka_partition": 0,
        "ingested_at": stamp,
        "kafka_topic_id": kafka_for(topic).topic_id(topic),
    }
    with database.transaction() as connection:
        connection.execute(insert(legacy), [{**seeded, "kafka_offset": 0}, {**seeded, "kafka_offset": 1, "cpu": 140.0}])
    result = run(kafka_for(topic), database, checks=True)
    outcomes = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not outcomes["no_duplicate_messages"].passed
    assert outcomes["no_duplicate_messages"].metadata["duplicated messages"].value == 1
    assert f"{topic}[0]@0: 2 copies" in outcomes["no_duplicate_messages"].metadata["examples"].value
    assert not outcomes["values_in_range"].passed
    assert outcomes["values_in_range"].metadata["rows out of range"].value == 1
    assert outcomes["values_in_range"].metadata["messages in scope"].value == 3


def test_checks_scan_what_the_newest_run_added_not_the_whole_table(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    """A bad row the previous run's checks already reported is not reported again; the next run's
    checks cover from where the previous run ended to where this one ended."""
    topic = new_topic(partitions=2)
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(5)], partition=0)
    instance = DagsterInstance.ephemeral()
    first = run(kafka_for(topic), database, checks=True, instance=instance)
    assert all(e.passed for e in first.get_asset_check_evaluations()), failure_message(first)
    table = database.tables.metrics
    with database.transaction() as connection:
        connection.execute(update(table).where(table.c.kafka_offset == 2).values(cpu=150.0))
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(4)], partition=1)
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(3)], partition=0)
    second = run(kafka_for(topic), database, checks=True, instance=instance)
    outcomes = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert outcomes["values_in_range"].passed
    assert outcomes["values_in_range"].metadata["messages in scope"].value == 7
    assert outcomes["values_in_range"].metadata["offsets checked"].value == f"{topic} [0: 5..8, 1: 0..4]"
    assert outcomes["dead_letter_ratio"].metadata["rows"].value == 12
    assert outcomes["dead_letter_ratio"].metadata["runs"].value == 2
    with database.transaction() as connection:
        connection.execute(
            update(table).where(table.c.kafka_partition == 1, table.c.kafka_offset == 3).values(mem=-1.0)
        )
    third = materialize(
        [server_metrics, *CHECKS],
        resources={"kafka": kafka_for(topic), "metrics_db": database},
        selection=AssetSelection.checks(metrics_assets.values_in_range),
        instance=instance,
    )
    [evaluation] = third.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["rows out of range"].value == 1


def evaluate(
    sensor: SensorDefinition, instance: DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> SensorResult:
    with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_sensor_skips_below_the_threshold_fires_at_it_and_not_while_a_run_is_in_flight(
    database: MetricsDatabase,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = new_topic(partitions=2)
    # A logs topic of its own: the sensor also observes the logs topic, which `make run` writes to.
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, logs_topic=new_topic(), timeout_s=10)
    database.ensure_tables()
    sensor = build_metrics_backlog_sensor(threshold=1000)
    instance = DagsterInstance.ephemeral()
    resources = {"kafka": kafka, "metrics_db": database, "storage": LocalStorage(data_dir=str(tmp_path))}

    produce(kafka_bootstrap, topic, [good(n) for n in range(500)], partition=0)
    produce(kafka_bootstrap, topic, [good(n) for n in range(499)], partition=1)
    below = evaluate(sensor, instance, resources, cursor=None)
    assert isinstance(below, SensorResult) and not below.run_requests
    assert below.skip_reason is not None and below.skip_reason.skip_message.startswith("999 metrics messages wait")
    assert [event.asset_key for event in below.asset_events] == [METRICS_TOPIC_KEY, LOGS_TOPIC_KEY]

    produce(kafka_bootstrap, topic, [good(1)], partition=1)
    fired = evaluate(sensor, instance, resources, cursor=below.cursor)
    [request] = fired.run_requests
    assert isinstance(request, RunRequest) and request.tags["sml/backlog"] == "1000"
    assert fired.cursor is not None and '"metrics_backlog": 1000' in fired.cursor

    instance.add_run(
        DagsterRun(job_name=ingest_metrics_job.name, run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    )
    busy = evaluate(sensor, instance, resources, cursor=fired.cursor)
    assert not busy.run_requests and "still in flight" in busy.skip_reason.skip_message
    assert busy.asset_events == []

    metadata(run(kafka, database))
    drained = snapshot_metrics_topic(kafka, database)
    assert drained.backlog == 0


def test_sensor_skips_with_the_reason_when_the_broker_is_down(database: MetricsDatabase, tmp_path: Path) -> None:
    kafka = KafkaResource(bootstrap_servers="127.0.0.1:1", metrics_topic="nowhere", timeout_s=1)
    result = evaluate(
        build_metrics_backlog_sensor(),
        DagsterInstance.ephemeral(),
        {"kafka": kafka, "metrics_db": database, "storage": LocalStorage(data_dir=str(tmp_path))},
        None,
    )
    assert not result.run_requests
    assert "SML_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 did not answer" in result.skip_reason.skip_message


def test_unreachable_broker_fails_the_run_naming_the_variable_and_leaves_offsets_untouched(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n) for n in range(20)])
    metadata(run(kafka_for(topic), database))
    produce(kafka_bootstrap, topic, [good(n) for n in range(20)])
    down = KafkaResource(bootstrap_servers="127.0.0.1:1", metrics_topic=topic, timeout_s=2)
    result = run(down, database)
    assert not result.success
    assert "SML_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 did not answer within 2s" in failure_message(result)
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 20}
    assert table_count(database, topic) == 20


def test_unreachable_database_fails_the_run_with_the_password_masked_everywhere(
    kafka_for: Callable[[str], KafkaResource], new_topic: Callable[..., str], stack: None
) -> None:
    topic = new_topic()
    unreachable = MetricsDatabase(url="postgresql+psycopg://sml:s3cret-pw@127.0.0.1:1/sml", connect_timeout_s=2)
    result = run(kafka_for(topic), unreachable)
    assert not result.success
    assert "SML_METRICS_DB_URL=postgresql+psycopg://sml:***@127.0.0.1:1/sml could not be reached" in failure_message(
        result
    )
    assert not any("s3cret-pw" in str(event) for event in result.all_events)


def test_replay_by_offset_and_by_timestamp_reingests_exactly_once(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = new_topic()
    base = now_ms() - 3_600_000
    produce(
        kafka_bootstrap,
        topic,
        [good(n) for n in range(10)],
        timestamps_ms=[base + n * 60_000 for n in range(10)],
    )
    kafka = kafka_for(topic)
    metadata(run(kafka, database))
    monkeypatch.setenv("SML_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SML_METRICS_TOPIC", topic)
    monkeypatch.setenv("SML_METRICS_DB_URL", database.url)
    monkeypatch.setenv("SML_METRICS_TABLE", database.table)

    assert replay_main(["reset", "--partition", "0", "--offset", "6", "--yes"]) == 0
    assert "stored offset 10 -> 6; 4 rows and dead letters at or after it removed" in capsys.readouterr().out
    assert table_count(database, topic) == 6
    assert metadata(run(kafka, database))["rows inserted"] == 4

    stamp = datetime.fromtimestamp((base + 3 * 60_000) / 1000, UTC).isoformat()
    assert replay_main(["reset", "--partition", "0", "--timestamp", stamp, "--yes"]) == 0
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 3}
    assert metadata(run(kafka, database))["rows inserted"] == 7
    assert table_count(database, topic) == 10

    assert replay_main(["show"]) == 0
    assert "        0          0         10         10          0" in capsys.readouterr().out


def test_rerun_after_sigkill_mid_run_leaves_every_message_exactly_once(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(partitions=2)
    for partition in range(2):
        produce(kafka_bootstrap, topic, [good(n) for n in range(10_000)], partition=partition)
    database.ensure_tables()
    process = start_metrics_run(kafka_bootstrap, topic, database, DEFAULT_CONSUMER, 50)
    wait_until(
        lambda: database.stored_offsets(DEFAULT_CONSUMER, topic) or process.poll() is not None,
        120,
        "a first chunk committed",
        poll_s=0.001,
    )
    assert process.poll() is None, "the run ended before its first chunk was seen"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    partial = table_count(database, topic)
    assert 0 < partial < 20_000, partial

    assert metadata(run(kafka_for(topic), database))["rows inserted"] == 20_000 - partial
    assert table_count(database, topic) == 20_000
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 10_000, 1: 10_000}


def test_topic_observation_reports_end_offsets_and_lag(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(partitions=2)
    produce(kafka_bootstrap, topic, [good(n) for n in range(7)], partition=1)
    snapshot = snapshot_metrics_topic(kafka_for(topic), database)
    assert (snapshot.end_total, snapshot.backlog, snapshot.data_version.value) == (7, 7, "7")
    shown = {key: value.value for key, value in snapshot.metadata().items()}
    assert shown["consumer lag"] == 7 and "| 1 | 0 | 7 | 0 | 7 |" in shown["offsets"]


def test_ingest_metrics_job_runs_the_asset_and_its_checks_with_the_concurrency_tag(
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n, now_ms()) for n in range(50)])
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'job.db'}")
    defs = Definitions(
        assets=[server_metrics],
        asset_checks=CHECKS,
        jobs=[ingest_metrics_job],
        resources={"kafka": kafka_for(topic), "metrics_db": database},
    )
    result = defs.resolve_job_def(ingest_metrics_job.name).execute_in_process()
    assert result.success
    assert result.dagster_run.tags["sml/concurrency_key"] == "ingest_metrics"
    assert {e.check_name for e in result.get_asset_check_evaluations() if e.passed} == {
        c.check_key.name for c in CHECKS
    }
    assert table_count(database, topic) == 50


def test_a_clock_ahead_is_a_dead_letter_and_the_check_names_its_server(
    new_topic: Callable[..., str], kafka_for: Callable[[str], KafkaResource], database: MetricsDatabase
) -> None:
    """Issue 14: a `ts` a year ahead of its record timestamp is refused, not stored as the newest row;
    one a minute ahead of a record timestamp set in the future is refused against the clock."""
    from sml_assets.assets import clock_skew

    topic = new_topic()
    now = now_ms()
    year_ms = 365 * 24 * 3600 * 1000
    ordinary = [good(n, now - 1000) for n in range(60)]
    ahead = [f"id: 7, cpu: 1.0, mem: 2.0, disk: 3.0, ts: {now + year_ms}".encode()] * 3
    within = f"id: 8, cpu: 1.0, mem: 2.0, disk: 3.0, ts: {now + 30_000}".encode()
    produce(kafka_for(topic).bootstrap_servers, topic, [*ordinary, *ahead, within])
    clock = f"id: 9, cpu: 1.0, mem: 2.0, disk: 3.0, ts: {now + 600_000}".encode()
    produce(kafka_for(topic).bootstrap_servers, topic, [clock], timestamps_ms=[now + 590_000])

    result = materialize(
        [server_metrics, metrics_assets.newest_row_is_fresh, clock_skew.metrics_clocks_are_right],
        resources={"kafka": kafka_for(topic), "metrics_db": database},
    )
    shown = metadata(result)
    assert (shown["rows inserted"], shown["dead letters"]) == (61, 4)
    assert shown["dead letters by reason"] == {
        "event time s ahead of the record timestamp": 3,
        "event time s ahead of the clock": 1,
    }
    letters = database.tables.dead_letters
    with database.transaction() as connection:
        reasons = sorted(connection.execute(select(letters.c.reason).where(letters.c.kafka_topic == topic)).scalars())
        newest = connection.execute(select(func.max(database.tables.metrics.c.event_time))).scalar_one()
    [clock_reason] = [reason for reason in reasons if reason.endswith(" s ahead of the clock")]
    assert 540 <= int(clock_reason.split()[2]) <= 600, clock_reason
    assert all(
        reason.startswith("event time 31535") and reason.endswith(" s ahead of the record timestamp")
        for reason in reasons
        if reason != clock_reason
    ), reasons
    assert newest <= datetime.now(UTC) + timedelta(seconds=60), "a row from beyond the tolerance was stored"
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    skew = checks["metrics_clocks_are_right"]
    assert not skew.passed and skew.severity == AssetCheckSeverity.WARN
    assert "server 7 (3)" in skew.description and "server 9 (1)" in skew.description
    assert "server 8" not in skew.description
    assert skew.metadata["refused for clock skew"].value == 4 and skew.metadata["events"].value == 65


@dataclass(frozen=True, slots=True)
class RecordWithNet:
    """`MetricRecord` as it would be after adding a `net` field (the one edit that takes)."""

    server_id: int
    cpu: float
    mem: float
    disk: float
    net: float
    event_time: datetime


def test_a_new_metric_field_stops_the_run_naming_the_migration_then_is_stored_after_it(
    database: MetricsDatabase,
    kafka_for: Callable[[str], KafkaResource],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = new_topic()
    kafka = kafka_for(topic)
    produce(kafka_bootstrap, topic, [good(1)])
    assert metadata(run(kafka, database))["rows inserted"] == 1

    fields_with_net = (*parsing.METRIC_FIELDS, "net")
    monkeypatch.setattr(parsing, "MetricRecord", RecordWithNet)
    for module in (parsing, metrics_assets):  # chunks and bulk read parsing.METRIC_FIELDS per batch
        monkeypatch.setattr(module, "METRIC_FIELDS", fields_with_net)
    produce(kafka_bootstrap, topic, [b"id: 3, cpu: 1.5, mem: 2.5, disk: 3.5, net: 4.5"])
    widened = MetricsDatabase(url=database.url, table=database.table)

    refused = run(kafka, widened)
    assert not refused.success
    message = failure_message(refused)
    assert f"table {database.table} at SML_METRICS_DB_URL={database.masked_url} has no column net" in message
    assert "run 'python -m sml_assets.migrate'" in message
    assert widened.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 1}

    monkeypatch.setenv("SML_METRICS_DB_URL", database.url)
    monkeypatch.setenv("SML_METRICS_TABLE", database.table)
    assert migrate_main([]) == 0
    assert f"migrated {database.table}: added net" in capsys.readouterr().out
    assert migrate_main([]) == 0
    assert "nothing to migrate" in capsys.readouterr().out

    after = run(kafka, widened, checks=True)
    assert metadata(after)["rows inserted"] == 1
    assert all(e.passed for e in after.get_asset_check_evaluations())
    with widened.transaction() as connection:
        stored = connection.execute(
            select(widened.tables.metrics.c.server_id, widened.tables.metrics.c.net)
            .where(widened.tables.metrics.c.kafka_topic == topic)
            .order_by(widened.tables.metrics.c.kafka_offset)
        ).all()
    assert [tuple(row) for row in stored] == [(2, None), (3, 4.5)]
