"""log_summary past one machine: a Spark standalone master with two workers, storage on HDFS.

The module starts its own master (free ports, its own folder, devstack/spark_cluster.py) and stops
it even when a test fails. Runs on the cluster are subprocesses, as Dagster runs are: a process has
one SparkContext, and the rest of the suite shares a local[2] one. The local[2] reference runs in
this process on that shared session, over the same lines, split into the same runs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from dagster import materialize

from sml_assets.assets import logs
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.conftest import REPO_ROOT, TEST_PREFIX
from sml_assets_tests.faults import devstack_module, free_port, wait_until
from sml_assets_tests.helpers import failure_message, produce

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
HDFS_RPC = "hdfs://127.0.0.1:9000"
EXECUTOR_WAIT_S = SparkResource.model_fields["executor_wait_s"].default
RUN_LOG_SUMMARY = """
import sys
from dagster import materialize
from sml_assets.assets import logs
from sml_assets.resources import resources_now
resources = resources_now()
result = materialize(
    [logs.log_summary], resources={key: resources[key] for key in ("kafka", "spark", "storage")}, raise_on_error=False
)
for event in result.all_events:
    if event.is_step_failure and event.step_failure_data.error is not None:
        error = event.step_failure_data.error
        print("FAILED:", (error.cause or error).message.strip(), flush=True)
sys.exit(0 if result.success else 1)
"""
"""One run of log_summary with the resources the SML_* variables give, as a deployment builds them."""


@pytest.fixture(scope="module")
def spark_cluster(stack: None) -> Iterator[Any]:
    """A master alone (the next fixture adds the workers), on free ports, stopped even on failure."""
    module = devstack_module("spark_cluster")
    ports = set()
    while len(ports) < 6:
        ports.add(free_port())
    master, ui, *workers = sorted(ports)
    cluster = module.SparkCluster(
        service=f"{TEST_PREFIX}spark_{uuid.uuid4().hex[:8]}",
        master_port=master,
        master_ui_port=ui,
        worker_ports=((workers[0], workers[1]), (workers[2], workers[3])),
    )
    folder = devstack_module("common").stack_dir(cluster.service)
    try:
        cluster.up(workers=False)
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(folder, ignore_errors=True)


def run_env(topic: str, data_dir: Path, bootstrap: str, **settings: str) -> dict[str, str]:
    """The SML_* variables of a run in a new process for this test's topic and folder, plus `settings`."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "SML_DATA_DIR": str(data_dir),
        "SML_LOGS_TOPIC": topic,
        "SML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **settings,
    }


def spark_env(cluster: Any, topic: str, data_dir: Path, storage_url: str, jars_dir: Path, bootstrap: str) -> dict:
    """The SML_* variables of a deployment on `cluster`, for this test's topic and folders."""
    return run_env(
        topic,
        data_dir,
        bootstrap,
        SML_SPARK_MASTER=cluster.master_url,
        SML_SPARK_MASTER_UI_PORT=str(cluster.master_ui_port),
        SML_SPARK_STORAGE_URL=storage_url,
        SML_SPARK_JARS_DIR=str(jars_dir),
        SML_HDFS_URL=os.environ.get("SML_HDFS_URL", "http://localhost:9870"),
        SPARK_LOCAL_IP="127.0.0.1",
    )


def local_reference(bootstrap: str, topic: str, spark: SparkResource, folder: Path) -> dict[str, Any]:
    """log_summary's resources on this process's shared local[2] session: the CSV the others must equal."""
    return {
        "kafka": KafkaResource(bootstrap_servers=bootstrap, logs_topic=topic),
        "spark": spark,
        "storage": LocalStorage(data_dir=str(folder)),
    }


def start_run(env: dict) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_LOG_SUMMARY], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(run: subprocess.Popen[str], timeout_s: float = 300) -> tuple[int, str]:
    """Exit code and the run's `FAILED:` lines (the whole output is printed for the test's log)."""
    try:
        output, _ = run.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        run.kill()
        outcome(run.returncode, run.communicate()[0])
        raise AssertionError(f"the run did not end within {timeout_s:g} s (killed; output tail above)") from None
    return outcome(run.returncode, output)


def outcome(code: int, output: str) -> tuple[int, str]:
    """`code` and the `FAILED:` lines of a run's `output`, whose tail is printed for the test's log."""
    print(output[-4000:])
    return code, "\n".join(line for line in output.splitlines() if line.startswith("FAILED:"))


def lines(rng: random.Random, first: datetime, count: int) -> list[bytes]:
    """Access-log lines over 40 minutes from `first`, and two that do not parse (rejects)."""
    made = []
    for _ in range(count):
        moment = first + timedelta(seconds=rng.randint(0, 2400))
        stamp = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
        method, status = rng.choice(["GET", "POST"]), rng.choice([200, 201, 404, 500])
        made.append(f"10.0.0.1 - u [{stamp}] {method} /p {status} 512".encode())
    return [*made, b"garbage", b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] PUT /x 200 10"]


def failed_log_summary(spark: SparkResource, bootstrap: str, topic: str, folder: Path) -> str:
    """The failure message of a log_summary materialization on `spark` that must fail before any
    Spark session is asked for: the address probe, not a JVM or gRPC time-out, decides (which is
    what makes it fail within seconds; how long it took is printed, not asserted)."""
    from pyspark.sql import SparkSession

    asked: list[str] = []

    def refuse_session(builder: Any) -> None:
        asked.append(repr(builder))
        raise AssertionError("a Spark session was asked for although the address probe should have failed the run")

    started = time.monotonic()
    with mock.patch.object(SparkSession.Builder, "getOrCreate", refuse_session):
        result = materialize(
            [logs.log_summary],
            resources={
                "kafka": KafkaResource(bootstrap_servers=bootstrap, logs_topic=topic),
                "spark": spark,
                "storage": LocalStorage(data_dir=str(folder)),
            },
            raise_on_error=False,
        )
    print(f"failed after {time.monotonic() - started:.1f} s")
    assert not result.success
    assert asked == [], "the run asked for a Spark session before failing"
    return failure_message(result)


def test_an_unreachable_master_fails_the_run_within_seconds_naming_the_setting(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    master = f"spark://127.0.0.1:{free_port()}"
    spark = SparkResource(master=master, jars_dir=str(spark_jars_dir))
    message = failed_log_summary(spark, kafka_bootstrap, new_topic(partitions=1), tmp_path)
    assert f"SparkUnavailableError: SML_SPARK_MASTER={master}: no Spark master answers (127.0.0.1:" in message
    assert "Connection refused" in message and "devstack/stack.py up --cluster" in message


def failed_run_without_workers(env: dict, cluster: Any) -> str:
    """The `FAILED:` line of a run on `cluster`'s master while it has no worker; how long it took is printed."""
    assert cluster.alive_workers() == 0, "this test needs the master without workers"
    started = time.monotonic()
    code, failed = finish(start_run(env), timeout_s=180)
    print(f"failed after {time.monotonic() - started:.1f} s (Python, JVM and Spark start included)")
    assert code == 1
    return failed


def applications(cluster: Any) -> tuple[int, int]:
    """Active and completed applications on the master."""
    state = cluster.master_state()
    assert state is not None, f"the master's web UI {cluster.ui_url} does not answer"
    return len(state["activeapps"]), len(state["completedapps"])


@pytest.mark.cluster
def test_a_master_without_free_cores_fails_the_run_naming_the_setting(
    spark_cluster: Any, new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    """A master with no worker gives no executor: its web UI says so before the session is built,
    and the run fails at once instead of after SparkResource.executor_wait_s."""
    env = spark_env(spark_cluster, new_topic(partitions=1), tmp_path, str(tmp_path), spark_jars_dir, kafka_bootstrap)
    before = applications(spark_cluster)
    assert failed_run_without_workers(env, spark_cluster) == (
        "FAILED: sml_assets.resources.spark.SparkUnavailableError: "
        f"SML_SPARK_MASTER={spark_cluster.master_url}: the master reports 0 ALIVE workers "
        f"(http://127.0.0.1:{spark_cluster.master_ui_port}/json/), so this application would get no executor: "
        "start workers registered with this master (python3 devstack/stack.py up --cluster starts two) "
        "or point it at a master that has some"
    )
    assert applications(spark_cluster) == before, "the run registered an application all the same"


@pytest.mark.cluster
def test_a_master_whose_web_ui_is_elsewhere_still_fails_the_run_after_the_executor_wait(
    spark_cluster: Any, new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    """When nothing answers on SML_SPARK_MASTER_UI_PORT (another port, a proxy), the run is not failed for
    that: the executor wait judges, fails after SparkResource.executor_wait_s, and frees the master."""
    env = spark_env(spark_cluster, new_topic(partitions=1), tmp_path, str(tmp_path), spark_jars_dir, kafka_bootstrap)
    env["SML_SPARK_MASTER_UI_PORT"] = str(free_port())
    assert failed_run_without_workers(env, spark_cluster) == (
        "FAILED: sml_assets.resources.spark.SparkUnavailableError: "
        f"SML_SPARK_MASTER={spark_cluster.master_url}: the master gave this application no executor "
        f"within {EXECUTOR_WAIT_S:g} s: check on the master's web UI (port 8080 by default) that workers are "
        "ALIVE with free cores and memory (another application may hold every core: give it spark.cores.max, or the "
        "master spark.deploy.defaultCores), and that the workers can reach this driver (spark.driver.host)"
    )
    assert applications(spark_cluster)[0] == 0, "the failed run's application still holds the master"


@pytest.mark.cluster
def test_log_summary_on_two_workers_with_hdfs_storage_equals_local_also_when_a_worker_is_killed(
    spark_cluster: Any,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_jars_dir: Path,
    spark_resource: SparkResource,
    hdfs: HdfsResource,
    tmp_path: Path,
) -> None:
    spark_cluster.up()
    topic = new_topic(partitions=2)
    storage_root = hdfs.folder.rsplit("/", 1)[0]
    storage_url = f"{HDFS_RPC}{storage_root}/spark"
    env = spark_env(spark_cluster, topic, tmp_path / "cluster", storage_url, spark_jars_dir, kafka_bootstrap)
    local_resources = local_reference(kafka_bootstrap, topic, spark_resource, tmp_path / "local")
    local = local_resources["storage"]
    cluster_csv = tmp_path / "cluster" / local.summary_file
    rng = random.Random(19)

    produce(kafka_bootstrap, topic, lines(rng, T0, 400))
    assert materialize([logs.log_summary], resources=local_resources).success
    assert finish(start_run(env)) == (0, "")
    assert cluster_csv.read_text() == local.summary_csv.read_text()
    client = hdfs.client()
    checkpoint = f"{storage_root}/spark/spark-checkpoints/log_summary"
    assert client.status(f"{checkpoint}/windows/commits/0", strict=False), "no checkpoint on HDFS"
    assert client.status(f"{storage_root}/spark/log_summary/rejects/batch_id=0/_SUCCESS", strict=False)

    produce(kafka_bootstrap, topic, lines(rng, T0 + timedelta(minutes=30), 400))
    assert materialize([logs.log_summary], resources=local_resources).success
    planned = len(client.list(f"{checkpoint}/windows/offsets"))
    run = start_run(env)
    try:
        wait_until(
            lambda: len(client.list(f"{checkpoint}/windows/offsets")) > planned or run.poll() is not None,
            240,
            "the second run's batch planned in the checkpoint on HDFS",
            poll_s=0.1,
        )
        assert run.poll() is None, "the run ended before a worker could be killed during it"
        worker = spark_cluster.workers[0].pid()
        assert worker is not None, "worker 1 is not running"
        os.kill(worker, signal.SIGKILL)
        code, failed = finish(run)
    finally:
        run.kill()
    print(f"run with worker 1 killed: exit {code} {failed}")
    if code != 0:
        assert failed.startswith("FAILED: ") and "\n" not in failed
        assert finish(start_run(env)) == (0, "")
    assert cluster_csv.read_text() == local.summary_csv.read_text()
