"""How often each asset is refreshed, and what follows from it: the schedules' cron strings, the
freshness policies the UI shows, and the concurrency pools that keep two runs of an asset apart.

One source of truth: a schedule's period sets its cron string and its assets' freshness windows,
so changing one cannot leave the other behind.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import FreshnessPolicy

METRICS_PERIOD = timedelta(minutes=2)
"""The seed's 2-minute batch of server_metrics."""
LOGS_PERIOD = timedelta(minutes=5)
"""One 5-minute window of log_summary (and its HDFS copy)."""
SLACK = timedelta(minutes=1)
"""Room for a run to be queued and to finish after its tick."""

INGEST_METRICS_POOL = "ingest_metrics"
"""server_metrics: a second run waits instead of racing the first on the stored offsets."""
SUMMARIZE_LOGS_POOL = "summarize_logs"
"""log_summary: one Spark query per checkpoint at a time."""
HDFS_SUMMARY_POOL = "hdfs_summary"
"""hdfs_log_summary: one upload to the HDFS path at a time."""


def every(period: timedelta) -> str:
    """A cron string firing every `period` (whole minutes dividing an hour), aligned to the hour."""
    minutes, remainder = divmod(int(period.total_seconds()), 60)
    if remainder or minutes < 1 or 60 % minutes:
        raise ValueError(f"a schedule period of {period} is not a whole number of minutes dividing an hour")
    return f"*/{minutes} * * * *"


def freshness_for(period: timedelta) -> FreshnessPolicy:
    """Warn once a tick was missed (period + slack), fail once two were (2 x period + slack)."""
    return FreshnessPolicy.time_window(warn_window=period + SLACK, fail_window=2 * period + SLACK)
