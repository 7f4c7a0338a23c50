"""The Spark Structured Streaming query behind `log_summary`: one query, one pass per batch.

One query reads the logs topic with `availableNow` (a materialization processes what arrived
since the last one and stops) and hands each micro-batch to `process_batch`, whose one pass
(`count_lines`) gives the window counts, the rejects per reason and the line counts. Its outputs:

- the lines that did not parse, with a reason, written (only when the batch has any, in a second
  read of the batch) to `rejects/batch_id=<n>/` (overwritten
  whole when Spark replays the batch after a crash, so each reject is kept exactly once);
- the batch's counts per 5-minute tumbling window, handed to `on_batch`, where
  `sml_assets.windows.merge_increments` applies the 10-minute watermark exactly as Spark's stateful
  aggregation would, with the query's state kept in the stored summary.

Parsing, the skew rule and the counting are `sml_assets.log_batches` on Arrow batches in Spark's
Python workers (`parse_log_line`'s verdicts, a vectorised path for the common line, then
`sml_assets.parsing.skew_reason`): a line dated ahead of its record timestamp or of the clock by
more than SML_MAX_CLOCK_SKEW is a reject, so it is never counted and never moves the watermark.

A run whose end offsets equal those of the checkpoint's newest committed batch has nothing to do:
`caught_up` reports it without starting Spark at all.
"""

from __future__ import annotations

import io
import json
import pickle
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sml_assets.parsing import DEFAULT_MAX_CLOCK_SKEW_S, SKEW_REFERENCES
from sml_assets.spark_storage import StoragePath, move, remove_tree
from sml_assets.windows import (
    CATEGORIES,
    BatchUpdate,
    Counts,
    WindowUpdate,
    from_epoch_seconds,
    shape_tag,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

    from sml_assets.resources.storage import LocalStorage

SKEW_KINDS = tuple(f"event time s ahead of {reference}" for reference in SKEW_REFERENCES)
REJECT_KINDS = (
    "empty message (no value)",
    "not UTF-8",
    "empty message",
    "not an access-log line",
    "date is not RFC 1123",
    "date is not a valid time",
    "date has the wrong weekday",
    "expected 'METHOD path status size' after the date",
    "method is not GET or POST",
    "status is not a 3-digit HTTP status",
    "size is not a whole number of bytes",
    *SKEW_KINDS,
)
"""Every reason `parse_lines` gives, without particulars (`sml_assets.parsing.reason_kind`),
in the order it checks them; `process_batch` counts each per batch."""
REJECTS_BATCH_PREFIX = "batch_id="
MARKER_FILE = "sml-checkpoint-id"
TOPIC_FILE = "sml-checkpoint-topic.json"
"""The topic (name and Kafka topic id) the checkpoint's offsets belong to."""
LOGS_TOPIC_VARIABLE = "SML_LOGS_TOPIC"
SPARK_LOST_OFFSETS = (
    "Some data may have been missed",
    "offset was changed from",
    "are gone",
    "Cannot find earliest offsets",
    "KAFKA_DATA_LOSS",
    "START_OFFSET_GREATER_THAN_END_OFFSET",
    "LOST_TOPIC_PARTITIONS",
    "MISMATCHED_TOPIC_PARTITIONS",
    "START_OFFSET_DOES_NOT_MATCH_ASSIGNED",
)
"""What Spark's Kafka source says when the checkpoint's offsets went backwards or its partitions
are missing (spark-sql-kafka's KafkaOffsetReaderBase, KafkaMicroBatchStream, error conditions)."""
CHECKPOINT_DIR = "spark-checkpoints/log_summary"
SUMMARY_DIR = "log_summary"


class QueryStoppedError(RuntimeError):
    """The run's query ended without an error before it read to the offsets the run started for:
    something outside the run stopped it (an operator, or a query started on the same checkpoint)."""


class LogsTopicChangedError(RuntimeError):
    """The logs topic is not the one log_summary's checkpoint read: recreated, or SML_LOGS_TOPIC changed."""


@dataclass(frozen=True)
class StreamPaths:
    """Folders of one summary: the query's checkpoint (under one root, beside its id and topic)
    and the rejects."""

    checkpoint_root: StoragePath
    rejects_dir: StoragePath

    @property
    def windows_checkpoint(self) -> StoragePath:
        return self.checkpoint_root / "windows"

    def rejects_of_batch(self, batch_id: int) -> StoragePath:
        return self.rejects_dir / f"{REJECTS_BATCH_PREFIX}{batch_id}"


@dataclass(frozen=True)
class Checkpoint:
    """Identity of the checkpoint a run resumes from; `fresh` when Spark starts from scratch,
    `discarded` when an existing checkpoint did not belong to the stored summary."""

    checkpoint_id: str
    fresh: bool
    discarded: bool = False


@dataclass(frozen=True)
class StreamRun:
    """What one availableNow run did, counted by `process_batch` in each batch."""

    checkpoint_id: str
    batches: int
    input_rows: int
    parsed_rows: int
    rejected_rows: int
    rejects_by_kind: dict[str, int]
    """Rejected lines per kind of reason (REJECT_KINDS), only kinds seen in this run."""
    duration_s: float
    end_offsets: dict[str, dict[str, int]]
    answers: tuple[object, ...] = ()
    """What `on_batch` returned for each batch, in batch order (over Spark Connect it ran in the server)."""


def stream_paths(storage: LocalStorage) -> StreamPaths:
    """Where the checkpoints and the rejects live: under SML_SPARK_STORAGE_URL (`storage.spark_root`)."""
    root = storage.spark_root()
    return StreamPaths(checkpoint_root=root / CHECKPOINT_DIR, rejects_dir=root / SUMMARY_DIR / "rejects")


def committed_positions(checkpoint: StoragePath, topic: str) -> dict[int, int] | None:
    """Next offset per partition of `topic` covered by the query's newest committed batch.

    Spark's offset log `offsets/<batch>` holds a version line, the batch metadata, then one JSON
    line per source; a batch counts once `commits/<batch>` exists. `{}` before the first commit,
    None when the log cannot be read (the observation then reports no lag rather than a wrong one).
    """
    commits = checkpoint / "commits"
    try:
        batches = sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit()) if commits.is_dir() else []
        if not batches:
            return {}
        for line in (checkpoint / "offsets" / str(batches[-1])).read_text().splitlines()[2:]:
            offsets = json.loads(line)
            if isinstance(offsets, dict) and topic in offsets:
                return {int(partition): int(offset) for partition, offset in offsets[topic].items()}
    except (OSError, ValueError, AttributeError):
        return None
    return {}


def read_rejects(rejects_dir: StoragePath) -> pd.DataFrame:
    """The rejects of every batch whose folder Spark finished writing (`_SUCCESS`; a crashed
    batch's folder is written again whole by its replay), `kafka_timestamp` in UTC; empty if none."""
    import pandas as pd

    folders = (
        sorted((p for p in rejects_dir.iterdir() if p.name.startswith(REJECTS_BATCH_PREFIX)), key=str)
        if rejects_dir.is_dir()
        else []
    )
    frames = [
        pd.read_parquet(io.BytesIO(part.read_bytes()))
        for folder in folders
        if (folder / "_SUCCESS").is_file()
        for part in sorted(folder.iterdir(), key=str)
        if part.name.endswith(".parquet") and not part.name.startswith(("_", "."))
    ]
    if not frames:
        columns = ["kafka_partition", "kafka_offset", "kafka_timestamp", "line", "reject_reason"]
        return pd.DataFrame(columns=pd.Index(columns))
    rejects = pd.concat(frames, ignore_index=True)
    rejects["kafka_timestamp"] = pd.to_datetime(rejects["kafka_timestamp"], utc=True)
    return rejects


def open_checkpoint(paths: StreamPaths, expected_id: str | None) -> Checkpoint:
    """Resume the checkpoint whose id the stored summary recorded, else start a fresh one.

    Fresh means: replay the topic from earliest with an empty state. That happens on the first
    run, when the checkpoint was deleted (the merge then keeps the stored counts, see
    `sml_assets.windows.merge_batch`), when the summary was deleted but the checkpoint was not
    (resuming would only emit the windows touched from now on), and when the checkpoint is of the
    stateful two-query layout of earlier versions (a `state` folder): its plan cannot resume as
    this one, and the summary it belongs to holds no `StreamState`. Rejects are kept per batch id,
    so the rejects folder starts empty with a fresh checkpoint.
    """
    marker = paths.checkpoint_root / MARKER_FILE
    committed = paths.windows_checkpoint / "commits"
    has_commits = committed.is_dir() and any(committed.iterdir())
    two_query_layout = (paths.windows_checkpoint / "state").exists()
    if (
        expected_id is not None
        and has_commits
        and not two_query_layout
        and marker.is_file()
        and marker.read_text().strip() == expected_id
    ):
        return Checkpoint(checkpoint_id=expected_id, fresh=False)
    if paths.checkpoint_root.exists():
        remove_tree(paths.checkpoint_root)
    discarded = has_commits
    if paths.rejects_dir.exists():
        remove_tree(paths.rejects_dir)
    paths.checkpoint_root.mkdir(parents=True)
    paths.rejects_dir.mkdir(parents=True)
    checkpoint_id = f"{uuid.uuid4().hex}-{shape_tag()}"
    marker.write_text(checkpoint_id + "\n")
    return Checkpoint(checkpoint_id=checkpoint_id, fresh=True, discarded=discarded)


def adopt_logs_command(topic_id: str) -> str:
    return shlex.join(["python", "-m", "sml_assets.replay", "adopt-logs", "--topic-id", topic_id])


def check_checkpoint_topic(paths: StreamPaths, checkpoint: Checkpoint, topic: str, topic_id: str) -> None:
    """Before the query starts: a resumed checkpoint must be of this topic, name and id.

    A checkpoint from before sml recorded its topic is taken as it is (Spark's own errors, then
    translated by `translate_stream_error`, catch a mismatch); the record is written from now on.
    """
    record = paths.checkpoint_root / TOPIC_FILE
    current = {"topic": topic, "topic_id": topic_id}
    if not checkpoint.fresh and record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except ValueError:
            recorded = None
        if recorded != current:
            was = recorded if isinstance(recorded, dict) else {}
            what = (
                "was deleted and created again"
                if was.get("topic") == topic
                else f"is not {was.get('topic')!r}, the topic it read"
            )
            raise LogsTopicChangedError(
                f"{LOGS_TOPIC_VARIABLE}={topic} (topic id {topic_id!r}) {what}: log_summary's Spark "
                f"checkpoint {paths.checkpoint_root} holds offsets of topic id {was.get('topic_id')!r}, "
                f"so Spark cannot resume from it; nothing was read. To summarize {topic} from its earliest "
                f"offset into the stored windows, run: {adopt_logs_command(topic_id)}"
            )
    record.write_text(json.dumps(current) + "\n")


def translate_stream_error(
    error: BaseException, topic: str, topic_id: str, paths: StreamPaths
) -> LogsTopicChangedError | None:
    """Spark's "offsets went backwards" / "partitions missing" as one line naming the variable and the fix."""
    text = str(error)
    if not any(marker in text for marker in SPARK_LOST_OFFSETS):
        return None
    return LogsTopicChangedError(
        f"{LOGS_TOPIC_VARIABLE}={topic}: Spark found offsets in log_summary's checkpoint "
        f"{paths.checkpoint_root} that the topic no longer has (its offsets went backwards or partitions "
        f"are missing: it was deleted and created again, or lost data); the query stopped. To summarize "
        f"{topic} from its earliest offset into the stored windows, run: {adopt_logs_command(topic_id)}"
    )


def adopt_logs_topic(paths: StreamPaths) -> StoragePath | None:
    """Move the checkpoint aside (kept, not deleted), so the next run starts a fresh one from earliest."""
    if not paths.checkpoint_root.exists():
        return None
    aside = paths.checkpoint_root.with_name(f"{paths.checkpoint_root.name}.replaced-{uuid.uuid4().hex[:8]}")
    move(paths.checkpoint_root, aside)
    return aside


def kafka_lines(spark: SparkSession, kafka_options: Mapping[str, str], topic: str) -> DataFrame:
    """The logs topic as a stream, from the earliest offset on a fresh checkpoint.

    `kafka_options` is `KafkaResource.spark_source_options()`: the brokers and their security.

    `minPartitions` splits each Kafka partition's offset range over every core Spark has, so a
    one-partition topic is parsed in parallel too (about 2x on 2 cores, benchmarks/bench_logs.py).
    Committed lines only (`kafka.isolation.level`), as `server_metrics` reads: the lines of a
    transaction its producer aborted never happened (Spark's default, read_uncommitted, counted them).
    """
    from pyspark.sql import functions as F

    from sml_assets.resources.spark import parallelism

    return (
        spark.readStream.format("kafka")
        .options(**kafka_options)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("kafka.isolation.level", "read_committed")
        .option("minPartitions", str(parallelism(spark)))
        .load()
        .select(
            F.col("partition").alias("kafka_partition"),
            F.col("offset").alias("kafka_offset"),
            F.col("timestamp").alias("kafka_timestamp"),
            F.col("value"),
        )
    )


def with_clock(raw: DataFrame, now: Column | None = None) -> DataFrame:
    """`raw` with the skew rule's clock as a column (`log_batches.NOW_COLUMN`): `now`, else the one it
    has, else `current_timestamp()`, which in a streaming plan is the micro-batch's time that Spark
    keeps in its offset log, so a replayed batch decides the same."""
    from pyspark.sql import functions as F

    from sml_assets.log_batches import NOW_COLUMN

    if now is None and NOW_COLUMN in raw.columns:
        return raw
    return raw.withColumn(NOW_COLUMN, F.current_timestamp() if now is None else now)


def parse_lines(raw: DataFrame, max_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S, now: Column | None = None) -> DataFrame:
    """Add `line`, `event_time`, `method`, `success` and `reject_reason` (null when the line is valid).

    `sml_assets.log_batches.judge_batches` parses each Arrow batch of `value`s (`mapInArrow`, in
    Spark's Python workers: `parse_log_line`'s verdicts, with a vectorised path for the common line),
    then applies the skew rule (`skew_reason`) against the `kafka_timestamp` column (when there is
    one) and `now` (`with_clock`). The first failing check names the reason.
    """
    from functools import partial

    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    from sml_assets.log_batches import JUDGED_FIELDS, NOW_COLUMN, judge_batches

    clocked = with_clock(raw, now)
    kept = [field for field in clocked.schema.fields if field.name != NOW_COLUMN]
    added = [StructField(field.name, from_arrow_type(field.type)) for field in JUDGED_FIELDS]
    return clocked.mapInArrow(partial(judge_batches, max_skew_s=max_skew_s), StructType([*kept, *added]))


def count_lines(raw: DataFrame, max_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S) -> list[dict[str, Any]]:
    """The lines of `raw` (a clocked batch, `with_clock`) counted per window start and category, and
    per kind of reject (rows without a start): `log_batches.count_batches` judges and counts each
    partition in the Python workers, so only `value`, the record time and the clock go there and a
    few rows per partition come back; those are summed here."""
    from functools import partial

    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    from sml_assets.log_batches import COUNT_FIELDS, NOW_COLUMN, RECORD_COLUMN, count_batches

    needed = [name for name in ("value", RECORD_COLUMN, NOW_COLUMN) if name in raw.columns]
    schema = StructType([StructField(field.name, from_arrow_type(field.type)) for field in COUNT_FIELDS])
    totals: dict[tuple[int | None, str], dict[str, Any]] = {}
    for row in raw.select(*needed).mapInArrow(partial(count_batches, max_skew_s=max_skew_s), schema).collect():
        key = (row["start"], row["label"])
        seen = totals.setdefault(key, {"start": key[0], "label": key[1], "lines": 0, "max_seconds": None})
        seen["lines"] += int(row["lines"])
        newest = row["max_seconds"]
        if newest is not None:
            seen["max_seconds"] = newest if seen["max_seconds"] is None else max(seen["max_seconds"], newest)
    return list(totals.values())


@dataclass(frozen=True)
class BatchCounts:
    """What one micro-batch held: its lines, its rejects by kind, its valid lines per window (increments)."""

    update: BatchUpdate
    lines: int
    parsed: int
    rejects_by_kind: dict[str, int]

    @property
    def rejected(self) -> int:
        return sum(self.rejects_by_kind.values())


def process_batch(
    batch: DataFrame, batch_id: int, checkpoint_id: str, paths: StreamPaths, max_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S
) -> BatchCounts:
    """Count the batch (`with_clock`'s Kafka rows) per window and category, and its rejects per kind,
    in one pass (`count_lines`); then, only when the batch has rejects, write them.

    Writing the rejects reads the batch's offsets from Kafka and parses them again (`parse_lines`):
    caching the batch instead (MEMORY_AND_DISK) made a 500k-line run about twice as slow on 2 cores
    (benchmarks/bench_logs.py). The batch carries the batch time of Spark's offset log (the skew
    rule's clock), so both passes, and a replay of the batch, reject the same lines, and a replay
    overwrites the batch's folder with the same rows.
    """
    from pyspark.sql import functions as F

    groups = count_lines(batch, max_skew_s)
    if any(group["start"] is None for group in groups):
        (
            parse_lines(batch, max_skew_s)
            .where(F.col("reject_reason").isNotNull())
            .select("kafka_partition", "kafka_offset", "kafka_timestamp", "line", "reject_reason")
            .write.mode("overwrite")
            .parquet(str(paths.rejects_of_batch(batch_id)))
        )
    return batch_counts(checkpoint_id, batch_id, groups)


def batch_counts(checkpoint_id: str, batch_id: int, groups: list[dict[str, Any]]) -> BatchCounts:
    """Plain records from the aggregation's rows (start, label, lines, max_seconds): a row without
    a start is a kind of reject, the others one category of one window."""
    per_window: dict[int, dict[str, int]] = {}
    newest: dict[int, int] = {}
    found: dict[str, int] = {}
    for group in groups:
        start, label, lines = group["start"], group["label"], int(group["lines"])
        if start is None:
            found[label] = found.get(label, 0) + lines
            continue
        per_window.setdefault(start, {})[label] = lines
        newest[start] = max(newest.get(start, group["max_seconds"]), group["max_seconds"])
    windows = tuple(
        WindowUpdate(
            start=from_epoch_seconds(start),
            counts=Counts(*(per_window[start].get(name, 0) for name in CATEGORIES)),
            max_event_time=from_epoch_seconds(newest[start]),
        )
        for start in sorted(per_window)
    )
    ordered = {name: found.pop(name) for name in REJECT_KINDS if name in found}
    parsed = sum(sum(counts.values()) for counts in per_window.values())
    rejects_by_kind = {**ordered, **found}
    return BatchCounts(
        update=BatchUpdate(query_id=checkpoint_id, batch_id=batch_id, windows=windows),
        lines=parsed + sum(rejects_by_kind.values()),
        parsed=parsed,
        rejects_by_kind=rejects_by_kind,
    )


def caught_up(
    checkpoint: Checkpoint, paths: StreamPaths, topic: str, end_offsets: Mapping[int, int]
) -> StreamRun | None:
    """The run's report when the checkpoint's newest committed batch ends exactly at the topic's
    end offsets, partition for partition (nothing new: no Spark session is started at all), else None.

    Only committed batches count (`committed_positions`), so a batch planned but not committed
    before a crash still makes the run start Spark and replay it. Offsets behind the committed
    ones, or other partitions, also go to Spark, whose errors name a topic that lost data.
    """
    if checkpoint.fresh:
        return None
    positions = committed_positions(paths.windows_checkpoint, topic)
    if not positions or positions != dict(end_offsets):
        return None
    return StreamRun(
        checkpoint_id=checkpoint.checkpoint_id,
        batches=0,
        input_rows=0,
        parsed_rows=0,
        rejected_rows=0,
        rejects_by_kind={},
        duration_s=0.0,
        end_offsets={topic: {str(p): offset for p, offset in sorted(positions.items())}},
    )


QUERY_PREFIX = "log_summary_"
"""Every log_summary query's name starts so (`sml_assets.orphans` stops a killed run's by it)."""


def run_log_summary_stream(
    spark: SparkSession,
    kafka_options: Mapping[str, str],
    topic: str,
    paths: StreamPaths,
    checkpoint: Checkpoint,
    on_batch: Callable[[BatchUpdate], object],
    journal_dir: Path,
    timeout_s: float = 1800.0,
    max_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S,
    run_token: str = "",
    intended: Mapping[int, int] | None = None,
) -> StreamRun:
    """Process everything that arrived since the last run, then stop; `on_batch` sees each batch's
    window counts (increments, see `sml_assets.windows.merge_increments`) after its rejects are written.

    `checkpoint` comes from `open_checkpoint` on the same paths; `max_skew_s` is SML_MAX_CLOCK_SKEW.
    Over Spark Connect the batch function runs in a Python worker of the server, so what it returns
    cannot come back in memory: each batch's counts and `on_batch`'s answer are pickled into an
    empty `journal_dir` (a folder the server shares with this process) and read back into `StreamRun.answers`.
    The query is named `log_summary_<checkpoint id>_<run token>` (`sml_assets.orphans` looks for the prefix).

    `intended` is the end offset per partition the run started for (the topic's high watermarks,
    read before the query starts, so Spark's availableNow reads at least that far): a query that
    ends without an error short of them was stopped from outside (`check_read_to_end`).
    """
    from sml_assets.resources.spark import is_remote

    clocked = with_clock(kafka_lines(spark, kafka_options, topic))
    started = time.monotonic()
    seen: list[tuple[BatchCounts, object]] = []
    remote = is_remote(spark)
    each_batch = batch_function(checkpoint.checkpoint_id, paths, on_batch, journal_dir if remote else seen, max_skew_s)
    query = (
        clocked.writeStream.queryName(f"{QUERY_PREFIX}{checkpoint.checkpoint_id[:8]}_{run_token[:8]}".rstrip("_"))
        .foreachBatch(each_batch)
        .option("checkpointLocation", str(paths.windows_checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    try:
        _await(query, timeout_s, started)
    finally:
        query.stop()
    progress = [json.loads(p.json) for p in query.recentProgress]
    if remote:
        seen = read_journal(journal_dir)
    run = _summarize(checkpoint.checkpoint_id, progress, seen, time.monotonic() - started)
    if intended:
        check_read_to_end(f"{query.name} (id {query.id})", topic, paths, run.end_offsets, intended)
    return run


def batch_function(
    checkpoint_id: str,
    paths: StreamPaths,
    on_batch: Callable[[BatchUpdate], object],
    answers: Path | list[tuple[BatchCounts, object]],
    max_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S,
) -> Callable[[DataFrame, int], None]:
    """The query's foreachBatch function: `process_batch`, then `on_batch`; each batch's counts and
    answer appended to `answers`, or, when it is a folder (over Spark Connect, where the function
    runs in the server's Python worker), journaled there (`journal_batch`).

    The server's worker unpickles it, importing this module and `on_batch`'s for every query: both
    must stay free of Dagster and the resources (`sml_assets.summary_merge`)."""

    def each_batch(batch: DataFrame, batch_id: int) -> None:
        counts = process_batch(batch, batch_id, checkpoint_id, paths, max_skew_s)
        answer = on_batch(counts.update)
        if isinstance(answers, Path):
            journal_batch(answers, batch_id, (counts, answer))
        else:
            answers.append((counts, answer))

    return each_batch


def check_read_to_end(
    query: str,
    topic: str,
    paths: StreamPaths,
    end_offsets: Mapping[str, Mapping[str, int]],
    intended: Mapping[int, int],
) -> None:
    """Fail the run when its query ended short of `intended` (a partition's offset, as the last
    progress or, without one, the checkpoint's newest committed batch reports it).

    A streaming query stopped by someone else ends as quietly as one that finished: over Spark
    Connect an operator can stop it from another session or the Spark UI, and a query started on
    the same checkpoint stops it (spark.sql.streaming.stopActiveRunOnRestart). The batches committed
    before the stop are merged into the stored summary, as a crash would leave them; the run must
    not report the rest as done.
    """
    reached = {int(partition): int(offset) for partition, offset in end_offsets.get(topic, {}).items()}
    if not reached:
        reached = committed_positions(paths.windows_checkpoint, topic) or {}
    short = {p: (reached.get(p), end) for p, end in sorted(intended.items()) if reached.get(p, -1) < end}
    if not short:
        return
    where = "; ".join(
        f"partition {p}: {'nothing committed' if at is None else f'read to {at}'} of {end}"
        for p, (at, end) in short.items()
    )
    raise QueryStoppedError(
        f"Spark query {query} on {topic} was stopped before it read to the offsets this run started for "
        f"({where}): something outside the run stopped it: an operator (StreamingQuery.stop() from another "
        f"session, or the Spark UI), or a query started on its checkpoint {paths.windows_checkpoint} "
        "(Spark stops the older one, spark.sql.streaming.stopActiveRunOnRestart), such as a log_summary run "
        "of another deployment sharing the Spark Connect server and SML_SPARK_STORAGE_URL. The batches it "
        "committed are in the stored summary; the CSV was not rewritten. Make sure nothing else uses that "
        "checkpoint, then run log_summary again: it resumes from the last committed batch."
    )


def journal_batch(journal_dir: Path, batch_id: int, entry: tuple[BatchCounts, object]) -> None:
    """One batch's counts and merge answer, written whole (renamed into place) by the server's worker;
    a replayed batch overwrites its own entry."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    part = journal_dir / f".{batch_id}.{uuid.uuid4().hex}.tmp"
    part.write_bytes(pickle.dumps(entry))
    part.replace(journal_dir / f"{batch_id}.pickle")


def read_journal(journal_dir: Path) -> list[tuple[BatchCounts, object]]:
    """The entries `journal_batch` wrote in this run, in batch order (files this process made itself)."""
    entries = sorted(journal_dir.glob("*.pickle"), key=lambda entry: int(entry.stem)) if journal_dir.is_dir() else []
    return [pickle.loads(entry.read_bytes()) for entry in entries]


def _await(query: Any, timeout_s: float, started: float) -> None:
    left = max(1.0, timeout_s - (time.monotonic() - started))
    if not query.awaitTermination(left):
        raise TimeoutError(
            f"Spark query {query.name} did not finish within {timeout_s:.0f} s: "
            "is the Kafka broker reachable from Spark?"
        )


def _summarize(
    checkpoint_id: str, progress: list[dict[str, Any]], entries: list[tuple[BatchCounts, object]], duration_s: float
) -> StreamRun:
    seen = [counts for counts, _ in entries]
    end_offsets: dict[str, dict[str, int]] = {}
    if progress:
        raw = progress[-1]["sources"][0].get("endOffset")
        end_offsets = json.loads(raw) if isinstance(raw, str) else (raw or {})
    by_kind: dict[str, int] = {}
    for counts in seen:
        for name, count in counts.rejects_by_kind.items():
            by_kind[name] = by_kind.get(name, 0) + count
    return StreamRun(
        checkpoint_id=checkpoint_id,
        batches=len(seen),
        input_rows=sum(counts.lines for counts in seen),
        parsed_rows=sum(counts.parsed for counts in seen),
        rejected_rows=sum(counts.rejected for counts in seen),
        rejects_by_kind=by_kind,
        duration_s=duration_s,
        end_offsets=end_offsets,
        answers=tuple(answer for _, answer in entries),
    )
