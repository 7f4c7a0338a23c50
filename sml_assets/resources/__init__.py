"""The resources of sml, built in one place from the settings: `definitions.py` and every
command-line entry point (`python -m sml_assets.replay`) get the same clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import EnvVar

from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.settings import (
    int_setting,
    int_value,
    kafka_security_settings,
    setting,
    setting_value,
    spark_master_ui_port_setting,
)


class Resources(dict[str, Any]):
    """The resource keys the assets, checks and sensors ask for, with typed access for commands."""

    @property
    def kafka(self) -> KafkaResource:
        return self["kafka"]

    @property
    def metrics_db(self) -> MetricsDatabase:
        return self["metrics_db"]


def build_resources(resolve: bool = False) -> Resources:
    """Every resource from the SML_* settings.

    For Dagster, set variables stay `EnvVar`s (the UI shows their source; a password is resolved
    only at run time); commands that run outside Dagster (`resources_now`) resolve them now.
    """
    read: Callable[[str], str | EnvVar] = setting_value if resolve else setting
    kafka_security: dict[str, Any] = {
        field: (variable.get_value() or "") if resolve else variable
        for field, variable in kafka_security_settings().items()
    }
    max_clock_skew_s: Any = int_value("SML_MAX_CLOCK_SKEW") if resolve else int_setting("SML_MAX_CLOCK_SKEW")
    return Resources(
        kafka=KafkaResource(
            bootstrap_servers=read("SML_KAFKA_BOOTSTRAP_SERVERS"),
            metrics_topic=read("SML_METRICS_TOPIC"),
            logs_topic=read("SML_LOGS_TOPIC"),
            max_clock_skew_s=max_clock_skew_s,
            **kafka_security,
        ),
        metrics_db=MetricsDatabase(url=read("SML_METRICS_DB_URL"), table=read("SML_METRICS_TABLE")),
        spark=SparkResource(
            master=read("SML_SPARK_MASTER"),
            jars_dir=read("SML_SPARK_JARS_DIR"),
            **spark_master_ui_port_setting(resolve),
            remote=read("SML_SPARK_REMOTE"),
        ),
        hdfs=HdfsResource(
            url=read("SML_HDFS_URL"), user=read("SML_HDFS_USER"), ca_location=read("SML_HDFS_CA_LOCATION")
        ),
        storage=LocalStorage(data_dir=read("SML_DATA_DIR"), spark_storage_url=read("SML_SPARK_STORAGE_URL")),
    )


def resources_now() -> Resources:
    """The resources `definitions.py` holds, with every setting resolved now (outside a run)."""
    return build_resources(resolve=True)
