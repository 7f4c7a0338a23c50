"""log_summary: load-balancer logs counted per 5-minute window by Spark, and its checks.

The stored summary (`log_summary/summary_state.json` under SML_DATA_DIR) is the memory of the
asset: window counts, the newest event time (hence the watermark and `final`), and the id of the
Spark checkpoint plus the last batch merged from it. `output_log_summary.csv` is rendered from it.

A deleted checkpoint is rebuilt, not refused: the topic is replayed from earliest into a fresh
checkpoint and merged under the rules of `sml_assets.windows.merge_batch` (final windows frozen,
counts never decrease), so nothing is counted twice.
"""

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
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
from sml_assets.logs_stream import (
    CHECKPOINT_DIR,
    SUMMARY_DIR,
    StreamRun,
    open_checkpoint,
    run_log_summary_stream,
    stream_paths,
)
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.windows import (
    CATEGORIES,
    CSV_COLUMNS,
    EPOCH,
    WINDOW,
    BatchUpdate,
    MergeResult,
    Summary,
    SummaryRow,
    from_json,
    merge_batch,
    newly_final,
    render_csv,
    rows,
    to_json,
)

STATE_FILE = "summary_state.json"
PREVIEW_WINDOWS = 12


def state_path(storage: LocalStorage) -> Path:
    return storage.subdir(SUMMARY_DIR) / STATE_FILE


def load_summary(path: Path) -> Summary:
    """The stored summary, or an empty one before the first run."""
    if not path.exists():
        return Summary()
    try:
        return from_json(path.read_text())
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"stored log summary {path} is unreadable ({error}): delete it and the checkpoint "
            f"folder to rebuild the summary from the topic"
        ) from error


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, fsync, then rename over it: readers see the old or the new file.

    mkstemp creates the file 0600; the summary is for other readers too, so it becomes 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class SummaryMerger:
    """The foreachBatch side: merge each batch and persist the summary before Spark commits it,
    so a crash replays the batch and the batch-id check skips what was already stored."""

    path: Path
    summary: Summary
    results: list[MergeResult] = field(default_factory=list)

    def __call__(self, batch: BatchUpdate) -> None:
        result = merge_batch(self.summary, batch)
        if not result.replayed:
            write_atomically(self.path, to_json(result.summary))
        self.summary = result.summary
        self.results.append(result)


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
    paths = stream_paths(storage)
    state = state_path(storage)
    before = load_summary(state)
    marks = kafka.watermarks(kafka.logs_topic)
    checkpoint = open_checkpoint(paths, expected_id=before.query_id)
    rebuilt = checkpoint.fresh and before.query_id is not None
    if rebuilt:
        trimmed = {p: m.low for p, m in marks.items() if m.low > 0}
        context.log.warning(
            f"Spark checkpoint {paths.windows_checkpoint} is missing or not the one the summary "
            f"{state} was built with: replaying {kafka.logs_topic} from earliest into a new "
            "checkpoint; final windows keep their stored counts and no count decreases"
            + (f"; partitions {trimmed} no longer start at offset 0, so windows older than "
               "their first record keep their stored counts" if trimmed else "")
        )
    elif checkpoint.discarded:
        context.log.warning(
            f"no stored summary at {state} for the existing checkpoint {paths.windows_checkpoint}: "
            f"discarded it; rebuilding the summary from the start of {kafka.logs_topic}"
        )
    merger = SummaryMerger(path=state, summary=before)
    run = run_log_summary_stream(
        spark.session(), kafka.spark_source_options(), kafka.logs_topic, paths, checkpoint, merger
    )
    after = merger.summary
    summary_rows = rows(after)
    write_atomically(storage.summary_csv, render_csv(summary_rows))
    return MaterializeResult(metadata=run_metadata(before, after, merger.results, run, rebuilt, storage))


def run_metadata(
    before: Summary,
    after: Summary,
    results: list[MergeResult],
    run: StreamRun,
    rebuilt: bool,
    storage: LocalStorage,
) -> dict[str, MetadataValue]:
    """What a person reading the run wants: how much came in, what changed, what was set aside."""
    summary_rows = rows(after)
    updated = {start for result in results for start in result.updated}
    counted = sum(result.counted for result in results)
    late = None if rebuilt else max(0, run.parsed_rows - counted)
    watermark = after.watermark
    return {
        "windows_updated": MetadataValue.int(len(updated)),
        "windows_newly_final": MetadataValue.int(len(newly_final(before, after))),
        "windows_final": MetadataValue.int(sum(row.final for row in summary_rows)),
        "windows_total": MetadataValue.int(len(summary_rows)),
        "input_rows": MetadataValue.int(run.input_rows),
        "parsed_rows": MetadataValue.int(run.parsed_rows),
        "rejects": MetadataValue.int(run.rejected_rows),
        "late_dropped": MetadataValue.int(late) if late is not None else MetadataValue.text(
            "n/a: checkpoint rebuilt, the replay re-read events already counted"
        ),
        "late_rows_dropped_spark": MetadataValue.int(run.late_rows_dropped),
        "rows_per_s": MetadataValue.float(
            round(run.input_rows / run.duration_s, 1) if run.duration_s > 0 else 0.0
        ),
        "duration_s": MetadataValue.float(round(run.duration_s, 2)),
        "spark_batches": MetadataValue.int(run.batches),
        "end_offsets": MetadataValue.json(run.end_offsets),
        "watermark": MetadataValue.text(
            "none yet" if watermark is None else watermark.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        "checkpoint_id": MetadataValue.text(run.checkpoint_id),
        "checkpoint_rebuilt": MetadataValue.bool(rebuilt),
        "path": MetadataValue.path(str(storage.summary_csv)),
        "rejects_path": MetadataValue.path(str(stream_paths(storage).rejects_dir)),
        "preview": MetadataValue.md(preview_markdown(summary_rows)),
        "newest windows": windows_table(summary_rows, PREVIEW_WINDOWS),
    }


def read_summary_csv(storage: LocalStorage) -> pd.DataFrame | None:
    path = storage.summary_csv
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"window_start": str, "window_end": str})


def _missing(storage: LocalStorage) -> AssetCheckResult:
    return AssetCheckResult(
        passed=False, description=f"{storage.summary_csv} does not exist: materialize log_summary"
    )


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


@asset_check(
    asset=log_summary, blocking=True, description="Every window is 5 minutes long and aligned to 5 minutes."
)
def log_summary_windows_are_aligned(storage: LocalStorage) -> AssetCheckResult:
    frame = read_summary_csv(storage)
    if frame is None:
        return _missing(storage)
    bad = [
        start for start, end in zip(frame["window_start"], frame["window_end"])
        if not _aligned_window(start, end)
    ]
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
            f"negative counts or total != sum of categories in windows: "
            f"{', '.join(bad['window_start'].head(10))}" if not bad.empty else None
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
