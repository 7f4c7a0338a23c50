"""Against the real broker: the truth file matches what a consumer reads back."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import wait_until
from sml_assets_tests.helpers import simulator_command
from sml_assets_tests.simulator.grammar import parse_metrics
from sml_assets_tests.simulator.test_truth import as_counters, recount

pytestmark = pytest.mark.integration


def read_back(bootstrap: str, topic: str, timeout_s: float = 60) -> list[tuple[int, bytes, bytes]]:
    """Every record of the topic as (partition, key, value), up to the end offsets seen now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[tuple[int, bytes, bytes]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            assert time.monotonic() < deadline, f"read {len(records)} records of {topic} in time"
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            records.append((message.partition(), message.key(), message.value() or b""))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return records
    finally:
        consumer.close()


def assert_truth_matches_topics(truth_path: Path, bootstrap: str, metrics: str, logs: str) -> dict:
    truth = json.loads(truth_path.read_text())
    metric_records = read_back(bootstrap, metrics)
    log_records = read_back(bootstrap, logs)
    assert len(metric_records) + len(log_records) == truth["acked"]
    values = [("metrics", value) for _, _, value in metric_records]
    values += [("logs", value) for _, _, value in log_records]
    assert as_counters(truth) == recount(values)
    partitions_of_server: dict[bytes, set[int]] = {}
    for partition, key, value in metric_records:
        parsed = parse_metrics(value)
        if not isinstance(parsed, str):
            assert key == str(parsed.server_id).encode()
        partitions_of_server.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_server.values())
    assert len(Counter(partition for partition, _, _ in log_records)) > 1
    return truth


def wait_for_records(bootstrap: str, topic: str, at_least: int, process: subprocess.Popen) -> None:
    """Until partition 0 holds `at_least` records, while the simulator still runs."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-probe"})

    def arrived() -> bool:
        assert process.poll() is None, f"the simulator exited ({process.returncode}) before {at_least} records"
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1] >= at_least
        except KafkaException:
            return False

    try:
        wait_until(arrived, 30, f"{at_least} records in {topic} partition 0", 0.1)
    finally:
        consumer.close()


@pytest.mark.parametrize("mode", [[], ["--burst"]], ids=["simulated", "burst"])
def test_truth_matches_what_a_consumer_reads_back(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, mode: list[str]
) -> None:
    metrics = new_topic(partitions=3, suffix="-metrics")
    logs = new_topic(partitions=2, suffix="-logs")
    truth_path = tmp_path / "truth.json"
    result = subprocess.run(
        simulator_command(
            kafka_bootstrap,
            metrics,
            logs,
            truth_path,
            "--start",
            "2026-11-25T16:00:00Z",
            "--seed",
            "21",
            "--count",
            "6000",
            "--servers",
            "6",
            "--metrics-interval",
            "1",
            "--malformed-rate",
            "0.05",
            "--late-rate",
            "0.05",
            "--max-lateness",
            "1200",
            "--out-of-order",
            "0.05",
            *mode,
        ),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    truth = assert_truth_matches_topics(truth_path, kafka_bootstrap, metrics, logs)
    assert truth["acked"] == 6000 and truth["failed"] == 0
    assert truth["logs"]["late_beyond_watermark"] > 0 and truth["metrics"]["malformed_total"] > 0


def test_sigterm_mid_run_flushes_and_the_truth_still_matches(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    metrics = new_topic(partitions=1, suffix="-metrics")
    logs = new_topic(partitions=3, suffix="-logs")
    truth_path = tmp_path / "truth.json"
    process = subprocess.Popen(
        simulator_command(
            kafka_bootstrap,
            metrics,
            logs,
            truth_path,
            "--log-rate",
            "300",
            "--metrics-interval",
            "0.5",
            "--malformed-rate",
            "0.05",
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_records(kafka_bootstrap, logs, 20, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"stopped by SIGTERM" in stderr
    truth = assert_truth_matches_topics(truth_path, kafka_bootstrap, metrics, logs)
    assert truth["acked"] > 20


def test_a_missing_topic_is_looked_for_again_then_named_in_a_clear_error(
    kafka_bootstrap: str, new_topic: Callable[..., str], unique_name: str
) -> None:
    from simulator.sender import TOPIC_LOOK_AGAIN_S

    missing = f"{unique_name}-never-created"
    started = time.monotonic()
    result = subprocess.run(
        simulator_command(
            kafka_bootstrap,
            new_topic(),
            missing,
            None,
            "--count",
            "10",
        ),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr.decode()
    message = result.stderr.decode()
    assert f"topic {missing!r} does not exist on {kafka_bootstrap}" in message
    assert f"still after looking again for {TOPIC_LOOK_AGAIN_S:g}s" in message
    assert time.monotonic() - started >= TOPIC_LOOK_AGAIN_S
