"""Freshness policies, evaluated by Dagster's own freshness daemon code on a real instance with the
repo's dagster.yaml and sml's definitions: an asset whose schedule is off turns WARN, then FAIL, on
the windows derived from its schedule, and PASS again once it is materialized."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.freshness import FreshnessDaemon

from sml_assets import definitions
from sml_assets.automation import ingest_metrics_every_2_minutes, summarize_logs_every_5_minutes
from sml_assets.cadence import LOGS_PERIOD, METRICS_PERIOD, SLACK, every, freshness_for
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.helpers import dagster_home

KEYS = [AssetKey("server_metrics"), AssetKey("log_summary"), AssetKey("hdfs_log_summary")]
PASS, WARN, FAIL, UNKNOWN = FreshnessState.PASS, FreshnessState.WARN, FreshnessState.FAIL, FreshnessState.UNKNOWN
SECOND = timedelta(seconds=1)


def test_freshness_windows_follow_the_schedules() -> None:
    assert ingest_metrics_every_2_minutes.cron_schedule == every(METRICS_PERIOD) == "*/2 * * * *"
    assert summarize_logs_every_5_minutes.cron_schedule == every(LOGS_PERIOD) == "*/5 * * * *"
    graph = definitions.defs.resolve_asset_graph()
    policies = {key.to_user_string(): graph.get(key).freshness_policy for key in KEYS}
    assert policies == {
        "server_metrics": freshness_for(METRICS_PERIOD),
        "log_summary": freshness_for(LOGS_PERIOD),
        "hdfs_log_summary": freshness_for(LOGS_PERIOD),
    }
    metrics = freshness_for(METRICS_PERIOD)
    assert (metrics.warn_window.to_timedelta(), metrics.fail_window.to_timedelta()) == (
        timedelta(minutes=3),
        timedelta(minutes=5),
    )


@pytest.mark.parametrize("period", [timedelta(seconds=90), timedelta(minutes=7), timedelta(0)])
def test_a_period_no_cron_string_can_express_is_refused(period: timedelta) -> None:
    with pytest.raises(ValueError, match="not a whole number of minutes dividing an hour"):
        every(period)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[DagsterInstance, WorkspaceProcessContext]]:
    """The repo's dagster.yaml in a DAGSTER_HOME of its own, and sml's definitions loaded from a
    code server, as the daemon loads them."""
    home = dagster_home(tmp_path / "dagster-home")
    with DagsterInstance.from_config(str(home)) as instance:
        target = ModuleTarget("sml_assets.definitions", None, str(REPO_ROOT), "sml_assets")
        with create_test_daemon_workspace_context(target, instance) as context:
            yield instance, context


def test_an_asset_goes_stale_when_its_schedule_is_off_and_fresh_when_it_runs_again(
    workspace: tuple[DagsterInstance, WorkspaceProcessContext],
) -> None:
    instance, context = workspace
    assert instance.freshness_enabled, "dagster.yaml must enable the freshness daemon"

    def states_at(moment: datetime) -> dict[str, FreshnessState]:
        with freeze_time(moment):
            list(FreshnessDaemon().run_iteration(context))
        records = instance.get_freshness_state_records(KEYS)
        return {key.to_user_string(): records[key].freshness_state for key in KEYS if key in records}

    def materialize(key: AssetKey, moment: datetime) -> None:
        with freeze_time(moment):
            instance.report_runless_asset_event(AssetMaterialization(key))

    start = datetime.now(UTC).replace(microsecond=0)
    assert set(states_at(start).values()) == {UNKNOWN}, "never materialized: freshness is unknown"
    for key in KEYS:
        materialize(key, start)
    assert states_at(start + timedelta(minutes=1)) == dict.fromkeys(
        ("server_metrics", "log_summary", "hdfs_log_summary"), PASS
    )

    # Nothing runs from here on: the schedules are off.
    missed_one = start + METRICS_PERIOD + SLACK + SECOND
    assert states_at(missed_one) == {"server_metrics": WARN, "log_summary": PASS, "hdfs_log_summary": PASS}
    missed_two = start + 2 * METRICS_PERIOD + SLACK + SECOND
    assert states_at(missed_two) == {"server_metrics": FAIL, "log_summary": PASS, "hdfs_log_summary": PASS}
    logs_missed_one = start + LOGS_PERIOD + SLACK + SECOND
    assert states_at(logs_missed_one) == {"server_metrics": FAIL, "log_summary": WARN, "hdfs_log_summary": WARN}
    logs_missed_two = start + 2 * LOGS_PERIOD + SLACK + SECOND
    assert set(states_at(logs_missed_two).values()) == {FAIL}

    materialize(AssetKey("server_metrics"), logs_missed_two)
    assert states_at(logs_missed_two + timedelta(seconds=30)) == {
        "server_metrics": PASS,
        "log_summary": FAIL,
        "hdfs_log_summary": FAIL,
    }
