"""Spark's Python workers with a wrong PYSPARK_PYTHON: the run fails with one line naming the setting.

Every log_summary run with new lines parses them in Python workers (`sml_assets.log_batches`), so an
interpreter that is missing, or lacks pyarrow, fails every run. pyspark reads PYSPARK_PYTHON once,
into the SparkContext's `pythonExec`, and hands it to each Python function it plans; the runs here
set that attribute on the suite's shared local[2] session for the run's length (a new process with
PYSPARK_PYTHON set fails the same way, in 20-25 s instead of 2-3 s): Spark really starts that
interpreter.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from dagster import materialize

from sml_assets.assets import logs
from sml_assets.resources.spark import SparkResource
from sml_assets_tests.conftest import REPO_ROOT, TEST_PREFIX
from sml_assets_tests.faults import devstack_module, free_port
from sml_assets_tests.helpers import failure_message, produce
from sml_assets_tests.test_spark_cluster import T0, finish, lines, local_reference, run_env, start_run

pytestmark = pytest.mark.integration

FIX = (
    "which must exist, be the Python version of the run's pyspark, and import pyarrow, pandas and the sml "
    "package (sml_assets: install the project there or put the checkout on its PYTHONPATH). Point it at such "
    "an interpreter (the project's .venv/bin/python), then run log_summary again."
)


def without_site_packages(folder: Path) -> str:
    """This interpreter without its site-packages (`-S`): pyspark comes from Spark's own zip on the
    workers' PYTHONPATH, sml_assets from the checkout, pyarrow from nowhere."""
    wrapper = folder / "python-without-site-packages"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.parametrize(
    ("make_python", "failure"),
    [
        (lambda folder: str(folder / "no-such-python"), 'Spark cannot run program "{python}"'),
        (without_site_packages, "a Python worker has no module named 'pyarrow'"),
    ],
    ids=["missing", "without-pyarrow"],
)
def test_a_worker_interpreter_that_cannot_parse_fails_the_run_naming_pyspark_python(
    make_python: Callable[[Path], str],
    failure: str,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> None:
    topic = new_topic(partitions=1)
    produce(kafka_bootstrap, topic, lines(random.Random(19), T0, 10))
    python = make_python(tmp_path)
    resources = local_reference(kafka_bootstrap, topic, spark_resource, tmp_path / "data")
    with mock.patch.object(spark_resource.session().sparkContext, "pythonExec", python):
        result = materialize([logs.log_summary], resources=resources, raise_on_error=False)
    assert not result.success
    failed = failure_message(result)
    assert not (tmp_path / "data" / resources["storage"].summary_file).exists(), "the failed run wrote a CSV"
    assert (
        f"PythonWorkerError: Spark's Python workers failed in log_summary's query ({failure.format(python=python)}): "
        f"they run the log parse (and over Spark Connect the merge) with the interpreter named by "
        f"PYSPARK_PYTHON={python} of the run's process (Spark runs local[2] in it), {FIX}"
    ) in failed


@pytest.mark.cluster
def test_a_connect_server_whose_workers_lack_pyarrow_fails_the_run_naming_its_pyspark_python(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    """Over Spark Connect the foreachBatch function runs in a Python worker of the server, started
    with the server's PYSPARK_PYTHON: one without site-packages cannot even connect back."""
    topic = new_topic(partitions=1)
    produce(kafka_bootstrap, topic, lines(random.Random(20), T0, 10))
    server = devstack_module("spark_connect").SparkConnect(
        service=f"{TEST_PREFIX}connect_{uuid.uuid4().hex[:8]}",
        port=free_port(),
        folder=tmp_path,
        python=without_site_packages(tmp_path),
        pythonpath=REPO_ROOT,
    )
    try:
        server.up()
        env = run_env(
            topic,
            tmp_path / "data",
            kafka_bootstrap,
            SML_SPARK_REMOTE=server.url,
            SML_SPARK_JARS_DIR=str(spark_jars_dir),
        )
        exit_code, failed = finish(start_run(env))
    finally:
        if server.daemon.logfile.exists():
            print(f"server log tail:\n{server.daemon.logfile.read_text()[-6000:]}")
        server.down()
    assert exit_code == 1
    assert (
        "PythonWorkerError: Spark's Python workers failed in log_summary's query (Spark says: Python worker " in failed
    )
    assert f"PYSPARK_PYTHON of the Spark Connect server at SML_SPARK_REMOTE={server.url}" in failed
    assert "then restart the server." in failed
