"""The *how* of `log_summary`: one `summarize_logs` run, the counterpart of `ingest.ingest_metrics`.

The stored summary (`log_summary/summary_state.json` under SML_DATA_DIR) is the memory of the
asset: window counts, the newest event time (hence the watermark and `final`), the window size
and watermark delay it was counted with, and the id of the Spark checkpoint plus the last batch
merged from it. `output_log_summary.csv` is rendered from it.

A deleted checkpoint is rebuilt, not refused: the topic is replayed from earliest into a fresh
checkpoint and merged under the rules of `sml_assets.windows.merge_batch` (final windows frozen,
counts never decrease), so nothing is counted twice. A run with nothing new since the checkpoint's
last committed batch starts no Spark session (`logs_stream.caught_up`) and rewrites the CSV from
the stored summary. A changed window size or watermark delay is
refused with what to do: stored counts cannot be re-cut into other windows.

    python -m sml_assets.rebuild log-summary    # set the summary aside and recount the topic
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sml_assets.logs_stream import (
    SUMMARY_DIR,
    Checkpoint,
    StreamPaths,
    StreamRun,
    caught_up,
    check_checkpoint_topic,
    open_checkpoint,
    run_log_summary_stream,
    stream_paths,
    translate_stream_error,
)
from sml_assets.python_workers import translate_worker_error
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import DAEMON_SETTING, SparkResource, daemon_warning, is_remote
from sml_assets.resources.storage import LocalStorage
from sml_assets.run_lease import RUN_LOCK_WAIT_S, RunLease, clear, exclusive_run, other_runs, take_lease
from sml_assets.spark_storage import StoragePath
from sml_assets.summary_merge import SummaryMerger, write_atomically
from sml_assets.windows import (
    MergeResult,
    Summary,
    SummaryShapeError,
    from_json,
    render_csv,
    rows,
)

STATE_FILE = "summary_state.json"
REBUILD_COMMAND = "python -m sml_assets.rebuild log-summary"


@dataclass(frozen=True)
class LogSummaryReport:
    """What one run did: the summary before and after, each merged batch, Spark's own counts."""

    before: Summary
    after: Summary
    results: list[MergeResult]
    run: StreamRun
    rebuilt: bool
    csv_path: Path
    rejects_dir: StoragePath
    orphans_stopped: list[str] = field(default_factory=list)
    """Queries of killed runs stopped in the Spark Connect server before this run's query."""
    journals_removed: int = 0
    """Batch journals of killed runs removed at the start."""
    waited_s: float = 0.0
    """Seconds waited for another run on the same summary to end."""


def summary_folder(storage: LocalStorage) -> Path:
    """The summary's folder: its state, the run lock and the runs' leases."""
    return storage.subdir(SUMMARY_DIR)


def state_path(storage: LocalStorage) -> Path:
    return summary_folder(storage) / STATE_FILE


def summary_lock(
    storage: LocalStorage, waiting: Callable[[str], None], wait_s: float = RUN_LOCK_WAIT_S
) -> AbstractContextManager[float]:
    """The run lock of `storage`'s summary (`exclusive_run`), beside the summary state: the runs,
    `rebuild log-summary` and `replay adopt-logs` all take this one."""
    return exclusive_run(summary_folder(storage), wait_s, waiting)


def load_summary(path: Path) -> Summary:
    """The stored summary, or an empty one before the first run."""
    if not path.exists():
        return Summary()
    try:
        return from_json(path.read_text())
    except SummaryShapeError as error:
        raise SummaryShapeError(
            f"{path}: {error}: put the constants back, or recount the topic "
            f"under the new ones with '{REBUILD_COMMAND}' (same SML_DATA_DIR; windows older than "
            "the topic's retention are then lost)"
        ) from None
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"stored log summary {path} is unreadable ({error}): run '{REBUILD_COMMAND}' "
            "to rebuild the summary from the topic"
        ) from error


def summarize_logs(
    kafka: KafkaResource, spark: SparkResource, storage: LocalStorage, log: logging.Logger
) -> LogSummaryReport:
    """Process the logs that arrived since the last run (availableNow), merge, write the CSV.

    A run waits for another run on the same summary to end (`exclusive_run`). First, under this
    run's lease, what killed runs left is cleared (`clean_up_after_killed_runs`), before the stored
    summary is read: an orphan query would otherwise merge behind this run's back."""
    with summary_lock(storage, waiting=log.warning) as waited:
        lease = take_lease(summary_folder(storage))
        try:
            orphans, journals = clean_up_after_killed_runs(spark, lease, log)
            report = _summarize(kafka, spark, storage, log, lease)
        finally:
            lease.release()
    return dataclasses.replace(report, orphans_stopped=orphans, journals_removed=journals, waited_s=waited)


def clean_up_after_killed_runs(spark: SparkResource, lease: RunLease, log: logging.Logger) -> tuple[list[str], int]:
    """Stop the queries killed runs left in the Spark Connect server, then remove their journals.

    Only runs that are gone are touched (their lease is unlocked); a live run's lease, query and
    journal are left alone. Without SML_SPARK_REMOTE a killed run's Spark died with it: only the
    journals are left to remove."""
    folder = lease.path.parent
    live, dead = other_runs(folder, own=lease.token)
    for other in live:
        log.warning(f"another log_summary run is live (it holds {other}): its query and journal are left alone")
    stopped: list[str] = []
    if spark.remote and any(run.session_id for run in dead):
        from sml_assets.orphans import stop_orphans

        stopped = stop_orphans(spark.remote, dead)
        if stopped:
            log.warning(
                f"stopped {len(stopped)} query(ies) that killed log_summary runs left running in the Spark "
                f"Connect server at {spark.remote}: {', '.join(stopped)}"
            )
    removed = clear(folder, dead)
    if removed:
        log.info(f"removed {removed} batch journal(s) of killed runs from {folder}")
    return stopped, removed


def _summarize(
    kafka: KafkaResource, spark: SparkResource, storage: LocalStorage, log: logging.Logger, lease: RunLease
) -> LogSummaryReport:
    paths = stream_paths(storage)
    state = state_path(storage)
    before = load_summary(state)
    session = kafka.session()
    described = kafka.describe_topic(kafka.logs_topic, session)
    topic_id = described.topic_id
    marks = kafka.watermarks(kafka.logs_topic, described.partitions, session)
    checkpoint = open_checkpoint(paths, expected_id=before.query_id)
    check_checkpoint_topic(paths, checkpoint, kafka.logs_topic, topic_id)
    rebuilt = checkpoint.fresh and before.query_id is not None
    if rebuilt:
        trimmed = {p: m.low for p, m in marks.items() if m.low > 0}
        log.warning(
            f"Spark checkpoint {paths.windows_checkpoint} is missing or not the one the summary "
            f"{state} was built with: replaying {kafka.logs_topic} from earliest into a new "
            "checkpoint; final windows keep their stored counts and no count decreases"
            + (
                f"; partitions {trimmed} no longer start at offset 0, so windows older than "
                "their first record keep their stored counts"
                if trimmed
                else ""
            )
        )
    elif checkpoint.discarded:
        log.warning(
            f"no stored summary at {state} for the existing checkpoint {paths.windows_checkpoint}: "
            f"discarded it; rebuilding the summary from the start of {kafka.logs_topic}"
        )
    merger = SummaryMerger(path=state, summary=before)
    run = caught_up(checkpoint, paths, kafka.logs_topic, {partition: m.high for partition, m in marks.items()})
    if run is not None:
        log.info(f"nothing new in {kafka.logs_topic} since the checkpoint's last committed batch: Spark not started")
    else:
        intended = {partition: m.high for partition, m in marks.items() if m.high > m.low}
        run = _run_stream(kafka, spark, paths, checkpoint, merger, topic_id, lease, intended, log)
        merger.adopt(run.answers)
    write_atomically(storage.summary_csv, render_csv(rows(merger.summary)))
    return LogSummaryReport(
        before=before,
        after=merger.summary,
        results=merger.results,
        run=run,
        rebuilt=rebuilt,
        csv_path=storage.summary_csv,
        rejects_dir=paths.rejects_dir,
    )


def _run_stream(
    kafka: KafkaResource,
    spark: SparkResource,
    paths: StreamPaths,
    checkpoint: Checkpoint,
    merger: SummaryMerger,
    topic_id: str,
    lease: RunLease,
    intended: dict[int, int],
    log: logging.Logger,
) -> StreamRun:
    """The Spark query, its "offsets went backwards" and failed-Python-worker errors translated into
    the fix to run; a query stopped short of `intended` (the offsets the run started for) fails the run.

    The batch journal (used over Spark Connect) sits beside the stored summary, which the server's
    worker writes too, and lives as long as the run's lease; over Connect the lease records the
    session id before the query starts, and the session is released when the query is over (the
    server would otherwise keep an idle one, with its state, until its idle time-out)."""
    session = spark.session()
    remote = is_remote(session)
    if remote:
        session_id: str = session.session_id  # pyright: ignore[reportAttributeAccessIssue]
        lease.record(session_id)
        log.info(f"Spark Connect session {session_id} at {spark.remote} (released when the query is over)")
        leak = daemon_warning(str(spark.remote), session.conf.get(DAEMON_SETTING, None))
        if leak:
            log.warning(leak)
    try:
        return run_log_summary_stream(
            session,
            kafka.spark_source_options(),
            kafka.logs_topic,
            paths,
            checkpoint,
            merger,
            lease.journal,
            max_skew_s=kafka.max_clock_skew_s,
            run_token=lease.token,
            intended=intended,
        )
    except Exception as error:
        python = None if remote else session.sparkContext.pythonExec
        translated = translate_stream_error(error, kafka.logs_topic, topic_id, paths) or translate_worker_error(
            error, spark.master, spark.remote, python
        )
        if translated is None:
            raise
        raise translated from None
    finally:
        if remote:
            session.stop()
