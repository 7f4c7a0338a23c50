"""Replay: move, or adopt, the stored positions of the metrics consumer, so the next run re-reads
(or skips) messages. The one-time schema migration is `python -m sml_assets.migrate`.

    python -m sml_assets.replay show
    python -m sml_assets.replay reset --partition 0 --offset 1200
    python -m sml_assets.replay reset --partition 0 --partition 1 --timestamp 2026-11-25T16:00:00Z
    python -m sml_assets.replay reset --partition 0 --earliest --yes
    python -m sml_assets.replay adopt --topic-id <new id>     # a deleted and recreated topic
    python -m sml_assets.replay adopt-logs --topic-id <id>    # log_summary after SML_LOGS_TOPIC changed

`--topic`, `--table` and `--consumer` go before or after the command. `reset` shows what it would
delete and asks first (`--yes` skips the question; without a terminal it refuses). It deletes, in
the same transaction as it moves the offset, only rows and dead letters that will be read again:
rows of another topic id (a deleted topic) stay unless `--delete-unrecoverable`.
Uses the same environment as the runs (SML_KAFKA_BOOTSTRAP_SERVERS, the SML_KAFKA_* security
variables, SML_METRICS_TOPIC, SML_METRICS_DB_URL, SML_METRICS_TABLE, SML_LOGS_TOPIC, SML_DATA_DIR).
Stop the schedule and sensor first if a run could be in flight: its next chunk would then fail on the moved offset
(nothing is lost; it stops instead of writing twice).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from sml_assets.ingest import DEFAULT_CONSUMER, describe_topic_id, recreated_message, replay_command
from sml_assets.kafka_security import KafkaSettingsError
from sml_assets.logs_stream import LogsTopicChangedError, adopt_logs_topic, stream_paths
from sml_assets.resources import resources_now
from sml_assets.resources.database import (
    DatabaseUnavailableError,
    HeldRows,
    MetricsDatabase,
    SchemaMigrationError,
)
from sml_assets.resources.kafka import (
    KafkaResource,
    KafkaUnavailableError,
    lag_per_partition,
)
from sml_assets.resources.storage import LocalStorage
from sml_assets.settings import setting_value
from sml_assets.summarize import summary_lock


def parse_timestamp(text: str) -> int:
    """ISO-8601 with a zone (or epoch milliseconds) -> epoch milliseconds, as Kafka wants it."""
    if text.isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--timestamp {text!r} has no time zone: add 'Z' or an offset")
    return int(parsed.astimezone(UTC).timestamp() * 1000)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on the terminal; `--yes` answers for the user, and with no terminal nothing is assumed."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise SystemExit(
            "refusing to go on without confirmation: there is no terminal to ask on. Read the plan "
            "above, then run the same command with --yes"
        )
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


@dataclass(frozen=True)
class Target:
    """Whose positions a command acts on."""

    topic: str
    table: str
    consumer: str

    def command(self, subcommand: str, *options: str) -> str:
        return replay_command(subcommand, self.topic, self.table, self.consumer, *options)


def show(kafka: KafkaResource, database: MetricsDatabase, target: Target) -> int:
    topic_id = kafka.topic_id(target.topic)
    watermarks = kafka.watermarks(target.topic)
    positions = database.stored_positions(target.consumer, target.topic)
    stored = {p: position.next_offset for p, position in positions.items()}
    foreign = {p for p, position in positions.items() if position.topic_id != topic_id}
    print(
        f"{target.topic} (topic id {topic_id!r}), consumer {target.consumer!r}, "
        f"table {target.table} at {database.masked_url}"
    )
    print(f"{'partition':>9} {'first':>10} {'end':>10} {'stored':>10} {'lag':>10}")
    for lag in lag_per_partition(watermarks, stored):
        stored_text = str(stored[lag.partition]) if lag.partition in stored else "-"
        lag_text = "unknown" if lag.partition in foreign else str(lag.lag)
        low = watermarks[lag.partition].low
        print(f"{lag.partition:>9} {low:>10} {lag.end_offset:>10} {stored_text:>10} {lag_text:>10}")
    gone = sorted(set(stored) - set(watermarks))
    if gone:
        print(f"stored positions for partitions {gone}, which {target.topic} no longer has")
    if foreign:
        print(recreated_message(target.topic, target.table, target.consumer, topic_id, positions))
        return 1
    return 0


def _reset_offset(
    kafka: KafkaResource, topic: str, partition: int, low: int, high: int, args: argparse.Namespace
) -> int:
    if args.earliest:
        return low
    if args.latest:
        return high
    if args.timestamp is not None:
        return kafka.offset_for_time(topic, partition, args.timestamp)
    return int(args.offset)


def _held_line(held: HeldRows, what: str) -> str:
    kind = "dead letters" if held.table.startswith("sml_") else f"rows of {held.table}"
    return (
        f"  partition {held.partition}: {what} {held.count:,} {kind} of topic id "
        f"{describe_topic_id(held.topic_id)}, offsets {held.first}..{held.last}"
    )


def reset(kafka: KafkaResource, database: MetricsDatabase, target: Target, args: argparse.Namespace) -> int:
    topic = target.topic
    topic_id = kafka.topic_id(topic)
    marks = kafka.watermarks(topic)
    partitions = sorted(set(args.partition))
    unknown = [p for p in partitions if p not in marks]
    if unknown:
        raise SystemExit(f"{topic} has no partition {unknown}; it has {sorted(marks)}")
    database.ensure_tables()
    positions = database.stored_positions(target.consumer, topic)
    if any(position.topic_id != topic_id for position in positions.values()):
        raise SystemExit(
            recreated_message(topic, target.table, target.consumer, topic_id, positions)
            + "; adopt first, then reset if still needed"
        )
    offsets = {}
    for partition in partitions:
        low, high = marks[partition].low, marks[partition].high
        offset = _reset_offset(kafka, topic, partition, low, high, args)
        if not low <= offset <= high:
            raise SystemExit(f"offset {offset} is outside {topic}[{partition}]'s range {low}..{high}")
        offsets[partition] = offset
    print(
        f"reset of {topic} (topic id {topic_id!r}), consumer {target.consumer!r}, "
        f"table {target.table} at {database.masked_url}:"
    )
    deletes = keeps = 0
    for partition, offset in offsets.items():
        before = positions.get(partition)
        print(
            f"  partition {partition}: stored offset {before.next_offset if before else '-'} -> {offset} "
            f"(Kafka holds {marks[partition].low}..{marks[partition].high - 1})"
        )
        for held in database.held_rows(topic, partition, offset):
            recoverable = held.topic_id == topic_id
            if recoverable or args.delete_unrecoverable:
                deletes += held.count
                note = "they are read again" if recoverable else "CANNOT be read again (--delete-unrecoverable)"
                print(_held_line(held, "delete") + f": {note}")
            else:
                keeps += held.count
                print(_held_line(held, "keep") + ": another topic id, they cannot be read again")
    if keeps:
        print(f"{keeps:,} rows and dead letters of other topic ids are kept; --delete-unrecoverable deletes them too")
    if not confirm(f"move the offsets and delete {deletes:,} rows and dead letters?", args.yes):
        print("nothing changed")
        return 1
    for partition, offset in offsets.items():
        before = positions.get(partition)
        removed = database.reset_offset(
            target.consumer,
            topic,
            partition,
            offset,
            topic_id,
            delete_other_topic_ids=args.delete_unrecoverable,
        )
        print(
            f"{topic}[{partition}] consumer {target.consumer!r}: stored offset "
            f"{before.next_offset if before else '-'} -> {offset}; {removed} rows and dead letters at or "
            f"after it removed; the next run of ingest_metrics_job reads from {offset}"
        )
    return 0


def adopt(kafka: KafkaResource, database: MetricsDatabase, target: Target, args: argparse.Namespace) -> int:
    topic = target.topic
    current = kafka.topic_id(topic)
    if args.topic_id != current:
        raise SystemExit(
            f"{topic} now has topic id {current!r}, not {args.topic_id!r}: it changed again since that "
            f"command was printed. Run '{target.command('show')}' and adopt the id it reports"
        )
    database.ensure_tables()
    positions = database.stored_positions(target.consumer, topic)
    if positions and all(position.topic_id == current for position in positions.values()):
        raise SystemExit(
            f"the positions of consumer {target.consumer!r} for table {target.table} already belong to "
            f"{topic}'s topic id {current!r}: nothing to adopt; '{target.command('reset')} ...' moves them"
        )
    marks = kafka.watermarks(topic)
    starts = {p: m.high if args.latest else m.low for p, m in marks.items()}
    database.adopt_topic(target.consumer, topic, current, starts)
    old = sorted({position.topic_id for position in positions.values()})
    print(
        f"{topic}: consumer {target.consumer!r} for table {target.table} now reads topic id {current!r} "
        f"from offsets {starts}; rows of topic id {', '.join(map(describe_topic_id, old)) or '-'} stay in "
        f"{target.table} under their own kafka_topic_id. The next run of ingest_metrics_job reads from there"
    )
    return 0


def adopt_logs(kafka: KafkaResource, args: argparse.Namespace) -> int:
    topic = kafka.logs_topic
    current = kafka.topic_id(topic)
    if args.topic_id != current:
        raise SystemExit(
            f"SML_LOGS_TOPIC={topic} now has topic id {current!r}, not {args.topic_id!r}: it changed again "
            "since that command was printed; run log_summary again and use the command it prints"
        )
    storage = LocalStorage(
        data_dir=setting_value("SML_DATA_DIR"), spark_storage_url=setting_value("SML_SPARK_STORAGE_URL")
    )
    paths = stream_paths(storage)
    with summary_lock(storage, waiting=lambda text: print(text, file=sys.stderr)):
        aside = adopt_logs_topic(paths)
    print(
        f"log_summary will read SML_LOGS_TOPIC={topic} (topic id {current!r}) from its earliest offset "
        f"into a new Spark checkpoint; the old one was moved to {aside or '(none existed)'}. Stored windows "
        "keep their counts (final windows are frozen, counts never decrease)"
    )
    return 0


def _common_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """The same options before and after the command: after it, only what is given overrides."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument("--topic", default=default(None), help="default: SML_METRICS_TOPIC")
    parser.add_argument("--table", default=default(None), help="default: SML_METRICS_TABLE")
    parser.add_argument(
        "--consumer", default=default(DEFAULT_CONSUMER), help=f"whose positions (default {DEFAULT_CONSUMER})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sml_assets.replay", description=(__doc__ or "").split("\n\n")[0])
    _common_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="end offsets, stored offsets, lag and topic id per partition")
    reset_parser = commands.add_parser("reset", help="move stored offsets; shows what it deletes and asks first")
    reset_parser.add_argument("--partition", type=int, action="append", required=True, help="repeat for more")
    target = reset_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--offset", type=int)
    target.add_argument("--timestamp", type=parse_timestamp, help="ISO-8601 with zone, or epoch ms")
    target.add_argument("--earliest", action="store_true", help="the oldest retained message")
    target.add_argument("--latest", action="store_true", help="the end: skip everything waiting")
    reset_parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset_parser.add_argument(
        "--delete-unrecoverable",
        action="store_true",
        help="also delete rows that cannot be read again (of another topic id)",
    )
    adopt_parser = commands.add_parser("adopt", help="read a deleted and recreated topic under its new id")
    adopt_parser.add_argument("--topic-id", required=True, help="the new id, as the failed run printed it")
    adopt_parser.add_argument("--latest", action="store_true", help="start at the end instead of the earliest")
    logs_parser = commands.add_parser("adopt-logs", help="log_summary: start over on a new or recreated logs topic")
    logs_parser.add_argument("--topic-id", required=True, help="SML_LOGS_TOPIC's id, as log_summary printed it")
    for sub in (show_parser, reset_parser, adopt_parser, logs_parser):
        _common_options(sub, after_command=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resources = resources_now()
    kafka, database = resources.kafka, resources.metrics_db
    if args.table:
        database = MetricsDatabase(url=database.url, table=args.table)
    target = Target(args.topic or kafka.metrics_topic, database.table, args.consumer)
    try:
        if args.command == "show":
            return show(kafka, database, target)
        if args.command == "reset":
            return reset(kafka, database, target, args)
        if args.command == "adopt":
            return adopt(kafka, database, target, args)
        return adopt_logs(kafka, args)
    except (
        KafkaUnavailableError,
        KafkaSettingsError,
        DatabaseUnavailableError,
        SchemaMigrationError,
        LogsTopicChangedError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
