"""log_summary over Spark Connect (SML_SPARK_REMOTE): a long-lived Spark server instead of one in the run.

An unreachable server fails the run in seconds with one line naming the setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import materialize

from sml_assets.assets import logs
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.faults import free_port
from sml_assets_tests.helpers import failure_message

pytestmark = pytest.mark.integration


def test_an_unreachable_connect_server_fails_the_run_within_seconds_naming_the_setting(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    remote = f"sc://127.0.0.1:{free_port()}"
    topic = new_topic(partitions=1)
    started = time.monotonic()
    result = materialize(
        [logs.log_summary],
        resources={
            "kafka": KafkaResource(bootstrap_servers=kafka_bootstrap, logs_topic=topic),
            "spark": SparkResource(jars_dir=str(spark_jars_dir), remote=remote),
            "storage": LocalStorage(data_dir=str(tmp_path)),
        },
        raise_on_error=False,
    )
    elapsed = time.monotonic() - started
    print(f"failed after {elapsed:.1f} s")
    assert not result.success
    address = remote.removeprefix("sc://")
    assert (
        f"SparkUnavailableError: SML_SPARK_REMOTE={remote}: no Spark Connect server answers at {address} "
        "(Connection refused): check that a Spark Connect server is running there"
    ) in failure_message(result)
    assert elapsed < 30
