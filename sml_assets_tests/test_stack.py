"""The local stack answers for real: Kafka, WebHDFS, PostgreSQL, Spark's Kafka source, Definitions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from unittest import mock

import pytest

from sml_assets_tests.conftest import HDFS_TEST_ROOT, REPO_ROOT

pytestmark = pytest.mark.integration


def test_kafka_round_trips_a_message(kafka_bootstrap: str, new_topic) -> None:
    from confluent_kafka import Consumer, Producer

    topic = new_topic(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    payload = f"id: 1, cpu: 1.0, mem: 2.0, disk: 3.0, probe: {uuid.uuid4()}".encode()
    producer.produce(topic, payload, key=b"1")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received = None
    deadline = time.monotonic() + 30
    try:
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received = message.value()
    finally:
        consumer.close()
    assert received == payload, f"the produced message from {topic}, within 30s (got {received!r})"


def test_webhdfs_creates_renames_and_reads_a_file(hdfs_url: str, unique_name: str) -> None:
    from hdfs import InsecureClient

    client = InsecureClient(hdfs_url, user="root")
    base = f"{HDFS_TEST_ROOT}/{unique_name}"
    try:
        client.makedirs(base)
        client.write(f"{base}/a.csv", data=b"x,y\n1,2\n", overwrite=True)
        client.rename(f"{base}/a.csv", f"{base}/b.csv")
        with client.read(f"{base}/b.csv") as reader:
            assert reader.read() == b"x,y\n1,2\n"
        assert client.status(f"{base}/a.csv", strict=False) is None
    finally:
        client.delete(base, recursive=True)


def test_postgres_accepts_sqlalchemy_connections(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT current_database(), 40 + 2")).one() == ("sml", 42)
    engine.dispose()


def test_spark_kafka_source_reads_produced_messages(
    kafka_bootstrap: str, new_topic, spark_jars_dir: Path, tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from pyspark.sql import SparkSession

    os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    topic = new_topic(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    lines = [f"line {i}" for i in range(50)]
    for i, line in enumerate(lines):
        producer.produce(topic, line.encode(), key=str(i).encode())
    assert producer.flush(30) == 0

    jars = ",".join(str(p) for p in sorted(spark_jars_dir.glob("*.jar")))
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", jars)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value")
    )
    query = (
        stream.writeStream.format("memory")
        .queryName(topic.replace("-", "_"))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(300)
    rows = spark.sql(f"SELECT value FROM {topic.replace('-', '_')}").collect()
    assert sorted(r.value for r in rows) == sorted(lines)


def test_definitions_load() -> None:
    from sml_assets.definitions import defs

    repository = defs.get_repository_def()
    assert {"kafka", "metrics_db", "spark", "hdfs", "storage"} <= set(repository.get_top_level_resources())


def status_in_empty_data_dir(data_dir: Path, *args: str) -> dict[str, str]:
    """`stack.py status` over a data dir where nothing runs: exit code 3 (something is down), and
    each service's state word."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), "status", *args],
        env={**os.environ, "SML_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    return {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}


def test_stack_status_reports_stopped_services_as_stopped(tmp_path: Path) -> None:
    """A data dir where nothing was started: every service is DOWN, the exit code says so, and
    asking leaves nothing behind (not even PostgreSQL's fallback folder for unreachable dirs)."""
    postgres_home = Path("/var/lib/postgresql")
    before = sorted(postgres_home.iterdir()) if postgres_home.is_dir() else []
    assert status_in_empty_data_dir(tmp_path, "kafka", "hdfs", "postgres") == {
        "kafka": "DOWN",
        "hdfs": "DOWN",
        "postgres": "DOWN",
    }
    assert (sorted(postgres_home.iterdir()) if postgres_home.is_dir() else []) == before


def test_stack_status_with_cluster_adds_the_cluster_profile_reported_stopped(tmp_path: Path) -> None:
    assert status_in_empty_data_dir(tmp_path, "kafka", "--cluster") == {
        "kafka": "DOWN",
        "kafka-cluster": "DOWN",
        "hdfs-cluster": "DOWN",
        "spark-cluster": "DOWN",
    }


def test_stack_down_takes_reset_before_or_after_the_services(tmp_path: Path) -> None:
    env = {**os.environ, "SML_DATA_DIR": str(tmp_path)}
    for args in (["down", "--reset", "kafka"], ["down", "kafka", "--reset"]):
        (tmp_path / "stack" / "kafka").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[kafka] data removed" in result.stdout
        assert not (tmp_path / "stack" / "kafka").exists()


def test_stack_status_reports_running_services_as_up(stack: None) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.split()[1] == "up" for line in result.stdout.splitlines())


def test_stack_down_without_names_also_stops_the_spark_connect_server_make_run_started(tmp_path: Path) -> None:
    """`make run` starts the Connect server beside the stack; `make stack-down` must not leave it up."""
    server_dir = tmp_path / "stack" / "spark-connect"
    server_dir.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), "down", "--reset"],
        env={**os.environ, "SML_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "[spark_connect] data removed", "the server is not stopped first"
    assert not server_dir.exists()


@pytest.mark.parametrize("value", ["", "sc://spark.example:15002"])
def test_make_run_keeps_the_users_spark_remote_and_starts_no_server_then(value: str) -> None:
    """`make run` starts the stack's Connect server only when SML_SPARK_REMOTE is unset; empty means
    Spark in each run's process, a URL another server."""
    from sml_assets_tests.faults import devstack_module

    run = devstack_module("run")
    server = types.SimpleNamespace(up=mock.Mock(side_effect=AssertionError("the Connect server was started")))
    with mock.patch.dict(sys.modules, {"spark_connect": server}):
        assert run._spark_remote({"SML_SPARK_REMOTE": value}) == value
        with pytest.raises(AssertionError, match="the Connect server was started"):
            run._spark_remote({})
