"""server_metrics on a three-node Kafka cluster: the leader of a partition SIGKILLed mid-run, while
the simulator produces, loses and doubles nothing.

The cluster is the stack's cluster profile (`devstack/kafka.py`'s `KafkaCluster`: combined
broker+controller KRaft nodes, 512 MB heap each) on free ports in a temporary folder, started once
for the module and killed afterwards, even when a test fails; the shared broker is not touched.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import devstack_kafka, free_port, running, start_metrics_run, wait_until
from sml_assets_tests.helpers import (
    CONSUMER,
    assert_matches_truth,
    assert_offsets_cover_exactly_what_is_stored,
    committed,
    metadata,
    run,
    simulate,
    simulator_command,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

BACKLOG = 15_000
AFTER_KILL = 1_000
"""Messages the live simulator (1,000/s in real time) must get acknowledged after the kill."""


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory, stack: None) -> Iterator[Any]:
    """Three KRaft nodes of the module's own (the stack fixture fetched their jars)."""
    nodes = devstack_kafka().KafkaCluster(
        tmp_path_factory.mktemp("kafka-cluster"),
        ports=tuple((free_port(), free_port()) for _ in range(3)),
        service="test-kafka-cluster",
    )
    with running(nodes, f"three KRaft nodes on {nodes.bootstrap}"):
        yield nodes


def replicas_and_min_insync(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """Replica counts of `topic`'s partitions (all in sync) and its min.insync.replicas."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    assert all(sorted(p.isrs) == sorted(p.replicas) for p in partitions), "a replica is out of sync"
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {len(p.replicas) for p in partitions}, future.result(timeout=10)["min.insync.replicas"].value


def partition_leader(bootstrap: str, topic: str, partition: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def end_offsets(bootstrap: str, topic: str, partitions: int = 2) -> int:
    """Messages in `topic` now; -1 while a partition has no leader to ask (just after a kill)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sml-test-watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in range(partitions))
    except KafkaException:
        return -1
    finally:
        consumer.close()


def merged(*truths: dict) -> dict:
    """One truth of several simulator runs into one topic (the counts `assert_matches_truth` reads)."""
    per_server: Counter[str] = Counter()
    for truth in truths:
        per_server.update(truth["metrics"]["valid_per_server"])
    metrics = {key: sum(truth["metrics"][key] for truth in truths) for key in ("valid", "malformed_total", "skewed")}
    return {"metrics": {**metrics, "valid_per_server": dict(per_server)}}


def test_server_metrics_after_a_partition_leader_is_killed_mid_run_holds_every_message_exactly_once(
    kafka_cluster: Any, unique_name: str, tmp_path: Path
) -> None:
    bootstrap = kafka_cluster.bootstrap
    topic, logs_topic = f"{unique_name}-metrics", f"{unique_name}-logs"
    backlog = simulate(
        bootstrap, topic, logs_topic, tmp_path / "backlog.json", "--seed", "1", "--start", "2026-11-25T16:00:00Z",
        "--count", str(BACKLOG), "--log-rate", "0", "--malformed-rate", "0.02", "--create-topics", "2",
    )  # fmt: skip
    assert replicas_and_min_insync(bootstrap, topic) == ({3}, "2"), "not the replication production needs"
    assert backlog["acked"] == BACKLOG
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'metrics.db'}", table="server_matric")
    database.ensure_tables()

    live_truth, run_log = tmp_path / "live.json", tmp_path / "first-run.log"
    producer = subprocess.Popen(
        simulator_command(
            bootstrap,
            topic,
            logs_topic,
            live_truth,
            "--seed",
            "2",
            "--servers",
            "10",
            "--metrics-interval",
            "0.01",
            "--count",
            "200000",
            "--log-rate",
            "0",
        ),  # fmt: skip
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    first: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: end_offsets(bootstrap, topic) > BACKLOG, 60, "the live simulator's first message")
        with open(run_log, "wb") as log:
            first = metrics_run = start_metrics_run(
                bootstrap, topic, database, CONSUMER, 250, start_new_session=True, stderr=log
            )
        wait_until(
            lambda: committed(database, topic) > 0 or metrics_run.poll() is not None, 120, "the run's first chunk"
        )
        assert first.poll() is None and producer.poll() is None, "the run or the producer ended before the kill"
        leader = partition_leader(bootstrap, topic, 0)
        killed_at = end_offsets(bootstrap, topic)
        kafka_cluster.kill(leader)
        wait_until(
            lambda: end_offsets(bootstrap, topic) > killed_at + AFTER_KILL, 120, f"{AFTER_KILL} more messages produced"
        )
        producer.send_signal(signal.SIGTERM)
        _, errors = producer.communicate(timeout=120)
        assert producer.returncode == 0, errors.decode()
        first.wait(timeout=180)
    finally:
        for process in (first, producer):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    live = json.loads(live_truth.read_text())
    print(
        f"killed node {leader} (leader of partition 0) mid-run and mid-produce; the run exited "
        f"{metrics_run.returncode} with {committed(database, topic):,} committed (log {run_log}); the producer had "
        f"{live['acked']:,} acknowledged, {live['acked'] + BACKLOG - killed_at:,} after the kill"
    )

    kafka = KafkaResource(bootstrap_servers=bootstrap, metrics_topic=topic, timeout_s=10)
    metadata(run(kafka, database, chunk_size=250, consumer_name=CONSUMER))
    assert assert_offsets_cover_exactly_what_is_stored(database, topic) == BACKLOG + live["acked"]
    assert_matches_truth(database, topic, merged(backlog, live))
