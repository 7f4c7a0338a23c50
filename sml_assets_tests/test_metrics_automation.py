"""When server_metrics runs: the schedule and sensor definitions, with no services needed."""

from __future__ import annotations

import uuid

import pytest
from dagster import (
    AssetKey,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)

from sml_assets.automation import (
    build_metrics_backlog_sensor,
    ingest_metrics_every_2_minutes,
    ingest_metrics_job,
)
from sml_assets.definitions import defs


def test_schedule_runs_every_2_minutes_and_is_on_by_default() -> None:
    assert ingest_metrics_every_2_minutes.cron_schedule == "*/2 * * * *"
    assert ingest_metrics_every_2_minutes.default_status == DefaultScheduleStatus.RUNNING


def test_backlog_sensor_is_on_by_default_and_targets_the_ingest_job() -> None:
    sensor = next(s for s in defs.sensors if s.name == "metrics_backlog_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.job_name == ingest_metrics_job.name


def test_schedule_requests_a_run_when_none_is_in_flight_and_skips_otherwise() -> None:
    with instance_for_test() as instance:
        with build_schedule_context(instance=instance) as context:
            assert isinstance(ingest_metrics_every_2_minutes(context), RunRequest)
        run_id = str(uuid.uuid4())
        instance.add_run(DagsterRun(job_name=ingest_metrics_job.name, run_id=run_id, status=DagsterRunStatus.STARTING))
        with build_schedule_context(instance=instance) as context:
            skipped = ingest_metrics_every_2_minutes(context)
    assert isinstance(skipped, SkipReason) and run_id in skipped.skip_message


def test_a_backlog_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="SML_METRICS_BACKLOG_THRESHOLD=0"):
        build_metrics_backlog_sensor(threshold=0)


def test_definitions_hold_the_metrics_asset_checks_and_topics() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"server_metrics", "kafka/metrics_topic", "kafka/logs_topic"} <= keys
    checks = {key.name for key in graph.asset_check_keys if key.asset_key.to_user_string() == "server_metrics"}
    assert checks == {
        "no_duplicate_messages",
        "values_in_range",
        "dead_letter_ratio",
        "newest_row_is_fresh",
        "fleet_health",
        "metrics_clocks_are_right",
    }
    assert graph.get(AssetKey("server_metrics")).group_name == "metrics"
