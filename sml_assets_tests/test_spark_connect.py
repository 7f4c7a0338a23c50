"""log_summary over Spark Connect (SML_SPARK_REMOTE): a long-lived Spark server instead of one in the run.

An unreachable server fails the run in seconds with one line naming the setting. The module's own
server (devstack/spark_connect.py, a free port, this module's folder) is stopped even when a test
fails. Runs over Connect are subprocesses, as Dagster runs are: pyspark allows no Connect session in a
process that has a classic one, and the rest of the suite shares a local[2] session, which gives the
reference CSV on the same lines, split into the same runs.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from sml_assets.assets import logs
from sml_assets.resources.spark import SparkResource
from sml_assets_tests.conftest import REPO_ROOT, TEST_PREFIX
from sml_assets_tests.faults import devstack_module, free_port
from sml_assets_tests.helpers import produce
from sml_assets_tests.test_spark_cluster import (
    T0,
    failed_log_summary,
    finish,
    lines,
    local_reference,
    run_env,
    start_run,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def connect_server(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark Connect server of this module's own, its workers on this interpreter and checkout."""
    folder = tmp_path_factory.mktemp("spark-connect")
    module = devstack_module("spark_connect")
    server = module.SparkConnect(
        service=f"{TEST_PREFIX}connect_{uuid.uuid4().hex[:8]}",
        port=free_port(),
        folder=folder,
        python=sys.executable,
        pythonpath=REPO_ROOT,
    )
    try:
        started = time.monotonic()
        server.up()
        print(f"\nSpark Connect server up in {time.monotonic() - started:.1f} s")
        yield server
    finally:
        server.down()
        shutil.rmtree(folder, ignore_errors=True)


def test_an_unreachable_connect_server_fails_the_run_within_seconds_naming_the_setting(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    remote = f"sc://127.0.0.1:{free_port()}"
    spark = SparkResource(jars_dir=str(spark_jars_dir), remote=remote)
    message = failed_log_summary(spark, kafka_bootstrap, new_topic(partitions=1), tmp_path)
    address = remote.removeprefix("sc://")
    assert (
        f"SparkUnavailableError: SML_SPARK_REMOTE={remote}: no Spark Connect server answers at {address} "
        "(Connection refused): check that a Spark Connect server is running there"
    ) in message


@pytest.mark.cluster
def test_log_summary_over_spark_connect_equals_local_across_two_runs(
    connect_server: Any,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_jars_dir: Path,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> None:
    topic = new_topic(partitions=2)
    env = run_env(
        topic,
        tmp_path / "connect",
        kafka_bootstrap,
        SML_SPARK_REMOTE=connect_server.url,
        SML_SPARK_JARS_DIR=str(spark_jars_dir),
    )
    local_resources = local_reference(kafka_bootstrap, topic, spark_resource, tmp_path / "local")
    local = local_resources["storage"]
    connect_csv = tmp_path / "connect" / local.summary_file
    rng = random.Random(15)
    for first in (T0, T0 + timedelta(minutes=30)):
        produce(kafka_bootstrap, topic, lines(rng, first, 400))
        assert materialize([logs.log_summary], resources=local_resources).success
        started = time.monotonic()
        assert finish(start_run(env)) == (0, "")
        print(f"run over Spark Connect (new process): {time.monotonic() - started:.1f} s")
        assert connect_csv.read_text() == local.summary_csv.read_text()
    rejects = tmp_path / "connect" / "log_summary" / "rejects"
    assert sorted(p.name for p in rejects.iterdir()) == ["batch_id=0", "batch_id=1"]
    assert not list((tmp_path / "connect" / "log_summary").glob(".batches-*")), "the batch journal was left behind"
