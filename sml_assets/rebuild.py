"""Rebuild log_summary from the logs topic: the way out of a summary poisoned by a wrong clock.

    python -m sml_assets.rebuild log-summary

Before SML_MAX_CLOCK_SKEW, one line dated a year ahead moved Spark's watermark (kept in the
checkpoint) and the stored summary's newest event time a year forward: every later line was then
dropped as late, and merging a replay keeps such a summary's windows. This command moves the stored
summary, the Spark checkpoint and the rejects aside (to `log_summary/discarded-<time>/` under
SML_DATA_DIR, for inspection), then runs `summarize_logs_job` once in this process, which replays
the topic from its earliest offset under today's rules and writes the CSV and its HDFS copy.

Uses the environment of the runs (SML_* variables, DAGSTER_HOME to record the run). Refuses while a
run of summarize_logs_job is in flight, and when retention already deleted the topic's first records
(the rebuilt summary would lack their windows) unless `--allow-trimmed` says that is acceptable.
If the run fails, the next run of the job (scheduled or by hand) does the same rebuild.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance

from sml_assets.automation import (
    CONCURRENCY_TAG,
    SUMMARIZE_LOGS_CONCURRENCY,
    run_in_flight,
)
from sml_assets.definitions import defs
from sml_assets.logs_stream import SUMMARY_DIR, stream_paths
from sml_assets.resources import resources_now
from sml_assets.resources.kafka import KafkaUnavailableError
from sml_assets.resources.storage import LocalStorage
from sml_assets.run_lease import RUN_LOCK_WAIT_S
from sml_assets.settings import data_dir, setting_value
from sml_assets.spark_storage import move
from sml_assets.summarize import STATE_FILE, state_path, summary_lock

JOB = "summarize_logs_job"


def discard_summary(storage: LocalStorage, now: datetime | None = None, wait_s: float = RUN_LOCK_WAIT_S) -> Path:
    """Move the stored summary, the checkpoints and the rejects into one folder; return it.

    Under the run lock (`exclusive_run`): a log_summary run working on them (a CLI's, outside
    Dagster's view) is waited for, not pulled from under."""
    with summary_lock(storage, waiting=lambda text: print(text, file=sys.stderr), wait_s=wait_s):
        return _discard(storage, now)


def _discard(storage: LocalStorage, now: datetime | None) -> Path:
    """`discard_summary`'s moves.

    The checkpoints and rejects go to a folder of the same name on SML_SPARK_STORAGE_URL (the same
    folder when that is the default, SML_DATA_DIR).

    The next log_summary run then finds no summary and no checkpoint, and replays the topic from
    earliest into an empty summary. The CSV stays in place until that run replaces it atomically."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = storage.subdir(SUMMARY_DIR) / f"discarded-{stamp}"
    target.mkdir()
    state = state_path(storage)
    if state.exists():
        shutil.move(str(state), str(target / STATE_FILE))
    paths = stream_paths(storage)
    spark_target = storage.spark_root() / SUMMARY_DIR / f"discarded-{stamp}"
    for source, name in ((paths.checkpoint_root, "checkpoint"), (paths.rejects_dir, "rejects")):
        if source.exists():
            move(source, spark_target / name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sml_assets.rebuild", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("log-summary", help="rebuild log_summary and its HDFS copy from the topic")
    command.add_argument(
        "--allow-trimmed",
        action="store_true",
        help="rebuild even though retention deleted the topic's first records (their windows are lost)",
    )
    command.add_argument(
        "--discard-only",
        action="store_true",
        help="only set the summary aside; the next run of summarize_logs_job recounts the topic",
    )
    args = parser.parse_args(argv)
    storage = LocalStorage(data_dir=str(data_dir()), spark_storage_url=setting_value("SML_SPARK_STORAGE_URL"))
    if args.discard_only:
        aside = discard_summary(storage)
        print(
            f"moved the stored summary, checkpoint and rejects to {aside}; "
            f"the next run of {JOB} recounts the logs topic from earliest"
        )
        return 0
    kafka = resources_now().kafka
    try:
        marks = kafka.watermarks(kafka.logs_topic)
    except KafkaUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    trimmed = {partition: m.low for partition, m in marks.items() if m.low > 0}
    if trimmed and not args.allow_trimmed:
        print(
            f"error: retention deleted the first records of {kafka.logs_topic} (partitions and first "
            f"offsets left: {trimmed}); a rebuild would lose their windows. Pass --allow-trimmed to "
            "rebuild from what is left.",
            file=sys.stderr,
        )
        return 1
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    in_flight = run_in_flight(instance, JOB)
    if in_flight:
        print(f"error: run {in_flight} of {JOB} is in flight; wait for it, then run this again", file=sys.stderr)
        return 1
    aside = discard_summary(storage)
    print(f"moved the stored summary, checkpoint and rejects to {aside}; replaying {kafka.logs_topic} from earliest")
    result = defs.get_job_def(JOB).execute_in_process(
        instance=instance,
        tags={CONCURRENCY_TAG: SUMMARIZE_LOGS_CONCURRENCY, "sml/trigger": "rebuild"},
        raise_on_error=False,
    )
    if not result.success:
        print(
            f"error: run {result.run_id} of {JOB} failed (see its logs); the next run of {JOB} "
            "rebuilds the summary the same way",
            file=sys.stderr,
        )
        return 1
    print(f"rebuilt {storage.summary_csv} (run {result.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
