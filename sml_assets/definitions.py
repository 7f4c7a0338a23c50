"""The one `Definitions` of sml: assets, checks, jobs, schedules, sensors and resources.

Importing it opens no connection and starts no Spark session; resources connect when a run uses them.
"""
from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

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
    resources=build_resources(),
)
