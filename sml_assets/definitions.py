"""The one `Definitions` of sml: assets, checks, jobs, schedules, sensors and resources.

Importing it opens no connection, starts no Spark session and imports neither pyspark nor pandas
(they load inside the functions that use them), so every run process and code server starts fast;
resources connect when a run uses them. Every job, the implicit one behind `dagster asset
materialize` and the automation sensor's included, runs its steps in the run's own process (see
`sml_assets.automation`).
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from sml_assets import automation
from sml_assets.assets import clock_skew, fleet, hdfs, logs, metrics, topics
from sml_assets.resources import build_resources

ASSET_MODULES = [topics, metrics, fleet, logs, hdfs, clock_skew]

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    jobs=automation.JOBS,
    schedules=automation.SCHEDULES,
    sensors=automation.SENSORS,
    executor=in_process_executor,
    resources=build_resources(),
)
