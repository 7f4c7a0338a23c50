"""Stored positions know what they belong to: a recreated topic, a new table, positions past the
end, the schema migration, and every command sml prints, run as printed. Real broker, SQLite and
the stack's PostgreSQL."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from dagster import DagsterEventType, ExecuteInProcessResult, materialize
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy import insert as sql_insert

from sml_assets.assets.metrics import server_metrics
from sml_assets.ingest import DEFAULT_CONSUMER, TopicRecreatedError, ingest_metrics
from sml_assets.migrate import main as migrate_main
from sml_assets.replay import main as replay_main
from sml_assets.resources.database import LEGACY_TOPIC_ID, MetricsDatabase, SchemaMigrationError, StoredPosition
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.faults import printed_command, recreate_topic, run_command

pytestmark = pytest.mark.integration


def good(n: int) -> bytes:
    return f"id: {n % 50 + 1}, cpu: {n % 100}.5, mem: 41.0, disk: 77.5".encode()


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[Any] = []
    for value in values:
        producer.produce(topic, value, partition=partition, on_delivery=lambda e, _m: e and errors.append(e))
    assert producer.flush(30) == 0, "messages still unacknowledged after 30s"
    assert not errors, errors


def run(kafka: KafkaResource, database: MetricsDatabase) -> ExecuteInProcessResult:
    return materialize([server_metrics], resources={"kafka": kafka, "metrics_db": database}, raise_on_error=False)


def rows_inserted(result: ExecuteInProcessResult) -> int:
    assert result.success, failure(result)
    [materialization] = result.asset_materializations_for_node("server_metrics")
    return int(materialization.metadata["rows inserted"].value)


def failure(result: ExecuteInProcessResult) -> str:
    events = [event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE]
    return "\n".join(event.step_failure_data.error.to_string() for event in events)


def rows_by_topic_id(database: MetricsDatabase, topic: str) -> dict[str, int]:
    table = database.tables.metrics
    with database.transaction() as connection:
        return dict(
            connection.execute(
                select(table.c.kafka_topic_id, func.count())
                .where(table.c.kafka_topic == topic)
                .group_by(table.c.kafka_topic_id)
            ).all()
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sml.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def databases(db_url: str, unique_name: str) -> Iterator[Callable[[str], MetricsDatabase]]:
    """Metrics databases on one URL, one per table name; tables and their positions removed after."""
    made: list[MetricsDatabase] = []

    def make(suffix: str = "") -> MetricsDatabase:
        database = MetricsDatabase(url=db_url, table=f"{unique_name[:36]}{suffix}")
        made.append(database)
        return database

    yield make
    for database in made:
        with database.transaction() as connection:
            connection.execute(text(f'DROP TABLE IF EXISTS "{database.table}"'))
            for table in (database.tables.offsets, database.tables.dead_letters):
                if database.engine().dialect.has_table(connection, table.name):
                    connection.execute(table.delete().where(table.c.kafka_topic.like(f"{unique_name}%")))
        database.engine().dispose()


def env_for(kafka_bootstrap: str, database: MetricsDatabase) -> dict[str, str]:
    """The runs' environment, except the topic and table: printed commands name those themselves."""
    return {
        "SML_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SML_METRICS_DB_URL": database.url,
        "SML_METRICS_TOPIC": "not-the-topic-of-this-test",
        "SML_METRICS_TABLE": "not_the_table_of_this_test",
    }


def test_a_recreated_topic_stops_the_run_keeps_old_rows_and_the_printed_adopt_reads_every_new_message(
    databases: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = databases("")
    topic = new_topic(partitions=1)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)
    produce(kafka_bootstrap, topic, [good(n) for n in range(30)])
    assert rows_inserted(run(kafka, database)) == 30
    old_id = kafka.topic_id(topic)

    new_id = recreate_topic(kafka_bootstrap, topic, partitions=2)
    for partition in (0, 1):
        produce(kafka_bootstrap, topic, [good(n) for n in range(40)], partition=partition)
    stopped = run(kafka, database)
    assert not stopped.success
    message = failure(stopped)
    assert f"SML_METRICS_TOPIC={topic}" in message and repr(old_id) in message and repr(new_id) in message
    assert "Nothing was read" in message
    assert rows_by_topic_id(database, topic) == {old_id: 30}

    monkeypatch.setenv("SML_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SML_METRICS_DB_URL", database.url)
    capsys.readouterr()
    assert replay_main(["show", "--topic", topic, "--table", database.table]) == 1
    shown = capsys.readouterr().out
    assert re.search(r"\n\s+0\s+0\s+40\s+30\s+unknown\n", shown), shown
    assert repr(new_id) in shown and "adopt" in shown

    adopted = run_command(printed_command(message, "adopt"), env_for(kafka_bootstrap, database))
    assert adopted.returncode == 0, adopted.stderr
    assert f"now reads topic id {new_id!r} from offsets {{0: 0, 1: 0}}" in adopted.stdout

    assert rows_inserted(run(kafka, database)) == 80
    assert rows_by_topic_id(database, topic) == {old_id: 30, new_id: 80}
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {0: 40, 1: 40}


class RecreatedWhilePlanning(MetricsDatabase):
    """Deletes the topic and creates it again while a run reads its stored positions, between the
    run's two questions for the topic's id (which go through one admin client, `KafkaSession`)."""

    bootstrap: str

    def stored_positions(self, consumer: str, topic: str, *, tables_ensured: bool = False) -> dict[int, StoredPosition]:
        recreate_topic(self.bootstrap, topic, partitions=1)
        return super().stored_positions(consumer, topic, tables_ensured=tables_ensured)


def test_a_topic_recreated_while_a_run_plans_stops_it_before_anything_is_read(
    databases: Callable[[str], MetricsDatabase], new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    database = databases("")
    topic = new_topic(partitions=1)
    produce(kafka_bootstrap, topic, [good(n) for n in range(10)])
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)
    old_id = kafka.topic_id(topic)
    racing = RecreatedWhilePlanning(url=database.url, table=database.table, bootstrap=kafka_bootstrap)
    try:
        with pytest.raises(TopicRecreatedError, match="created again while this run was planning; nothing was read"):
            ingest_metrics(kafka, racing, logging.getLogger(__name__))
    finally:
        racing.engine().dispose()
    assert kafka.topic_id(topic) != old_id
    assert rows_by_topic_id(database, topic) == {}
    assert database.stored_offsets(DEFAULT_CONSUMER, topic) == {}

    produce(kafka_bootstrap, topic, [good(n) for n in range(4)])
    assert rows_inserted(run(kafka, database)) == 4


def test_reset_deletes_only_what_can_be_read_again_unless_told_and_asks_first(
    databases: Callable[[str], MetricsDatabase],
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = databases("")
    topic = new_topic(partitions=1)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)
    produce(kafka_bootstrap, topic, [good(n) for n in range(12)])
    assert rows_inserted(run(kafka, database)) == 12
    old_id = kafka.topic_id(topic)
    new_id = recreate_topic(kafka_bootstrap, topic, partitions=1)
    produce(kafka_bootstrap, topic, [good(n) for n in range(5)])
    env = env_for(kafka_bootstrap, database)
    adopt = ["--topic", topic, "--table", database.table]
    monkeypatch.setenv("SML_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SML_METRICS_DB_URL", database.url)
    assert replay_main([*adopt, "adopt", "--topic-id", new_id]) == 0
    assert rows_inserted(run(kafka, database)) == 5

    reset = ["-m", "sml_assets.replay", "reset", "--partition", "0", "--earliest", *adopt]

    refused = run_command([sys.executable, *reset], env)
    assert refused.returncode != 0
    assert "refusing to go on without confirmation: there is no terminal to ask on" in refused.stderr
    assert "delete 5 rows of" in refused.stdout and "offsets 0..4: they are read again" in refused.stdout
    assert f"keep 12 rows of {database.table} of topic id {old_id!r}, offsets 0..11" in refused.stdout
    assert rows_by_topic_id(database, topic) == {old_id: 12, new_id: 5}

    declined = run_command([sys.executable, *reset], env, answer="n")
    assert declined.returncode == 1 and "nothing changed" in declined.stdout
    assert rows_by_topic_id(database, topic) == {old_id: 12, new_id: 5}

    confirmed = run_command([sys.executable, *reset], env, answer="y")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "stored offset 5 -> 0; 5 rows and dead letters at or after it removed" in confirmed.stdout
    assert rows_by_topic_id(database, topic) == {old_id: 12}
    assert rows_inserted(run(kafka, database)) == 5

    capsys.readouterr()
    assert replay_main(["reset", *adopt, "--partition", "0", "--offset", "2", "--yes", "--delete-unrecoverable"]) == 0
    out = capsys.readouterr().out
    assert "CANNOT be read again (--delete-unrecoverable)" in out
    assert rows_by_topic_id(database, topic) == {old_id: 2, new_id: 2}
    assert rows_inserted(run(kafka, database)) == 3


def test_a_new_table_starts_from_the_earliest_retained_offset_and_the_old_table_keeps_its_rows(
    databases: Callable[[str], MetricsDatabase], new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    first, second = databases("_a"), databases("_b")
    topic = new_topic(partitions=2)
    for partition in (0, 1):
        produce(kafka_bootstrap, topic, [good(n) for n in range(25)] + [b"not a metric"], partition=partition)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)
    assert rows_inserted(run(kafka, first)) == 50
    assert rows_inserted(run(kafka, first)) == 0

    switched = run(kafka, second)
    assert rows_inserted(switched) == 50
    [materialization] = switched.asset_materializations_for_node("server_metrics")
    assert materialization.metadata["dead letters"].value == 2
    assert materialization.metadata["started at earliest retained offsets"].value is True
    assert materialization.metadata["topic id"].value == kafka.topic_id(topic)
    assert rows_inserted(run(kafka, second)) == 0
    assert (
        second.stored_offsets(DEFAULT_CONSUMER, topic)
        == first.stored_offsets(DEFAULT_CONSUMER, topic)
        == {
            0: 26,
            1: 26,
        }
    )
    assert sum(rows_by_topic_id(first, topic).values()) == 50


def test_offsets_past_the_end_name_every_partition_and_the_printed_reset_runs_as_printed(
    databases: Callable[[str], MetricsDatabase], new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    database = databases("")
    topic = new_topic(partitions=3)
    for partition in (0, 1, 2):
        produce(kafka_bootstrap, topic, [good(n) for n in range(6)], partition=partition)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)
    assert rows_inserted(run(kafka, database)) == 18
    topic_id = kafka.topic_id(topic)
    for partition in (0, 2):  # what a broker restored from an older disk leaves behind
        database.reset_offset(DEFAULT_CONSUMER, topic, partition, 50, topic_id)
    stopped = run(kafka, database)
    assert not stopped.success
    message = failure(stopped)
    assert "[0] stored 50 > end 6, [2] stored 50 > end 6" in message
    command = printed_command(message, "reset")
    assert command[-5:] == ["--partition", "0", "--partition", "2", "--earliest"]

    done = run_command(command, env_for(kafka_bootstrap, database), answer="y")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("rows and dead letters at or after it removed") == 2
    assert rows_inserted(run(kafka, database)) == 12
    assert sum(rows_by_topic_id(database, topic).values()) == 18


def legacy_tables(database: MetricsDatabase) -> tuple[Table, Table, Table]:
    """The three tables as sml created them before it recorded topic ids and target tables."""
    metadata = MetaData()
    metrics = Table(
        database.table,
        metadata,
        Column("server_id", Integer, nullable=False),
        Column("cpu", Float, nullable=False),
        Column("mem", Float, nullable=False),
        Column("disk", Float, nullable=False),
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("ingested_at", DateTime(timezone=True), nullable=False),
    )
    offsets = Table(
        "sml_offsets",
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("kafka_topic", String(249), primary_key=True),
        Column("kafka_partition", Integer, primary_key=True),
        Column("next_offset", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    dead = Table(
        "sml_dead_letters",
        metadata,
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("raw_value", String(4000), nullable=False),
        Column("reason", String(4000), nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
    )
    return metrics, offsets, dead


@pytest.fixture
def private_url(db_url: str, unique_name: str) -> Iterator[str]:
    """A database of this test's own: a fresh SQLite file, or a PostgreSQL schema dropped afterwards."""
    if db_url.startswith("sqlite"):
        yield db_url
        return
    admin = MetricsDatabase(url=db_url)
    with admin.transaction() as connection:
        connection.execute(text(f'CREATE SCHEMA "{unique_name}"'))
    try:
        yield f"{db_url}?options=-csearch_path%3D{unique_name}"
    finally:
        with admin.transaction() as connection:
            connection.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
        admin.engine().dispose()


def test_tables_of_an_older_sml_are_refused_until_migrate_which_ties_their_rows_to_the_right_topic(
    private_url: str,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import UTC, datetime

    database = MetricsDatabase(url=private_url, table="server_matric")
    topic = new_topic(partitions=1)
    gone = f"{topic}-deleted-long-ago"
    produce(kafka_bootstrap, topic, [good(n) for n in range(8)])
    metrics, offsets, dead = legacy_tables(database)
    now = datetime.now(UTC)
    with database.engine().begin() as connection:
        metrics.metadata.create_all(connection)
        for name, count in ((topic, 5), (gone, 3)):
            connection.execute(
                sql_insert(metrics),
                [
                    {
                        "server_id": 1,
                        "cpu": 1.0,
                        "mem": 1.0,
                        "disk": 1.0,
                        "event_time": now,
                        "kafka_topic": name,
                        "kafka_partition": 0,
                        "kafka_offset": offset,
                        "ingested_at": now,
                    }
                    for offset in range(count)
                ],
            )
            connection.execute(
                sql_insert(offsets).values(
                    consumer=DEFAULT_CONSUMER,
                    kafka_topic=name,
                    kafka_partition=0,
                    next_offset=count,
                    updated_at=now,
                )
            )
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic)

    refused = run(kafka, database)
    assert not refused.success
    message = failure(refused)
    assert "table server_matric at" in message and "has no column kafka_topic_id" in message
    assert "run 'python -m sml_assets.migrate'" in message
    with pytest.raises(SchemaMigrationError, match="has no column"):
        database.ensure_tables()

    monkeypatch.setenv("SML_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SML_METRICS_DB_URL", private_url)
    monkeypatch.setenv("SML_METRICS_TABLE", "server_matric")
    capsys.readouterr()
    assert migrate_main([]) == 0
    out = capsys.readouterr().out
    topic_id = kafka.topic_id(topic)
    assert f"{topic}: rows and positions are marked as of its current topic id {topic_id!r}" in out
    assert f"{gone}: no longer exists" in out
    assert rows_by_topic_id(database, topic) == {topic_id: 5}
    assert rows_by_topic_id(database, gone) == {LEGACY_TOPIC_ID: 3}

    assert rows_inserted(run(kafka, database)) == 3
    assert rows_by_topic_id(database, topic) == {topic_id: 8}
    assert migrate_main([]) == 0
    assert "nothing to migrate" in capsys.readouterr().out
    database.engine().dispose()


@pytest.mark.parametrize(
    "argv",
    [
        ["--topic", "T", "--table", "t", "reset", "--partition", "0", "--earliest"],
        ["reset", "--topic", "T", "--table", "t", "--partition", "0", "--earliest"],
        ["--topic", "T", "reset", "--partition", "0", "--earliest", "--table", "t"],
    ],
)
def test_options_go_before_or_after_the_command(argv: list[str]) -> None:
    from sml_assets.replay import build_parser

    args = build_parser().parse_args(argv)
    assert (args.topic, args.table, args.consumer, args.partition) == ("T", "t", DEFAULT_CONSUMER, [0])
