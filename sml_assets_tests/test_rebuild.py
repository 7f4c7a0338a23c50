"""Recovery from a summary poisoned by a clock a year ahead, with the documented command, through
the real Kafka, Spark, HDFS and a Dagster instance; the rebuilt CSV equals the simulator's truth."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hdfs import InsecureClient

from sml_assets_tests.conftest import KAFKA_BOOTSTRAP
from sml_assets_tests.e2e import Deployment, csv_windows, expected_windows

pytestmark = pytest.mark.integration

TODAYS_CODE = "999999999"
"""A tolerance of 31 years: the rule never refuses, as before issue 14."""
SIMULATION = ["--servers", "5", "--metrics-interval", "3600", "--log-rate", "2", "--max-clock-skew", "60"]


@pytest.fixture
def deployment(tmp_path: Path, stack: None) -> Iterator[Deployment]:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"rebuild_{uuid.uuid4().hex[:8]}"
    topics = [f"{name}-metrics", f"{name}-logs"]
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, 2, 1) for topic in topics]).values():
        future.result(timeout=30)
    deployment = Deployment.create(tmp_path, name, *topics)
    try:
        yield deployment
    finally:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=30)
        InsecureClient(deployment.env["SML_HDFS_URL"], user=name).delete(f"/user/{name}", recursive=True)


JOB_TIMEOUT_S = 1200
"""Each run starts Spark in its own process; on a loaded 2-core machine one took over 600 s."""


def summarize(deployment: Deployment) -> None:
    deployment.run(
        "dagster", "job", "execute", "-m", "sml_assets.definitions", "-j", "summarize_logs_job", timeout=JOB_TIMEOUT_S
    )


def test_a_poisoned_summary_is_rebuilt_from_the_topic_by_one_command(deployment: Deployment) -> None:
    deployment.env["SML_MAX_CLOCK_SKEW"] = TODAYS_CODE
    first = deployment.simulate(
        *SIMULATION,
        "--seed",
        "41",
        "--start",
        "2026-11-25T16:00:00Z",
        "--duration",
        "600",
        "--skewed-clock-rate",
        "0.01",
    )
    assert first["logs"]["skewed"] > 0, "no line from a clock ahead: the summary would not be poisoned"
    summarize(deployment)
    second = deployment.simulate(*SIMULATION, "--seed", "42", "--start", "2026-11-25T16:10:00Z", "--duration", "600")
    summarize(deployment)
    poisoned = csv_windows(deployment.summary_csv.read_bytes())
    assert max(poisoned) >= "2027", "the line a year ahead made no window: nothing was poisoned"
    counted = sum(int(row["total"]) for start, row in poisoned.items() if start < "2027")
    assert counted == first["logs"]["valid"], "the second part should have been dropped as late"

    del deployment.env["SML_MAX_CLOCK_SKEW"]
    result = deployment.run("python", "-m", "sml_assets.rebuild", "log-summary", timeout=JOB_TIMEOUT_S)
    assert "rebuilt" in result.stdout, result.stdout

    local = deployment.summary_csv.read_bytes()
    windows = csv_windows(local)
    expected = expected_windows([first, second])
    assert sorted(windows) == sorted(expected)
    for start, counts in expected.items():
        assert {k: int(windows[start][k]) for k in counts} == dict(counts), f"window {start}"
    assert sum(int(row["total"]) for row in windows.values()) == first["logs"]["valid"] + second["logs"]["valid"]
    metadata = deployment.latest_metadata("log_summary")
    assert metadata["rejects"] == first["logs"]["malformed_total"] + first["logs"]["skewed"]
    assert metadata["rejects_by_reason"] == {"event time s ahead of the record timestamp": first["logs"]["skewed"]}
    aside = list((deployment.root / "data" / "log_summary").glob("discarded-*"))
    assert len(aside) == 1 and (aside[0] / "summary_state.json").exists(), "the poisoned state was not kept aside"
    client = InsecureClient(deployment.env["SML_HDFS_URL"], user=deployment.name)
    with client.read(deployment.hdfs_path) as reader:
        assert reader.read() == local, "the HDFS copy is not the rebuilt CSV"
