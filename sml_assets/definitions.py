"""The one `Definitions` of sml: assets, checks, jobs, schedules, sensors and resources.

Importing it opens no connection and starts no Spark session; resources connect when a run uses them.
"""
from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from sml_assets import automation
from sml_assets.assets import fleet, hdfs, logs, metrics, topics
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.settings import kafka_security_settings, setting

ASSET_MODULES = [topics, metrics, fleet, logs, hdfs]

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    jobs=automation.JOBS,
    schedules=automation.SCHEDULES,
    sensors=automation.SENSORS,
    resources={
        "kafka": KafkaResource(
            bootstrap_servers=setting("SML_KAFKA_BOOTSTRAP_SERVERS"),
            metrics_topic=setting("SML_METRICS_TOPIC"),
            logs_topic=setting("SML_LOGS_TOPIC"),
            **kafka_security_settings(),
        ),
        "metrics_db": MetricsDatabase(
            url=setting("SML_METRICS_DB_URL"), table=setting("SML_METRICS_TABLE")
        ),
        "spark": SparkResource(
            master=setting("SML_SPARK_MASTER"), jars_dir=setting("SML_SPARK_JARS_DIR")
        ),
        "hdfs": HdfsResource(
            url=setting("SML_HDFS_URL"), user=setting("SML_HDFS_USER"), ca_location=setting("SML_HDFS_CA_LOCATION")
        ),
        "storage": LocalStorage(data_dir=setting("SML_DATA_DIR")),
    },
)
