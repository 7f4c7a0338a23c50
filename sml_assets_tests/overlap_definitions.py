"""A code location for the overlapping-runs test: the metrics job with its real schedule and backlog
sensor, over resources read from the environment like `sml_assets.definitions`, without the logs
assets (a Spark run the logs schedule might start would only slow the test down)."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from sml_assets import definitions as sml
from sml_assets.assets import metrics, topics
from sml_assets.automation import (
    build_metrics_backlog_sensor,
    ingest_metrics_every_2_minutes,
    ingest_metrics_job,
)

defs = Definitions(
    assets=load_assets_from_modules([topics, metrics]),
    jobs=[ingest_metrics_job],
    schedules=[ingest_metrics_every_2_minutes],
    sensors=[build_metrics_backlog_sensor(threshold=1000)],
    resources={key: sml.defs.resources[key] for key in ("kafka", "metrics_db", "storage")},
)
