"""The metrics consume loop: Kafka -> parsed rows and dead letters -> one transaction per chunk.

Positions come from `sml_offsets`, never from Kafka's group offsets, and move only in the
transaction that writes the messages they cover: a run killed at any instant and run again
leaves every message in the table exactly once. They belong to one table and one topic id: a
recreated topic stops the run before anything is read, with the command that adopts it.
"""

from __future__ import annotations

import gc
import logging
import shlex
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, TopicPartition

from sml_assets.chunk_writer import ChunkWriter, CommittedChunk
from sml_assets.parsing import EPOCH, reason_kind, skew_reason
from sml_assets.resources.database import (
    LEGACY_TOPIC_ID,
    MetricsDatabase,
    OffsetAdvance,
    StoredPosition,
)
from sml_assets.resources.kafka import (
    METRICS_TOPIC_VARIABLE,
    KafkaResource,
    KafkaSession,
    KafkaUnavailableError,
    Watermarks,
)

if TYPE_CHECKING:
    import numpy as np


DEFAULT_MAX_MESSAGES = 100_000
DEFAULT_CHUNK_SIZE = 10_000
"""Messages per transaction where a chunk's rows are kept until its commit (SQLite, SQL Server):
the writer holds them, so this bounds memory. Each commit waits for the database to make it
durable: 10,000 instead of 5,000 took SQLite from 0.67x to 0.68x the plain loop (2026-11-29); 50,000
was slower there (406,000 rows/s against 435,000 for 10,000, 200,000 messages). A killed run reads
at most one chunk again."""
STREAMED_CHUNK_SIZE = 50_000
"""Messages per transaction where a chunk's rows stream to the server as they are parsed
(PostgreSQL): the client keeps none of them, so a larger chunk costs no memory, and each chunk's
end pauses the server's insert (its last batch, the compare-and-set, the commit's flush, the next
COPY's start). 50,000 instead of 10,000: 394,000 rows/s instead of 369,000 (medians of five,
200,000 messages, 2026-11-29); 100,000 gave 405,000. A killed run reads at most one chunk again."""
SEND_BATCH = 2_500
"""Messages per `consume()` within a chunk whose transaction streams its rows (PostgreSQL): each
batch is parsed and sent at once, so the server inserts one batch while the next is parsed."""
DEFAULT_CONSUMER = "server_metrics"
CONSUMER_TUNING: dict[str, int] = {
    "queued.min.messages": 1_000_000,
    "queued.max.messages.kbytes": 16_384,
    "fetch.queue.backoff.ms": 10,
}
"""Prefetch by size, not by librdkafka's default count (100,000 messages), so consume() seldom
waits on a fetch (about 2x faster alone); capped at 16 MiB, so a run's memory stays flat whatever
the backlog (64 MiB, the default cap, added about 200 MiB of RSS; benchmarks/bench_memory.py).
Once the cap is reached librdkafka postpones the next fetch by `fetch.queue.backoff.ms`, 1 s by
default: with larger values (Connect's JSON envelopes, 390 bytes) the queue drained long before
that second ended and the run waited on the network 3/4 of its time (46,000 rows/s on 1.0 s of
CPU for 200,000 messages); 10 ms: 171,000 rows/s on the same CPU, the same cap."""


class TopicRecreatedError(RuntimeError):
    """The stored positions belong to another topic id: the topic was deleted and created again."""


class PositionPastEndError(RuntimeError):
    """Stored offsets beyond the end of the topic they claim to belong to; the message says what to run."""


def replay_command(subcommand: str, topic: str, table: str, consumer: str, *options: str) -> str:
    """A `python -m sml_assets.replay` command line, quoted for a shell, as sml prints it."""
    words = ["python", "-m", "sml_assets.replay", subcommand, "--topic", topic, "--table", table]
    if consumer != DEFAULT_CONSUMER:
        words += ["--consumer", consumer]
    return shlex.join([*words, *options])


def describe_topic_id(topic_id: str) -> str:
    if topic_id == LEGACY_TOPIC_ID:
        return "unknown (written before sml recorded topic ids)"
    return repr(topic_id)


def recreated_message(topic: str, table: str, consumer: str, topic_id: str, stored: dict[int, StoredPosition]) -> str:
    """Why a run stops on positions of another topic id, and the one command that adopts the new topic."""
    old_ids = sorted({position.topic_id for position in stored.values() if position.topic_id != topic_id})
    partitions = sorted(p for p, position in stored.items() if position.topic_id != topic_id)
    return (
        f"{METRICS_TOPIC_VARIABLE}={topic}: the stored positions of consumer {consumer!r} for table {table} "
        f"(partitions {partitions}) belong to topic id {', '.join(map(describe_topic_id, old_ids))}, but "
        f"{topic} now has topic id {topic_id!r}: it was deleted and created again. Nothing was read. "
        f"Rows of the old topic stay in {table} under their old kafka_topic_id. To read the new topic from "
        f"its earliest offset, run: {replay_command('adopt', topic, table, consumer, '--topic-id', topic_id)}"
    )


@dataclass
class PartitionRun:
    """One partition's part in a run: where it started, where it had to get to, where it ended."""

    partition: int
    stored: int | None
    """The stored offset at the start (None: this consumer never read the partition)."""
    start: int
    target: int
    """The partition's end offset when the run started; messages after it wait for the next run."""
    next_offset: int
    skipped_by_retention: int = 0
    """Messages between the stored offset and the oldest one Kafka still had: lost, and reported."""

    @property
    def done(self) -> bool:
        return self.next_offset >= self.target


@dataclass
class IngestReport:
    """What a run did, for metadata and logs."""

    topic: str
    consumer: str
    partitions: list[PartitionRun]
    topic_id: str = LEGACY_TOPIC_ID
    new_table: bool = False
    """No stored position for this table yet: the run started at the earliest retained offsets."""
    rows: int = 0
    dead_letters: int = 0
    chunks: int = 0
    chunk_size: int = 0
    """Messages per transaction the run used."""
    duration_s: float = 0.0
    capped: bool = False
    lag_left: dict[int, int] = field(default_factory=dict)
    dead_letter_kinds: Counter[str] = field(default_factory=Counter)
    """Committed dead letters per `reason_kind`, e.g. 'event time s ahead of the clock'."""

    @property
    def messages(self) -> int:
        return self.rows + self.dead_letters

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.duration_s if self.duration_s > 0 else 0.0


class _Chunk:
    """Messages taken since the last commit (their rows handed to the writer): how many, their dead
    letters, and how far each partition got."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.dead_letters: list[dict[str, Any]] = []
        self.next_offsets: dict[int, int] = {}
        self.messages = 0

    def __len__(self) -> int:
        return self.messages


def ingest_metrics(
    kafka: KafkaResource,
    database: MetricsDatabase,
    log: logging.Logger,
    *,
    topic: str | None = None,
    consumer_name: str = DEFAULT_CONSUMER,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    chunk_size: int | None = None,
) -> IngestReport:
    """Drain the metrics topic from the stored offsets to the end offsets read at the start.

    Stops early after `max_messages` (the rest waits for the next run) or when the broker sends
    nothing for `kafka.timeout_s` although messages should remain. `chunk_size` (messages per
    transaction) defaults to `default_chunk_size(database)`.
    """
    if max_messages < 1 or (chunk_size is not None and chunk_size < 1):
        raise ValueError(f"max_messages ({max_messages}) and chunk_size ({chunk_size}) must be at least 1")
    topic = topic or kafka.metrics_topic
    started = time.monotonic()
    database.ensure_tables()
    chunk_size = chunk_size or default_chunk_size(database)
    session = kafka.session()
    topic_id, watermarks, stored = _read_positions(kafka, session, database, topic, consumer_name)
    table = database.tables.metrics.name
    plan = [_plan_partition(topic, marks, stored.get(marks.partition), log) for marks in watermarks.values()]
    _refuse_positions_past_end(topic, table, consumer_name, watermarks, plan)
    report = IngestReport(topic, consumer_name, plan, topic_id=topic_id, new_table=not stored, chunk_size=chunk_size)
    if report.new_table:
        lost = {marks.partition: marks.low for marks in watermarks.values() if marks.low > 0}
        log.info(
            f"{topic}: no stored position of consumer {consumer_name!r} for table {table}: starting at the "
            f"earliest retained offsets { ({m.partition: m.low for m in watermarks.values()}) }"
        )
        if lost:
            log.warning(
                f"{topic}: {table} starts without the messages Kafka no longer retains (below offsets "
                f"{lost} per partition); rows read earlier into another table are not copied"
            )
    pending = {run.partition: run for run in plan if not run.done}
    waiting = sum(run.target - run.start for run in pending.values())
    log.info(
        f"{topic}: {waiting:,} messages wait in {len(pending)} of {len(plan)} partitions; "
        f"reading up to {max_messages:,} into {database.tables.metrics.name} at {database.masked_url}, "
        f"{chunk_size:,} a transaction"
    )
    if pending:
        with _old_objects_frozen():
            _drain(kafka, database, log, report, pending, max_messages, chunk_size)
    report.duration_s = time.monotonic() - started
    report.lag_left = _lag_left(kafka, session, topic, plan, log)
    log.info(
        f"{topic}: {report.rows:,} rows and {report.dead_letters:,} dead letters in {report.chunks} chunks, "
        f"{report.duration_s:.1f}s ({report.rows_per_s:,.0f} rows/s); "
        f"lag left {sum(report.lag_left.values()):,}"
    )
    return report


@contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Keep the objects that exist before the drain out of the garbage collector's full passes.

    A drain allocates a few tracked objects per message (Message, timestamp tuple, row tuple), so
    the collector runs often, and each full pass walked every object of the process (Dagster,
    SQLAlchemy, pyarrow: hundreds of thousands): 1.4 to 1.6 us a row, a quarter to a third of a
    run's CPU (benchmarks/bench_ingest.py). Frozen objects are still alive and referenced as
    before; they return to the collector when the drain ends, whatever happens, and a cycle that
    became garbage meanwhile is collected then. Objects made during the drain are collected as usual.
    A process that froze objects itself (`gc.get_freeze_count()` above 0) keeps its own freeze.
    """
    from sml_assets.resources.bulk import warm_up

    warm_up()
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _read_positions(
    kafka: KafkaResource, session: KafkaSession, database: MetricsDatabase, topic: str, consumer: str
) -> tuple[str, dict[int, Watermarks], dict[int, int]]:
    """The topic's id, its watermarks and this table's stored offsets, all of the same topic.

    The id is read before and after, so a topic recreated meanwhile cannot pair new watermarks
    with old positions.
    """
    described = kafka.describe_topic(topic, session)
    topic_id = described.topic_id
    watermarks = kafka.watermarks(topic, described.partitions, session)
    positions = database.stored_positions(consumer, topic, tables_ensured=True)
    if kafka.topic_id(topic, session) != topic_id:
        raise TopicRecreatedError(
            f"{METRICS_TOPIC_VARIABLE}={topic} was deleted and created again while this run was "
            "planning; nothing was read. Run again: it then reports what to do."
        )
    if any(position.topic_id != topic_id for position in positions.values()):
        raise TopicRecreatedError(recreated_message(topic, database.tables.metrics.name, consumer, topic_id, positions))
    return topic_id, watermarks, {p: position.next_offset for p, position in positions.items()}


def _refuse_positions_past_end(
    topic: str, table: str, consumer: str, watermarks: dict[int, Watermarks], plan: list[PartitionRun]
) -> None:
    """One message for every partition whose stored offset is past its end, with one command."""
    past = [run for run in plan if run.start > watermarks[run.partition].high]
    if not past:
        return
    where = ", ".join(f"[{run.partition}] stored {run.start} > end {watermarks[run.partition].high}" for run in past)
    options = [word for run in past for word in ("--partition", str(run.partition))]
    raise PositionPastEndError(
        f"{topic}: stored offsets of consumer {consumer!r} for table {table} are past the end of the "
        f"topic in {len(past)} partition(s): {where}; messages were deleted from Kafka (unclean leader "
        f"election or a restored broker). Nothing was read. To read these partitions again from their "
        f"earliest offset, run: {replay_command('reset', topic, table, consumer, *options, '--earliest')}"
    )


def _plan_partition(topic: str, marks: Watermarks, stored: int | None, log: logging.Logger) -> PartitionRun:
    start = marks.low if stored is None else stored
    if start > marks.high:
        return PartitionRun(marks.partition, stored, start, marks.high, start)
    skipped = 0
    if start < marks.low:
        skipped = marks.low - start
        log.warning(
            f"{topic}[{marks.partition}]: {skipped:,} messages ({start}..{marks.low - 1}) were deleted by "
            "retention before they were read; continuing from the oldest one left"
        )
        start = marks.low
    return PartitionRun(marks.partition, stored, start, marks.high, start, skipped)


def default_chunk_size(database: MetricsDatabase) -> int:
    """STREAMED_CHUNK_SIZE where a chunk's rows stream to the server (PostgreSQL), else DEFAULT_CHUNK_SIZE."""
    return STREAMED_CHUNK_SIZE if database.streams_rows() else DEFAULT_CHUNK_SIZE


def _drain(
    kafka: KafkaResource,
    database: MetricsDatabase,
    log: logging.Logger,
    report: IngestReport,
    pending: dict[int, PartitionRun],
    max_messages: int,
    chunk_size: int,
) -> None:
    """Read chunk after chunk on this thread while a `ChunkWriter` commits the previous ones."""
    topic = report.topic
    committed = {partition: run.stored for partition, run in pending.items()}
    budget = max_messages
    writer = ChunkWriter(database, report.consumer, topic, report.topic_id)
    client_errors: list[KafkaError] = []
    consumer = kafka.consumer(f"sml-{report.consumer}", error_cb=client_errors.append, **CONSUMER_TUNING)
    try:
        consumer.assign([TopicPartition(topic, p, run.start) for p, run in pending.items()])
        with writer:
            while pending and budget > 0:
                chunk = _Chunk(topic)
                stalled = _fill(consumer, kafka, writer, chunk, pending, min(chunk_size, budget), client_errors)
                budget -= len(chunk)
                if len(chunk) or chunk.next_offsets:
                    advances = [
                        OffsetAdvance(p, committed[p], offset) for p, offset in sorted(chunk.next_offsets.items())
                    ]
                    writer.commit(chunk.dead_letters, advances)
                    committed.update(chunk.next_offsets)
                _report_commits(report, writer.committed(), log)
                if stalled:
                    log.warning(
                        f"{topic}: no message for {kafka.timeout_s:g}s although partitions "
                        f"{sorted(pending)} have not reached their end offsets; stopping, the next run resumes"
                    )
                    break
            writer.close()
    finally:
        _report_commits(report, writer.committed(), log)
        consumer.close()
    report.capped = budget == 0 and bool(pending)
    if report.capped:
        log.info(f"{topic}: reached the cap of {max_messages:,} messages; the rest waits for the next run")


def _fill(
    consumer: Consumer,
    kafka: KafkaResource,
    writer: ChunkWriter,
    chunk: _Chunk,
    pending: dict[int, PartitionRun],
    size: int,
    client_errors: list[KafkaError],
) -> bool:
    """Consume into `chunk` until it holds `size` messages or every partition reached its target,
    each batch parsed and handed to the writer at once: batches of SEND_BATCH when the writer
    streams rows to the server, else as large as the chunk (fewer, larger batches cost less where
    nothing runs beside the parse: SQLite lost 2-3 % with SEND_BATCH). True when the broker sent
    nothing for `kafka.timeout_s` although messages remain (the run then commits what it has and stops)."""
    last_message = time.monotonic()
    while pending and len(chunk) < size:
        batch = SEND_BATCH if writer.streams else size
        messages = consumer.consume(num_messages=min(size - len(chunk), batch), timeout=min(1.0, kafka.timeout_s))
        if messages:
            last_message = time.monotonic()
        elif time.monotonic() - last_message > kafka.timeout_s:
            if client_errors:
                raise kafka.unavailable(f"consuming {chunk.topic}", client_errors[-1])
            return True
        _add_batch(chunk, writer, pending, messages, kafka)
        _advance_partitions(consumer, chunk, pending)
    return False


def _add_batch(
    chunk: _Chunk,
    writer: ChunkWriter,
    pending: dict[int, PartitionRun],
    messages: list[Message],
    kafka: KafkaResource,
) -> None:
    """Parse the messages of one `consume()` that belong to the run, as one batch: their rows go to
    the `writer`, their dead letters to `chunk`, which counts them.

    A message counts if its partition is pending and its offset lies in [next offset, target), and
    every such message is taken (`consume` returned no more than the chunk has room for), which is
    what lets `_advance_partitions` move each partition to the consumer's position.
    """
    import numpy as np

    from sml_assets.chunks import parse_values, record_times_us, timestamp_pairs

    topic = chunk.topic
    failures = list(map(Message.error, messages))
    if failures.count(None) != len(failures):
        raise kafka.unavailable(f"consuming {topic}", next(f for f in failures if f is not None))
    partitions = _positions(list(map(Message.partition, messages)))
    offsets = _positions(list(map(Message.offset, messages)))
    take = np.zeros(len(messages), bool)
    for partition, run in pending.items():
        take |= (partitions == partition) & (offsets >= run.next_offset) & (offsets < run.target)
    chosen = np.flatnonzero(take)
    if len(chosen) == 0:
        return
    if len(chosen) < len(messages):
        messages = [messages[i] for i in chosen.tolist()]
        partitions, offsets = partitions[chosen], offsets[chosen]
    values = list(map(Message.value, messages))
    stamps = timestamp_pairs(list(map(Message.timestamp, messages)))
    record_us = record_times_us(stamps, TIMESTAMP_NOT_AVAILABLE)
    parsed = parse_values(values, record_us)
    valid = parsed.valid.copy()
    missing = stamps[:, 0] == TIMESTAMP_NOT_AVAILABLE
    skewed = _skewed(parsed.event_time_us, valid, record_us, missing, kafka.max_clock_skew_s)
    for index, _ in skewed:
        valid[index] = False
    writer.add(parsed.columns(topic, partitions, offsets, valid))
    for index, reason in sorted([*parsed.dead_letters, *skewed]):
        chunk.dead_letters.append(
            _dead_letter(topic, int(partitions[index]), int(offsets[index]), values[index], reason)
        )
    chunk.messages += len(messages)


def _advance_partitions(consumer: Consumer, chunk: _Chunk, pending: dict[int, PartitionRun]) -> None:
    """Move each pending partition to the consumer's position, capped at its target: the offset
    after the last record the consumer went by, which is the last message it returned or, past it,
    records it never returns to a read-committed reader (the marker a transactional producer's
    commit or abort takes, an aborted transaction's messages). Counting from the messages alone left
    a topic whose last record is a marker waiting for an offset that never comes: every run waited
    `timeout_s` and reported a lag of 1. Partitions that reach their target are paused and leave
    `pending`; the chunk commits the new offsets with its rows.

    Sound because `_add_batch` takes every message returned in [next offset, target): nothing the
    consumer went by before its position is left unread."""
    if not pending:
        return
    topic = chunk.topic
    for position in consumer.position([TopicPartition(topic, partition) for partition in pending]):
        run = pending[position.partition]
        if position.offset > run.next_offset:
            run.next_offset = min(position.offset, run.target)
            chunk.next_offsets[run.partition] = run.next_offset
            if run.done:
                consumer.pause([TopicPartition(topic, run.partition)])
                del pending[run.partition]


def _positions(numbers: list[int | None]) -> np.ndarray:
    """Partitions or offsets as an array; a message without one (never a consumed record) gets -1,
    which matches no run. The whole batch goes through C (`map` of the unbound method, one array
    call): a Python expression per message cost about 1 us of the 3.5 us budget per row."""
    import numpy as np

    try:
        return np.fromiter(numbers, np.int64, len(numbers))
    except TypeError:
        return np.array([-1 if number is None else number for number in numbers], np.int64)


def _skewed(
    event_us: np.ndarray, valid: np.ndarray, record_us: np.ndarray, missing: np.ndarray, max_skew_s: int
) -> list[tuple[int, str]]:
    """(index, reason) of the valid rows dated ahead of their record timestamp (unless `missing`) or
    of this machine's clock by more than SML_MAX_CLOCK_SKEW: arrays pick the candidates, `skew_reason` decides."""
    import numpy as np

    from sml_assets.chunks import datetime_to_us

    now = datetime.now(UTC)
    now_us = datetime_to_us(now)
    margin = max_skew_s * 1_000_000 - 1_000
    candidates = valid & ((event_us - np.where(missing, now_us, record_us) > margin) | (event_us - now_us > margin))
    found = []
    for index in np.flatnonzero(candidates).tolist():
        record_time = None if missing[index] else EPOCH + timedelta(microseconds=int(record_us[index]))
        event_time = EPOCH + timedelta(microseconds=int(event_us[index]))
        reason = skew_reason(event_time, record_time, now, max_skew_s)
        if reason is not None:
            found.append((index, reason))
    return found


def _dead_letter(topic: str, partition: int, offset: int, value: bytes | None, reason: str) -> dict[str, Any]:
    # PostgreSQL text cannot hold NUL (the chunk, and every rerun, would fail): escape it like
    # the bytes that are not UTF-8.
    raw = "" if value is None else value.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return {
        "kafka_topic": topic,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "raw_value": raw,
        "reason": reason,
    }


def _report_commits(report: IngestReport, chunks: list[CommittedChunk], log: logging.Logger) -> None:
    """Count and log the chunks the writer committed."""
    for chunk in chunks:
        report.rows += chunk.rows
        report.dead_letters += len(chunk.dead_letters)
        report.dead_letter_kinds.update(reason_kind(letter["reason"]) for letter in chunk.dead_letters)
        report.chunks += 1
        log.info(
            f"{report.topic}: committed chunk {report.chunks} ({chunk.rows:,} rows, "
            f"{len(chunk.dead_letters):,} dead letters); {report.messages:,} messages so far"
        )


def _lag_left(
    kafka: KafkaResource, session: KafkaSession, topic: str, plan: list[PartitionRun], log: logging.Logger
) -> dict[int, int]:
    """Lag against the end offsets now (new messages may have arrived during the run)."""
    try:
        marks = kafka.watermarks(topic, [run.partition for run in plan], session)
        ends = {p: mark.high for p, mark in marks.items()}
    except KafkaUnavailableError as error:
        log.warning(f"lag left is computed from the end offsets at the start of the run: {error}")
        ends = {run.partition: run.target for run in plan}
    return {run.partition: max(0, ends.get(run.partition, run.target) - run.next_offset) for run in plan}
