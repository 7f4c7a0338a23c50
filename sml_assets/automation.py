"""Jobs, schedules and sensors: they decide *when*; the assets decide *what*.

Both jobs run in-process: the asset step and its checks share the run's one Python process, so a
run imports the code location (and starts Spark) once instead of once per step. Steps of one run
are sequential anyway (the checks follow the asset), the pools (`pool=` on the assets) are enforced
by the in-process executor as well, and exactly-once never relied on a step having a process of its
own: offsets move in the same transaction as the rows they cover.
"""

from __future__ import annotations

import json

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
    sensor,
)

from sml_assets.assets.metrics import server_metrics
from sml_assets.assets.topics import (
    LOGS_TOPIC_KEY,
    METRICS_TOPIC_KEY,
    TopicSnapshot,
    snapshot_logs_topic,
    snapshot_metrics_topic,
)
from sml_assets.cadence import LOGS_PERIOD, METRICS_PERIOD, every
from sml_assets.resources.database import DatabaseUnavailableError, MetricsDatabase, SchemaMigrationError
from sml_assets.resources.kafka import KafkaResource, KafkaUnavailableError
from sml_assets.resources.storage import LocalStorage
from sml_assets.settings import (
    BACKLOG_THRESHOLD_VARIABLE,
    DEFAULT_BACKLOG_THRESHOLD,
    backlog_threshold,
    check_backlog_threshold,
)

CONCURRENCY_TAG = "sml/concurrency_key"
INGEST_METRICS_CONCURRENCY = "ingest_metrics"
SUMMARIZE_LOGS_CONCURRENCY = "summarize_logs"
BACKLOG_SENSOR_INTERVAL_S = 5
"""A tick only reads offsets (with timeouts), so it can run as often as the daemon's sensor loop
(at most every 5 s): the wait for the tick was most of the backlog's latency at 30 s."""
IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]

ingest_metrics_job = define_asset_job(
    "ingest_metrics_job",
    selection=AssetSelection.assets(server_metrics),
    tags={CONCURRENCY_TAG: INGEST_METRICS_CONCURRENCY},
    executor_def=in_process_executor,
    description="Drain the metrics topic into server_matric (exactly once) and run its checks.",
)


def run_in_flight(instance: DagsterInstance, job_name: str) -> str | None:
    """The id of a queued or running run of `job_name`, if any: a second one would only wait or conflict."""
    runs = instance.get_run_records(RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=1)
    return runs[0].dagster_run.run_id if runs else None


def scheduled_run_unless_in_flight(context: ScheduleEvaluationContext, job_name: str) -> RunRequest | SkipReason:
    """A schedule's tick: a run, unless one of the same job is still queued or running."""
    in_flight = run_in_flight(context.instance, job_name)
    if in_flight:
        return SkipReason(f"run {in_flight} of {job_name} is still in flight")
    return RunRequest(tags={"sml/trigger": "schedule"})


@schedule(
    job=ingest_metrics_job,
    cron_schedule=every(METRICS_PERIOD),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="The seed's 2-minute batch: drain whatever waits, unless a run is already in flight.",
)
def ingest_metrics_every_2_minutes(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    return scheduled_run_unless_in_flight(context, ingest_metrics_job.name)


def build_metrics_backlog_sensor(
    threshold: int | None = None, name: str = "metrics_backlog_sensor"
) -> SensorDefinition:
    """The seed's 'or 1,000 messages' trigger, as a sensor that only reads offsets.

    Each tick reads the topics' end offsets and the stored offsets (both with timeouts), reports
    them as observations of the topic assets when they changed, and requests a run when at least
    `threshold` metrics messages wait and no run is in flight. The cursor remembers the last
    offsets seen, and the run key (the end offsets) stops a second request for the same backlog.
    Without `threshold`, each tick reads SML_METRICS_BACKLOG_THRESHOLD, so a bad value fails the
    tick with a message naming it instead of breaking the loading of the code location.
    """
    if threshold is not None:
        check_backlog_threshold(threshold)
    shown = (
        f"{threshold:,}"
        if threshold is not None
        else f"{BACKLOG_THRESHOLD_VARIABLE} (default {DEFAULT_BACKLOG_THRESHOLD:,})"
    )

    @sensor(
        name=name,
        job=ingest_metrics_job,
        minimum_interval_seconds=BACKLOG_SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Starts {ingest_metrics_job.name} when at least {shown} metrics messages wait.",
    )
    def metrics_backlog_sensor(
        context: SensorEvaluationContext,
        kafka: KafkaResource,
        metrics_db: MetricsDatabase,
        storage: LocalStorage,
    ) -> SensorResult:
        wanted = threshold if threshold is not None else backlog_threshold()
        previous = json.loads(context.cursor) if context.cursor else {}
        try:
            metrics = snapshot_metrics_topic(kafka, metrics_db)
        except (KafkaUnavailableError, DatabaseUnavailableError, SchemaMigrationError) as error:
            reason = f"could not read the backlog: {error}"
            return SensorResult(skip_reason=SkipReason(reason), cursor=context.cursor)
        try:
            logs: TopicSnapshot | None = snapshot_logs_topic(kafka, storage)
        except KafkaUnavailableError as error:
            context.log.warning(f"logs topic not observed this tick: {error}")
            logs = None
        seen = {
            "metrics_end": metrics.end_total,
            "metrics_backlog": metrics.backlog,
            "logs_end": logs.end_total if logs is not None else previous.get("logs_end"),
        }
        events = []
        if (previous.get("metrics_end"), previous.get("metrics_backlog")) != (
            metrics.end_total,
            metrics.backlog,
        ):
            events.append(metrics.observation(METRICS_TOPIC_KEY))
        if logs is not None and previous.get("logs_end") != logs.end_total:
            events.append(logs.observation(LOGS_TOPIC_KEY))
        cursor = json.dumps(seen, sort_keys=True)
        if metrics.backlog < wanted:
            reason = f"{metrics.backlog:,} metrics messages wait in {metrics.topic}, below the threshold of {wanted:,}"
            return SensorResult(skip_reason=SkipReason(reason), cursor=cursor, asset_events=events)
        in_flight = run_in_flight(context.instance, ingest_metrics_job.name)
        if in_flight:
            reason = f"{metrics.backlog:,} metrics messages wait, but run {in_flight} is still in flight"
            return SensorResult(skip_reason=SkipReason(reason), cursor=cursor, asset_events=events)
        request = RunRequest(
            run_key=f"backlog-{metrics.topic}-{metrics.end_total}",
            tags={"sml/trigger": "backlog", "sml/backlog": str(metrics.backlog)},
        )
        return SensorResult(run_requests=[request], cursor=cursor, asset_events=events)

    return metrics_backlog_sensor


summarize_logs_job = define_asset_job(
    "summarize_logs_job",
    selection=AssetSelection.groups("logs"),
    tags={CONCURRENCY_TAG: SUMMARIZE_LOGS_CONCURRENCY},
    executor_def=in_process_executor,
    description="Count the logs that arrived since the last run into log_summary (Spark), then copy it to HDFS.",
)


@schedule(
    job=summarize_logs_job,
    cron_schedule=every(LOGS_PERIOD),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes, one window's worth: summarize new logs unless a run is already in flight.",
)
def summarize_logs_every_5_minutes(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    return scheduled_run_unless_in_flight(context, summarize_logs_job.name)


JOBS = [ingest_metrics_job, summarize_logs_job]
SCHEDULES: list[ScheduleDefinition] = [ingest_metrics_every_2_minutes, summarize_logs_every_5_minutes]
SENSORS: list[SensorDefinition] = [build_metrics_backlog_sensor()]

hdfs_log_summary_automation = AutomationConditionSensorDefinition(
    "hdfs_log_summary_automation",
    target=AssetSelection.assets("hdfs_log_summary"),
    default_status=DefaultSensorStatus.RUNNING,
    run_tags={CONCURRENCY_TAG: SUMMARIZE_LOGS_CONCURRENCY},
    description="Evaluates hdfs_log_summary's eager condition, so HDFS follows every log_summary update.",
)
SENSORS.append(hdfs_log_summary_automation)
