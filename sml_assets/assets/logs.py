"""log_summary: load-balancer logs counted per 5-minute window by Spark, and its checks.

The asset only runs `sml_assets.summarize.summarize_logs` (state, Spark, merge, CSV) and turns its
report into metadata, as `server_metrics` does with `ingest_metrics`.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from sml_assets.assets.previews import windows_table
from sml_assets.assets.topics import LOGS_TOPIC_KEY
from sml_assets.cadence import LOGS_PERIOD, SUMMARIZE_LOGS_POOL, freshness_for
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.summarize import LogSummaryReport, summarize_logs
from sml_assets.windows import (
    CATEGORIES,
    CSV_COLUMNS,
    EPOCH,
    WINDOW,
    SummaryRow,
    newly_final,
    rows,
)

if TYPE_CHECKING:
    import pandas as pd

PREVIEW_WINDOWS = 12


def preview_markdown(summary_rows: list[SummaryRow]) -> str:
    """The newest windows as a markdown table, newest first."""
    header = "| " + " | ".join(CSV_COLUMNS) + " |"
    rule = "|" + "---|" * len(CSV_COLUMNS)
    lines = [header, rule]
    for row in reversed(summary_rows[-PREVIEW_WINDOWS:]):
        lines.append(
            f"| {row.window_start} | {row.window_end} | {row.GET_success} | {row.GET_failure} | "
            f"{row.POST_success} | {row.POST_failure} | {row.total} | {str(row.final).lower()} |"
        )
    return "\n".join(lines) if summary_rows else "(no windows yet)"


@asset(
    deps=[LOGS_TOPIC_KEY],
    group_name="logs",
    kinds={"spark", "csv"},
    pool=SUMMARIZE_LOGS_POOL,
    freshness_policy=freshness_for(LOGS_PERIOD),
    description=(
        "output_log_summary.csv: GET/POST successes and failures per 5-minute window of the "
        "load-balancer logs, by Spark Structured Streaming with a 10-minute watermark; one row per "
        "window, `final` once the watermark has passed its end."
    ),
)
def log_summary(
    context: AssetExecutionContext,
    kafka: KafkaResource,
    spark: SparkResource,
    storage: LocalStorage,
) -> MaterializeResult:
    """Process the logs that arrived since the last run (availableNow), merge, write the CSV."""
    report = summarize_logs(kafka, spark, storage, context.log)
    return MaterializeResult(metadata=run_metadata(report))


def run_metadata(report: LogSummaryReport) -> dict[str, MetadataValue]:
    """What a person reading the run wants: how much came in, what changed, what was set aside."""
    run, after = report.run, report.after
    summary_rows = rows(after)
    updated = {start for result in report.results for start in result.updated}
    counted = sum(result.counted for result in report.results)
    late = None if report.rebuilt else max(0, run.parsed_rows - counted)
    watermark = after.watermark
    return {
        "windows_updated": MetadataValue.int(len(updated)),
        "windows_newly_final": MetadataValue.int(len(newly_final(report.before, after))),
        "windows_final": MetadataValue.int(sum(row.final for row in summary_rows)),
        "windows_total": MetadataValue.int(len(summary_rows)),
        "input_rows": MetadataValue.int(run.input_rows),
        "parsed_rows": MetadataValue.int(run.parsed_rows),
        "rejects": MetadataValue.int(run.rejected_rows),
        "rejects_by_reason": MetadataValue.json(run.rejects_by_kind),
        "late_dropped": MetadataValue.int(late)
        if late is not None
        else MetadataValue.text("n/a: checkpoint rebuilt, the replay re-read events already counted"),
        "late_rows_dropped_spark": MetadataValue.int(sum(result.late for result in report.results)),
        "rows_per_s": MetadataValue.float(round(run.input_rows / run.duration_s, 1) if run.duration_s > 0 else 0.0),
        "duration_s": MetadataValue.float(round(run.duration_s, 2)),
        "spark_batches": MetadataValue.int(run.batches),
        "end_offsets": MetadataValue.json(run.end_offsets),
        "watermark": MetadataValue.text("none yet" if watermark is None else watermark.strftime("%Y-%m-%dT%H:%M:%SZ")),
        "checkpoint_id": MetadataValue.text(run.checkpoint_id),
        "checkpoint_rebuilt": MetadataValue.bool(report.rebuilt),
        "orphan_queries_stopped": MetadataValue.json(report.orphans_stopped),
        "journals_of_killed_runs_removed": MetadataValue.int(report.journals_removed),
        "waited_for_other_run_s": MetadataValue.float(round(report.waited_s, 2)),
        "path": MetadataValue.path(str(report.csv_path)),
        "rejects_path": MetadataValue.path(str(report.rejects_dir)),
        "preview": MetadataValue.md(preview_markdown(summary_rows)),
        "newest windows": windows_table(summary_rows, PREVIEW_WINDOWS),
    }


def read_summary_csv(storage: LocalStorage) -> "pd.DataFrame | None":
    """The CSV as pandas reads it; pandas is imported here so the code location does not load it."""
    import pandas as pd

    path = storage.summary_csv
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"window_start": str, "window_end": str})


def _missing(storage: LocalStorage) -> AssetCheckResult:
    return AssetCheckResult(passed=False, description=f"{storage.summary_csv} does not exist: materialize log_summary")


@asset_check(asset=log_summary, blocking=True, description="Each window appears on one row only.")
def log_summary_has_no_duplicate_windows(storage: LocalStorage) -> AssetCheckResult:
    frame = read_summary_csv(storage)
    if frame is None:
        return _missing(storage)
    duplicated = sorted(set(frame.loc[frame["window_start"].duplicated(), "window_start"]))
    return AssetCheckResult(
        passed=not duplicated,
        metadata={"duplicate_windows": MetadataValue.int(len(duplicated))},
        description=f"duplicated windows: {', '.join(duplicated[:10])}" if duplicated else None,
    )


@asset_check(asset=log_summary, blocking=True, description="Every window is 5 minutes long and aligned to 5 minutes.")
def log_summary_windows_are_aligned(storage: LocalStorage) -> AssetCheckResult:
    frame = read_summary_csv(storage)
    if frame is None:
        return _missing(storage)
    bad = [start for start, end in zip(frame["window_start"], frame["window_end"]) if not _aligned_window(start, end)]
    return AssetCheckResult(
        passed=not bad,
        metadata={"misaligned_windows": MetadataValue.int(len(bad))},
        description=f"windows not 5 minutes long or not aligned: {', '.join(bad[:10])}" if bad else None,
    )


@asset_check(
    asset=log_summary,
    blocking=True,
    description="Counts are non-negative and total equals the sum of the four categories.",
)
def log_summary_counts_add_up(storage: LocalStorage) -> AssetCheckResult:
    frame = read_summary_csv(storage)
    if frame is None:
        return _missing(storage)
    parts = frame[list(CATEGORIES)]
    bad = frame.loc[(parts < 0).any(axis=1) | (frame["total"] < 0) | (parts.sum(axis=1) != frame["total"])]
    return AssetCheckResult(
        passed=bad.empty,
        metadata={"bad_rows": MetadataValue.int(len(bad))},
        description=(
            f"negative counts or total != sum of categories in windows: {', '.join(bad['window_start'].head(10))}"
            if not bad.empty
            else None
        ),
    )


def _aligned_window(start: str, end: str) -> bool:
    try:
        begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return False
    if begin.tzinfo is None or finish.tzinfo is None:
        return False
    return finish - begin == WINDOW and (begin - EPOCH) % WINDOW == timedelta(0)
